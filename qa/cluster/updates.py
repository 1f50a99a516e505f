"""Changes to a sharded index while it is served (``PUT``/``DELETE /documents``, ``--watch``, reloads): the
:class:`qa.updates.IndexUpdates` of the shards, so the service code of qa/updates.py and qa/api/ runs
unchanged over a :class:`~qa.cluster.front.ShardedEngine`.

A file's documents live in one shard: the one that holds them already, else the one a stable hash of the
file's name picks (:func:`home_shard`). That shard writes them as a segment of its own index
(``ShardSearcher.apply``: only the file is read) and merges its segments later; the front then takes a new
snapshot of that shard alone and recomputes the corpus-wide statistics from every shard's counts, so the
scores stay those of one index over the whole corpus.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from qa import formats
from qa import index as index_mod
from qa.cluster.front import ShardedEngine
from qa.config import Settings
from qa.index import document_chunk, document_fields
from qa.ingest import IngestLimits, read_corpus
from qa.types import Document

GENERATION_SEPARATOR = "+"


def home_shard(file_id: str, shards: int) -> int:
    """The shard a new file's documents go to: a hash of its name, the same on every machine and run."""
    return int.from_bytes(hashlib.blake2b(file_id.encode("utf-8"), digest_size=8).digest(), "big") % shards


def owners(engine: ShardedEngine, file_ids: list[str]) -> dict[int, list[str]]:
    """Shard → the files of ``file_ids`` it indexes: where each file's documents are, else its home shard."""
    held = engine.state.file_shards
    out: dict[int, list[str]] = {}
    for name in file_ids:
        out.setdefault(held.get(name, home_shard(name, len(engine.shards))), []).append(name)
    return out


def changed_files(engine: ShardedEngine, docs: list[Document]) -> list[str]:
    """The files whose documents differ between the corpus folder's ``docs`` and those the engine serves
    (added, changed or removed)."""
    have = engine.index.documents
    now = {d.doc_id for d in docs}
    changed = {formats.file_of(d.doc_id) for d in docs if d.doc_id not in have
               or document_chunk(d.doc_id, d.raw, document_fields(d)) !=
               document_chunk(d.doc_id, have[d.doc_id].raw, document_fields(have[d.doc_id]))}
    changed |= {formats.file_of(d) for d in have if d not in now}
    return sorted(changed)


class ShardedIndex:
    """:class:`qa.updates.IndexUpdates` of the sharded index published under ``root``, whose shards answer
    through ``shards`` (a :class:`~qa.cluster.front.Shards`)."""

    def __init__(self, root: Path, shards):
        self.root = Path(root)
        self.shards = shards

    def lock(self, settings: Settings) -> AbstractContextManager:
        return index_mod.build_lock(self.root)

    def published_name(self, settings: Settings) -> str | None:
        replies = self.shards.fan_out("generation", {i: () for i in range(len(self.shards))})
        if any(r is None for r in replies.values()):
            raise RuntimeError("a shard did not say what it serves")
        return GENERATION_SEPARATOR.join(replies[i] for i in sorted(replies))

    def name_of(self, engine: ShardedEngine) -> str:
        return GENERATION_SEPARATOR.join(engine.state.generations)

    def published(self, engine: ShardedEngine) -> ShardedEngine:
        """``engine``, or one over the newest snapshots of the shards that changed since (a merge)."""
        now = self.published_name(engine.settings).split(GENERATION_SEPARATOR)
        moved = [i for i, (a, b) in enumerate(zip(now, engine.state.generations)) if a != b]
        return engine.updated(moved) if moved else engine

    def with_files(self, engine: ShardedEngine, file_ids: list[str]) -> ShardedEngine:
        """Each file indexed by the shard that owns it; the engine over those shards' new snapshots."""
        calls = {shard: (names,) for shard, names in owners(engine, file_ids).items()}
        replies = self.shards.fan_out("apply", calls)
        failed = [i for i, r in replies.items() if r is None]
        if failed:
            raise RuntimeError(f"shards {failed} could not index the change")
        return engine.updated(list(calls))

    def refreshed(self, engine: ShardedEngine,
                  select: Callable[[list[Document]], list[Document]] | None = None) -> ShardedEngine:
        """The corpus folder as it is now: the files that changed, indexed by their shards."""
        s = engine.settings
        corpus = read_corpus(s.corpus_dir, IngestLimits.from_settings(s))
        docs = corpus.documents if select is None else select(corpus.documents)
        changed = changed_files(engine, docs)
        return self.with_files(engine, changed) if changed else engine

    def merge_due(self, engine: ShardedEngine) -> int:
        replies = self.shards.fan_out("merge_due", {i: () for i in range(len(self.shards))})
        return sum(r for r in replies.values() if r is not None)

"""``qa index --ray``: the sharded build (qa/cluster/shards.py) as a Ray job.

Each shard's documents are split and analysed in a task; an actor pool of ONNX encoders embeds the
shards (``workers`` actors, one core each); the coordinator gathers the corpus-wide statistics from the
shards' counts (kilobytes, not the text), and a task per shard writes it. The shards' text and vectors
stay in Ray's object store between the stages.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import ray

from qa.cluster import shards as sh
from qa.config import Settings
from qa.engine import build_spec
from qa.index import corpus_fingerprint
from qa.types import Document

OBJECT_STORE_BYTES = 256 * 1024 * 1024  # a local instance shares the machine: keep Ray's own memory small


@contextmanager
def ray_session(address: str | None = None, *, num_cpus: int = 2):
    """Ray for the duration of the block: connected to ``address``, or a local instance of ``num_cpus``
    with a small object store, shut down afterwards (an instance already running is left as it is)."""
    if ray.is_initialized():
        yield
        return
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=num_cpus, object_store_memory=OBJECT_STORE_BYTES, include_dashboard=False,
                 log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


@ray.remote(num_returns=2)
def _split(docs: list[Document], spec) -> tuple[sh.ShardText, sh.ShardCounts]:
    return sh.split_shard(docs, spec)


@ray.remote(num_cpus=1)
class Embedder:
    """One ONNX encoder on one core; the pool's actors take the shards in turn."""

    def __init__(self, settings: Settings):
        from qa.embed import OnnxEncoder

        self.encoder = OnnxEncoder(settings.onnx_path(), settings.resolved_model_path(), threads=1, spinning=True)

    def vocabulary(self) -> list[str]:
        return self.encoder.vocabulary

    def dim(self) -> int:
        return self.encoder.dim

    @ray.method(num_returns=2)
    def embed(self, text: sh.ShardText, spec):
        vectors = sh.embed_shard(self.encoder, text, spec)
        return vectors, vectors.piece_df


@ray.remote
def _write(folder: Path, text: sh.ShardText, vectors: sh.ShardVectors, stats: sh.GlobalStatistics, spec, dim: int,
           shard: dict) -> Path:
    return sh.write_shard(folder, text, vectors, stats, spec, dim, shard)


def ensure_onnx_export(settings: Settings, docs: list[Document]) -> None:
    """Make the model's ONNX export the encoder actors load, as a single build would (once per index root)."""
    from qa.embed import bulk_encoder, onnx_ready
    from qa.engine import sample_texts

    if not onnx_ready(settings):
        bulk_encoder(settings, lambda: sample_texts(docs))


def build_sharded(docs: list[Document], settings: Settings, *, shards: int, workers: int,
                  layout: bool = True, report: Callable[[str], None] = lambda _: None) -> sh.ShardSet:
    """Build ``docs`` as ``shards`` shards under :func:`qa.cluster.shards.sharded_root` on the Ray instance
    this process is connected to (:func:`ray_session`), embedding with ``workers`` actors."""
    from qa.embed import onnx_ready

    if not onnx_ready(settings):
        raise RuntimeError("the ONNX export of the model is missing (ensure_onnx_export makes it)")
    started = time.perf_counter()
    spec = build_spec(settings, layout=layout)
    parts = sh.partition(docs, shards)
    split = [_split.remote(part, spec) for part in parts]
    report(f"splitting {len(docs)} documents into {len(parts)} shards")
    pool = [Embedder.remote(settings) for _ in range(workers)]
    embedded = [pool[i % len(pool)].embed.remote(text, spec) for i, (text, _) in enumerate(split)]
    counts = ray.get([c for _, c in split])
    piece_dfs = ray.get([df for _, df in embedded])
    vocabulary, dim = ray.get([pool[0].vocabulary.remote(), pool[0].dim.remote()])
    for actor in pool:  # their cores go to the writing tasks; the vectors stay in the object store
        ray.kill(actor)
    report(f"embedded {sum(c.sentences for c in counts)} sentences with {workers} encoder actor(s)")
    stats = sh.gather_statistics(counts, piece_dfs, vocabulary)
    root = sh.sharded_root(settings)
    set_dir = sh.new_set_folder(root)
    offsets = sh.shard_offsets(counts).tolist()
    writes = []
    for number, ((text, _), (vectors, _)) in enumerate(zip(split, embedded)):
        shard = {"number": number, "shards": len(parts), "sentence_offset": offsets[number][0],
                 "passage_offset": offsets[number][1]}
        writes.append(_write.remote(sh.shard_folder(set_dir, number), text, vectors, stats, spec, dim, shard))
    folders = ray.get(writes)
    return sh.write_set(root, folders, counts, stats, spec, dim, corpus_fingerprint(docs), started)



def build_corpus(settings: Settings, address: str | None = None, *, shards: int = 2, workers: int = 2,
                 report: Callable[[str], None] = lambda _: None) -> sh.ShardSet:
    """``qa index --ray``: the corpus folder of ``settings`` read, the model's ONNX export made, and the
    sharded index built on the Ray cluster at ``address`` (or a local instance)."""
    from qa.ingest import IngestLimits, load_corpus

    docs = load_corpus(settings.corpus_dir, IngestLimits.from_settings(settings))
    ensure_onnx_export(settings, docs)
    with ray_session(address):
        return build_sharded(docs, settings, shards=shards, workers=workers, report=report)

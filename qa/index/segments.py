"""Generations: an index published as a list of immutable segments plus deletion marks.

A segment is a build folder (``build-…``: qa/index/storage.py) of some documents. A generation is a small
folder (``gen-…``) whose ``manifest.json`` lists its segments in order, each with the ids of its documents
that are deleted (replaced in a later segment, or removed), and records the corpus fingerprint and the
spec as a build's manifest does. ``current`` points at a build folder (one segment, nothing deleted) or at a
generation; publishing one is the same atomic link swap.

An update writes one small segment of the changed documents (only they are split and embedded) and a new
generation: the segments before it, the changed and removed documents marked deleted in them, and the new
one last. Readers lease the generation and every segment it lists before reading them, so a publish never
removes a folder a process is reading or serving (:mod:`qa.leases`). Merging (:func:`merge_due`, by the
policy of qa/index/merge.py) replaces some segments with one, in the background of the updates.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from qa import leases
from qa.index.corpus import CorpusIndex
from qa.index.publish import TMP_PREFIX, publish
from qa.index.spec import (FORMAT_VERSION, BuildSpec, IndexCorrupt, document_chunk, document_fields,
                           fingerprint_of, passage_count)
from qa.ingest import Skipped
from qa.types import Document

GENERATION_PREFIX = "gen-"
SEGMENT_SHARE = 0.25  # a change of up to this share of the corpus's text is indexed as a new segment
SEGMENTS = "segments"  # the manifest key listing a generation's segments: [{"name", "deleted": [doc ids]}]


def is_generation(manifest: dict) -> bool:
    return SEGMENTS in manifest


def entries_of(index: CorpusIndex) -> list[dict]:
    """The segments of a loaded index with their deleted documents: a generation's list, or its one build."""
    if is_generation(index.manifest):
        return [{"name": e["name"], "deleted": list(e["deleted"])} for e in index.manifest[SEGMENTS]]
    return [{"name": index.path.name, "deleted": []}]


def write_generation(target: Path, entries: list[dict], manifest: dict, skipped: Sequence[Skipped]) -> Path:
    """A complete generation folder under ``target`` (not yet published)."""
    name = f"{GENERATION_PREFIX}{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    tmp = target / f"{TMP_PREFIX}{name}"
    tmp.mkdir()
    try:
        (tmp / "skipped.json").write_text(json.dumps([s.to_dict() for s in skipped], ensure_ascii=False),
                                          encoding="utf-8")
        full = {"format_version": FORMAT_VERSION, **manifest, SEGMENTS: entries,
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        (tmp / "manifest.json").write_text(json.dumps(full, ensure_ascii=False), encoding="utf-8")
        tmp.rename(target / name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target / name


def update(target: Path, current: CorpusIndex, changed: list[Document], removed: Sequence[str],
           write_segment: Callable[[list[Document]], Path], spec: BuildSpec,
           skipped: Sequence[Skipped] = ()) -> Path:
    """Publish a generation over ``current``'s segments in which ``changed`` (added or replaced documents)
    and ``removed`` (ids) take effect: their earlier versions marked deleted, the changed documents written
    as one new segment by ``write_segment`` (a build folder of just them). The corpus fingerprint after the
    change is computed from the index's own record of its documents: the corpus folder is not read. Call with
    the build lock held; returns the generation."""
    gone = {d.doc_id for d in changed} | set(removed)
    entries = entries_of(current)
    held = _documents_by_segment(current)
    for entry in entries:
        entry["deleted"] = sorted(set(entry["deleted"]) | (gone & held.get(entry["name"], set())))
    entries = [e for e in entries if set(held.get(e["name"], set())) - set(e["deleted"])]  # drop empty ones
    if changed:
        entries.append({"name": write_segment(changed).name, "deleted": []})
    if not entries:
        raise ValueError("the corpus would have no document left")
    counts = _counts(current, gone, target / entries[-1]["name"] if changed else None, spec)
    chunks = {d: c for d, c in current.fingerprint_chunks.items() if d not in gone}
    chunks.update({d.doc_id: document_chunk(d.doc_id, d.raw, document_fields(d)) for d in changed})
    manifest = {**spec.to_dict(), "dim": current.manifest["dim"], "splitter": current.manifest.get("splitter"),
                "corpus_fingerprint": fingerprint_of(chunks, skipped), **counts,
                "skipped": len(skipped)}
    generation = write_generation(target, entries, manifest, skipped)
    publish(target, generation)
    return generation


def segments_of(index: CorpusIndex) -> list[CorpusIndex]:
    """The loaded segments of an index: a generation's, or the one build it is."""
    return list(getattr(index, "segments", None) or [index])


def segment_sizes(index: CorpusIndex) -> tuple[list[int], list[float]]:
    """Per segment of a loaded index: its live sentences, and the share of its documents deleted (what the
    merge policy weighs)."""
    segments = segments_of(index)
    live = getattr(index, "live_sentences", None)
    offsets = getattr(index, "sentence_offsets", None)
    deleted = {e["name"]: len(e["deleted"]) for e in entries_of(index)}
    sizes = [int(live[offsets[i]:offsets[i + 1]].sum()) if live is not None else len(s.sentences)
             for i, s in enumerate(segments)]
    return sizes, [deleted.get(s.path.name, 0) / max(len(s.documents), 1) for s in segments]


def _documents_by_segment(index: CorpusIndex) -> dict[str, set[str]]:
    return {seg.path.name: set(seg.documents) for seg in segments_of(index)}


def _counts(current: CorpusIndex, gone: set[str], new_segment: Path | None, spec: BuildSpec) -> dict:
    """The generation's documents, sentences and passages: the current index's live ones not ``gone``, and
    the new segment's."""
    by_doc = current.document_sentences
    lengths = np.fromiter((len(ids) for d, ids in by_doc.items() if d not in gone), dtype=np.int64)
    counts = {"documents": len(lengths), "sentences": int(lengths.sum()),
              "passages": int(passage_count(lengths, spec.passage_size, spec.passage_overlap).sum())}
    if new_segment is not None:
        added = json.loads((new_segment / "manifest.json").read_text(encoding="utf-8"))
        for key in counts:
            counts[key] += int(added[key])
    return counts


def lease_segments(target: Path, manifest: dict) -> list[leases.Lease]:
    """Leases on every segment a generation lists (:class:`qa.leases.FolderGone` when one was removed: the
    generation was replaced and collected meanwhile, and the caller loads the current one)."""
    held = []
    try:
        for entry in manifest[SEGMENTS]:
            held.append(leases.take(target / entry["name"]))
    except BaseException:
        for lease in held:
            lease.release()
        raise
    return held


def check_generation(target: Path, manifest: dict) -> None:
    for entry in manifest.get(SEGMENTS, []):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) \
                or not isinstance(entry.get("deleted"), list):
            raise IndexCorrupt(f"the index at {target} lists a segment it cannot read ({entry!r}): "
                               "run `qa index --rebuild`")


def merge_segments(target: Path, current: CorpusIndex, positions: Sequence[int], spec: BuildSpec,
                   ann_min_passages: int) -> Path | None:
    """Merge the segments at ``positions`` of the loaded generation ``current`` into one and publish the
    generation that holds it in their place. The merged segment is written into ``target/MERGING`` without
    the build lock (it copies data, which takes a while at scale, and updates go on meanwhile); the lock is
    taken only to move it beside the others and publish, over the generation published by then: documents
    deleted from the merged segments since are marked deleted in the new one. Returns the published
    generation; None when the merged segments are all gone meanwhile (the corpus was rebuilt, or another
    merge took them): the merge is dropped. Call with :func:`qa.index.publish.merge_lock` held."""
    from qa.index.merge import merge
    from qa.index.publish import MERGING, build_lock, published_build

    segments = segments_of(current)
    entries = entries_of(current)
    chosen = [segments[i] for i in positions]
    merged = merge(target / MERGING, chosen, [frozenset(entries[i]["deleted"]) for i in positions], spec,
                   ann_min_passages, int(current.manifest.get("passages", 0)))
    names = {s.path.name: s for s in chosen}
    live_then = {d for i in positions for d in segments[i].documents if d not in set(entries[i]["deleted"])}
    with build_lock(target):
        latest_dir = target / (published_build(target) or "")
        latest = json.loads((latest_dir / "manifest.json").read_text(encoding="utf-8"))
        latest_entries = [dict(e) for e in latest.get(SEGMENTS, [{"name": latest_dir.name, "deleted": []}])]
        if not any(e["name"] in names for e in latest_entries):
            shutil.rmtree(merged, ignore_errors=True)
            return None
        still = {d for e in latest_entries if e["name"] in names
                 for d in set(names[e["name"]].documents) - set(e["deleted"])}
        gone_since = sorted(live_then - still)
        at = min((k for k, e in enumerate(latest_entries) if e["name"] in names), default=len(latest_entries))
        kept = [e for e in latest_entries if e["name"] not in names]
        kept.insert(min(at, len(kept)), {"name": merged.name, "deleted": gone_since})
        manifest = {k: v for k, v in latest.items() if k not in (SEGMENTS, "format_version", "built_at")}
        skipped = [Skipped(**s) for s in json.loads((latest_dir / "skipped.json").read_text(encoding="utf-8"))] \
            if (latest_dir / "skipped.json").exists() else []
        merged = merged.rename(target / merged.name)
        generation = write_generation(target, kept, manifest, skipped)
        publish(target, generation)
    return generation


def merge_due(target: Path, index: CorpusIndex, spec: BuildSpec, *, nprobe: int = 64,
              ann_min_passages: int = 100_000, policy=None, up_to: int | None = None,
              max_sentences: int | None = None) -> int:
    """Make the merges the policy (qa/index/merge.py) finds due on the index published at ``target``, one
    after the other, each published as it is done; only merges of at most ``up_to`` live sentences when
    given. Does nothing when another process is merging (it merges what is due) or when the published index
    was built with another spec. ``index``: the one in service, whose segments are shared, not read again.
    ``max_sentences``: the default policy's cap on a merged segment. Returns the number of merges published."""
    from qa.index.merge import MergePolicy
    from qa.index.publish import merge_lock
    from qa.index.storage import load

    policy = policy or MergePolicy(max_sentences=max_sentences)
    done = 0
    with merge_lock(target) as mine:
        if not mine:
            return 0
        current = load(target, nprobe=nprobe, loaded=segments_of(index))
        try:
            if any(current.manifest.get(k) != v for k, v in spec.to_dict().items()):
                return 0
            while True:
                sizes, shares = segment_sizes(current)
                positions = policy.choose(sizes, shares)
                if not positions or (up_to is not None and sum(sizes[i] for i in positions) > up_to):
                    break
                if merge_segments(target, current, positions, spec, ann_min_passages) is None:
                    break
                done += 1
                previous, current = current, load(target, nprobe=nprobe, loaded=segments_of(current))
                if previous.lease is not None:
                    previous.lease.release()
        finally:
            if current.lease is not None:
                current.lease.release()
    return done


def index_change(target: Path, index: CorpusIndex, docs: list[Document], skipped: Sequence[Skipped],
                 spec: BuildSpec, encoder, progress: Callable[[str, int, int], None] | None = None, *,
                 segment_sentences: int | None = None) -> None:
    """Index the corpus folder's ``docs`` over ``index`` (the one in service). When it is the index published,
    built with ``spec``, and the changed documents hold at most ``SEGMENT_SHARE`` of the corpus's text, they
    become one new segment (only they are split and embedded) with their earlier versions and the removed
    documents marked deleted (merging comes later: :func:`merge_due`); otherwise the whole corpus is built
    again, reusing what the published build holds, in segments of at most ``segment_sentences`` when given
    (qa/index/bounded.py). Call with the build lock held."""
    from qa.index.build import build, write_build
    from qa.index.publish import published_build

    if published_build(target) == index.path.name and all(index.manifest.get(k) == v
                                                             for k, v in spec.to_dict().items()):
        have = index.fingerprint_chunks
        changed = [d for d in docs if have.get(d.doc_id) != document_chunk(d.doc_id, d.raw, document_fields(d))]
        folder = {d.doc_id for d in docs}
        removed = [d for d in have if d not in folder]
        if sum(len(d.raw) for d in changed) <= SEGMENT_SHARE * sum(len(d.raw) for d in docs):
            update(target, index, changed, removed,
                   lambda part: write_build(part, encoder, spec, target, progress, reuse=False), spec, skipped)
            return
    build(docs, encoder, spec, target, progress, reuse=True, skipped=skipped, segment_sentences=segment_sentences)


def apply_files(target: Path, index: CorpusIndex, folder: Path, file_ids: Sequence[str], spec: BuildSpec, encoder,
                limits) -> bool:
    """Index the corpus folder's files ``file_ids`` (added, replaced or removed: an upload, a deletion) over
    ``index``, reading only them: their documents become one new segment, the versions ``index`` holds and
    those of removed files are marked deleted, and the skipped report is updated for them. False, and
    nothing done, when ``index`` is not the one published or was built with another spec (the caller then
    reads the whole folder). Call with the build lock held."""
    from qa import formats
    from qa.index.build import write_build
    from qa.index.publish import published_build
    from qa.ingest import read_files

    if published_build(target) != index.path.name or any(index.manifest.get(k) != v
                                                         for k, v in spec.to_dict().items()):
        return False
    touched = set(file_ids)
    now = read_files(folder, touched, limits)
    have = index.fingerprint_chunks
    changed = [d for d in now.documents if have.get(d.doc_id) != document_chunk(d.doc_id, d.raw, document_fields(d))]
    present = {d.doc_id for d in now.documents}
    removed = [d for d in index.documents if formats.file_of(d) in touched and d not in present]
    skipped = [s for s in index.skipped if s.path not in touched] + now.skipped
    if not changed and not removed and skipped == index.skipped:
        return True
    update(target, index, changed, removed, lambda part: write_build(part, encoder, spec, target, reuse=False),
           spec, skipped)
    return True

"""A build in bounded memory: a corpus of more than ``per_segment`` sentences is built as several segments of
at most that many, each split, embedded and written with only its own sentences, vectors and word pieces in
memory (float16 word pieces are about 24 KB a sentence while they are encoded: 24 GB for a million
sentences in one build), and published as one generation (qa/index/segments.py). A generation answers as one
build of the same documents (qa/index/segmented.py), so the segments are only a matter of memory.

Documents keep their order: segment ``k`` holds a run of consecutive documents, so the canonical order of the
generation (document id, then segment) is the order of one build. Each segment reuses the build in service
as a single build does (qa/index/reuse.py). When the corpus has ``ann_min_passages`` passages or more, the
segments' dense indexes are IVF (:func:`qa.index.build.dense_index`), rewritten once every segment is written.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qa.index.build import IVF_MIN_SEGMENT, dense_index, write_split
from qa.index.publish import publish
from qa.index.reuse import Previous, previous_build, split_all
from qa.index.segments import write_generation
from qa.index.spec import BuildSpec, corpus_fingerprint, splitter_version
from qa.ingest import Skipped
from qa.types import Document, Sentence

CHARS_PER_SENTENCE = 120.0  # assumed until some documents are split (SQuAD and news: 120–140)
SUMMED = ("documents", "sentences", "passages", "split_documents", "encoded_texts", "embed_seconds")


@dataclass
class Part:
    """A run of consecutive documents with their sentences (``rows``: each one's row in the previous build,
    -1 when split here); ``last`` when no document follows."""

    docs: list[Document]
    sentences: list[Sentence]
    rows: np.ndarray
    last: bool


def build_in_segments(docs: list[Document], encoder, spec: BuildSpec, target: Path,
                      progress: Callable[[str, int, int], None] | None = None, *, reuse: bool = True,
                      skipped: Sequence[Skipped] = (), per_segment: int) -> Path:
    """Build and publish the index of ``docs``: one build folder when they hold at most ``per_segment``
    sentences, else a generation of segments of at most that many (a longer document alone). Returns the
    published folder. Call with the build lock held; a failure removes the segments written."""
    if not docs:
        raise ValueError("the corpus has no readable documents")
    step = progress or (lambda *_: None)
    started = time.perf_counter()
    previous = previous_build(target, spec) if reuse else None
    written: list[Path] = []
    try:
        for part in parts(docs, spec.layout, per_segment, previous, lambda done: step("split", done, len(docs))):
            whole = part.last and not written  # the corpus in one part: a build folder, as without segments
            written.append(write_split(part.docs, part.sentences, part.rows, previous, encoder, spec, target, step,
                                       skipped=skipped if whole else ()))
        if len(written) > 1:
            _dense_for_the_whole(written, spec.ann_min_passages)
        folder = written[0] if len(written) == 1 else _generation(target, written, docs, skipped, spec, started)
    except BaseException:
        for segment in written:
            shutil.rmtree(segment, ignore_errors=True)
        raise
    publish(target, folder)
    return folder


def parts(docs: list[Document], layout: bool, per_segment: int, previous: Previous | None,
          report: Callable[[int], None]) -> Iterator[Part]:
    """``docs`` split and cut into runs of at most ``per_segment`` sentences. Documents are split a batch at a
    time, each batch about what the next part still lacks (by the characters per sentence seen so far), so
    that only a part's sentences, and those of at most one batch more, are held at once."""
    held_docs: list[Document] = []
    held: list[Sentence] = []
    held_rows: list[np.ndarray] = []
    at, chars, seen = 0, 0, 0
    while at < len(docs) or held_docs:
        if at < len(docs) and len(held) <= per_segment:
            ratio = chars / seen if seen else CHARS_PER_SENTENCE
            end = _batch_end(docs, at, (per_segment + 1 - len(held)) * ratio)
            batch = docs[at:end]
            sentences, rows = split_all(batch, layout, lambda done, first=at: report(first + done), previous)
            held_docs += batch
            held += sentences
            held_rows.append(rows)
            chars, seen, at = chars + sum(len(d.raw) for d in batch), seen + len(sentences), end
            continue
        rows = np.concatenate(held_rows)
        n_docs, n_sentences = _cut(held, held_docs, per_segment)
        yield Part(held_docs[:n_docs], held[:n_sentences], rows[:n_sentences],
                   last=at == len(docs) and n_docs == len(held_docs))
        held_docs, held, held_rows = held_docs[n_docs:], held[n_sentences:], [rows[n_sentences:]]


def _batch_end(docs: list[Document], start: int, chars: float) -> int:
    """The end of the run of documents from ``start`` holding about ``chars`` characters (one at least)."""
    lengths = np.cumsum([len(d.raw) for d in docs[start:]])
    return start + min(len(lengths), int(np.searchsorted(lengths, chars, side="left")) + 1)


def _cut(sentences: list[Sentence], docs: list[Document], per_segment: int) -> tuple[int, int]:
    """How many of ``docs`` (and of their ``sentences``) the next part takes: as many whole documents as
    hold at most ``per_segment`` sentences, one at least."""
    counts: dict[str, int] = {}
    for sentence in sentences:
        counts[sentence.doc_id] = counts.get(sentence.doc_id, 0) + 1
    sizes = np.cumsum([counts.get(d.doc_id, 0) for d in docs])
    n_docs = max(1, int(np.searchsorted(sizes, per_segment, side="right")))
    return n_docs, int(sizes[n_docs - 1])


def _dense_for_the_whole(segments: list[Path], ann_min: int) -> None:
    """Each segment's dense index rewritten as IVF where the whole index calls for one (:func:`dense_index`
    with the index's passages): a segment is written before the corpus's size is known. Before publishing."""
    import faiss

    sizes = [int(json.loads((s / "manifest.json").read_text(encoding="utf-8"))["passages"]) for s in segments]
    if sum(sizes) < ann_min:
        return
    for folder, size in zip(segments, sizes):
        if size >= min(ann_min, IVF_MIN_SEGMENT):
            flat = faiss.read_index(str(folder / "passages.faiss"))
            tmp = folder / "passages.faiss.tmp"
            faiss.write_index(dense_index(flat.reconstruct_n(0, flat.ntotal), ann_min, sum(sizes)), str(tmp))
            os.replace(tmp, folder / "passages.faiss")


def _generation(target: Path, segments: list[Path], docs: list[Document], skipped: Sequence[Skipped],
                spec: BuildSpec, started: float) -> Path:
    """The generation folder listing ``segments`` (nothing deleted), with the manifest of one build of
    ``docs``: the spec, the corpus fingerprint, and the counts and work summed over the segments."""
    manifests = [json.loads((s / "manifest.json").read_text(encoding="utf-8")) for s in segments]
    totals = {key: sum(m.get(key, 0) for m in manifests) for key in SUMMED}
    manifest = {**spec.to_dict(), "dim": manifests[0]["dim"], "splitter": splitter_version(),
                "corpus_fingerprint": corpus_fingerprint(docs, skipped), **totals,
                "embed_seconds": round(totals["embed_seconds"], 3), "skipped": len(skipped),
                "build_seconds": round(time.perf_counter() - started, 3)}
    return write_generation(target, [{"name": s.name, "deleted": []} for s in segments], manifest, skipped)

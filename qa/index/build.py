"""An index build: documents → sentences, passages, lexical and dense indexes, saved and published."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from qa.index.publish import publish
from qa.index.reuse import (Previous, analyzer_for, encode_texts, passage_counts, previous_build, sentence_counts,
                            split_all)
from qa.index.rows import content_pieces, mean_vectors, piece_frequencies, piece_weights
from qa.index.spec import BuildSpec, corpus_fingerprint, make_passages, split_key, splitter_version
from qa.index.storage import BuildParts, save_build
from qa.ingest import Skipped
from qa.layout import layout_key
from qa.lexical import LexicalIndex
from qa.types import Document, Sentence


def build(docs: list[Document], encoder, spec: BuildSpec, target: Path,
          progress: Callable[[str, int, int], None] | None = None, *, reuse: bool = True,
          skipped: Sequence[Skipped] = (), segment_sentences: int | None = None) -> Path:
    """Build an index of ``docs`` and publish it as ``target/current``; returns the published folder.
    With ``segment_sentences``, a corpus of more sentences is built as segments of at most that many, each
    with only its own documents in memory, published as one generation (qa/index/bounded.py); otherwise
    one build folder (:func:`write_build`, then :func:`qa.index.publish.publish`)."""
    if segment_sentences:
        from qa.index.bounded import build_in_segments

        return build_in_segments(docs, encoder, spec, target, progress, reuse=reuse, skipped=skipped,
                                 per_segment=segment_sentences)
    build_dir = write_build(docs, encoder, spec, target, progress, reuse=reuse, skipped=skipped)
    publish(target, build_dir)
    return build_dir


def write_build(docs: list[Document], encoder, spec: BuildSpec, target: Path,
                progress: Callable[[str, int, int], None] | None = None, *, reuse: bool = True,
                skipped: Sequence[Skipped] = ()) -> Path:
    """Write a build folder of ``docs`` under ``target`` without publishing it (a whole index, or one
    segment of a generation: qa/index/segments.py); returns it.

    With ``reuse`` the build in service is the starting point, so that the work is in proportion to the
    change: a document whose text it already holds keeps its sentences (not split again), and sentences
    whose text it already embedded with the same model keep their vectors and word pieces (copied as
    stored, not encoded again). The lexical and dense indexes are then made from those stored parts.
    ``skipped``: the corpus folder's files not read, kept with the build (``CorpusIndex.skipped``).
    Call with :func:`qa.index.publish.build_lock` held when other processes may build the same ``target``.
    """
    if not docs:
        raise ValueError("the corpus has no readable documents")
    step = progress or (lambda *_: None)
    t0 = time.perf_counter()
    previous = previous_build(target, spec) if reuse else None
    sentences, previous_rows = split_all(docs, spec.layout, lambda done: step("split", done, len(docs)), previous)
    return write_split(docs, sentences, previous_rows, previous, encoder, spec, target, step, skipped=skipped,
                       started=t0)


def write_split(docs: list[Document], sentences: list[Sentence], previous_rows: np.ndarray,
                previous: Previous | None, encoder, spec: BuildSpec, target: Path,
                step: Callable[[str, int, int], None], *, skipped: Sequence[Skipped] = (),
                started: float | None = None) -> Path:
    """The build folder of ``docs`` once split into ``sentences`` (``previous_rows``: each one's row in
    ``previous``, -1 when split here): their terms, vectors and word pieces (reused from ``previous`` where
    it holds them), passages and indexes. A bounded build (qa/index/bounded.py) calls it once per segment."""
    t0 = time.perf_counter() if started is None else started
    if not sentences:
        raise ValueError("the corpus has no sentences")
    passages = make_passages(sentences, spec.passage_size, spec.passage_overlap)

    lexical_reuse = previous_rows if previous is not None and previous.lexical is not None else None
    analyzer = analyzer_for(sentences, lexical_reuse, previous)
    terms, counts = sentence_counts(sentences, lexical_reuse, previous, analyzer)
    lexical_s = LexicalIndex.from_counts(len(sentences), terms, *counts)
    lexical_p = LexicalIndex.from_counts(len(passages), terms, *passage_counts(passages, len(sentences), *counts))

    texts = [s.text for s in sentences]
    encoded = [0]  # distinct texts this build had to encode

    def embedded(done: int, total: int) -> None:
        encoded[0] = total
        step("embed", done, total)

    t_embed = time.perf_counter()
    vectors, tokens = encode_texts(encoder, texts, embedded, previous,
                                   keep_tokens=len(sentences) if spec.token_vectors else 0, known_rows=previous_rows)
    t_embed = time.perf_counter() - t_embed
    findex = dense_index(mean_vectors(vectors, passages), spec.ann_min_passages)  # a passage: its sentences' mean

    manifest = {**spec.to_dict(), "dim": encoder.dim, "splitter": splitter_version(),
                "corpus_fingerprint": corpus_fingerprint(docs, skipped),
                "split_documents": len(docs) - (sum(split_key(d.raw, layout_key(d)) in previous.splits for d in docs)
                                                if previous else 0),
                "encoded_texts": encoded[0], "embed_seconds": round(t_embed, 3)}
    content = content_pieces(encoder.vocabulary, analyzer.stopwords)
    parts = BuildParts(docs, sentences, passages, findex, vectors, lexical_p, lexical_s, analyzer, tokens=tokens,
                       previous_tokens=previous.tokens if previous else None,
                       token_weights=lambda ids, offsets: piece_weights(piece_frequencies(ids, offsets, len(content)),
                                                                        len(offsets) - 1, content),
                       piece_content=content, skipped=skipped)
    return save_build(target, parts, manifest, t0)


IVF_MIN_SEGMENT = 25_000  # passages: from about here k-means has FAISS's 39 points a list at 4·√n lists


def dense_index(vectors: np.ndarray, ann_min: int, index_passages: int | None = None):
    """Exact inner-product search while the corpus is small; an inverted-file index (IVF) from ``ann_min``
    vectors on, which scans only the lists nearest the query (``nprobe`` of them, set at load time).
    A segment of an index of ``index_passages`` passages is IVF once the index reaches ``ann_min`` and the
    segment holds ``IVF_MIN_SEGMENT`` of them: a question searches every segment, so it is the index's size
    that makes exact search slow (ten exact segments of 47,000 passages: about 48 ms, docs/PERFORMANCE.md).

    nlist ≈ 4·√n is FAISS's usual starting point; k-means trains on up to 256 vectors per list.
    """
    import faiss

    n, dim = vectors.shape
    if max(n, index_passages or 0) < ann_min or n < min(ann_min, IVF_MIN_SEGMENT):
        index = faiss.IndexFlatIP(dim)
    else:
        nlist = int(4 * np.sqrt(n))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        sample = np.random.default_rng(0).choice(n, size=min(n, 256 * nlist), replace=False)
        index.train(vectors[np.sort(sample)])
    index.add(vectors)
    return index

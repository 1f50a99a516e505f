"""Building from the build in service: documents whose text it holds keep their sentences, sentences whose
text it embedded keep their vectors, word pieces and terms, so the work of a build is in proportion to the
change. Also the splitting and encoding of what is new."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from qa.index.publish import CURRENT
from qa.index.rows import SentenceTokens, TokenRows, VectorRows, gather_ranges
from qa.index.segments import SEGMENTS
from qa.index.spec import FORMAT_VERSION, KINDS, BuildSpec, IndexUnavailable, split_key, splitter_version
from qa.index.stacked import StackedRows, StackedTokenRows
from qa.index.storage import read_documents, read_manifest
from qa.ingest import split_sentences
from qa.layout import layout_key
from qa.lexical import LexicalIndex
from qa.text import Analyzer, default_stopwords
from qa.types import Document, Passage, Sentence


@dataclass
class Previous:
    """The build in service as a starting point: its sentence table, the span of rows of each document
    text (when it was split the way this build splits), its rows by sentence text, vectors and word pieces."""

    table: np.ndarray  # (doc, index, start, end, kind) per sentence row
    splits: dict[str, tuple[int, int]]  # split_key (document text and layout) → [first, last) rows
    rows: dict[str, int]  # sentence text → a row
    vectors: VectorRows | StackedRows
    tokens: TokenRows | StackedTokenRows | None
    lexical: LexicalIndex | None = None  # its sentences' terms, when analysed as this build analyses
    analyzer: Analyzer | None = None


def previous_build(target: Path, spec: BuildSpec) -> Previous | None:
    """The index in service, if its encodings can be reused: made with the same model (and keeping word
    pieces when this build needs them). Its sentences are reused too when it split with the same splitter
    and layout. A generation's segments are read as one build, their rows one after the other (deleted
    documents' too: a text's vector does not depend on its document); their terms are analysed again."""
    try:
        manifest = read_manifest(target)
        if manifest.get("format_version") != FORMAT_VERSION or manifest.get("model") != spec.model \
                or (spec.token_vectors and not manifest.get("token_vectors")):
            return None
        build_dir = (target / CURRENT).resolve()
        folders = [target / entry["name"] for entry in manifest.get(SEGMENTS, [])] or [build_dir]
        raw_docs, table = _tables(folders)
        vectors = _one([VectorRows(f / "sentence_vectors.npy") for f in folders], StackedRows)
        tokens = _one([TokenRows(f) for f in folders], StackedTokenRows) if spec.token_vectors else None
    except (IndexUnavailable, OSError, ValueError, KeyError, IndexError):
        return None  # nothing usable: split and encode everything
    if len(vectors) != len(table) or (tokens is not None and len(tokens) != len(table)):
        return None
    raws = [d["raw"] for d in raw_docs]
    keys = [split_key(d["raw"], d.get("layout")) for d in raw_docs]
    rows = {raws[doc_no][start:end]: row for row, (doc_no, _, start, end, _) in enumerate(table.tolist())}
    splits: dict[str, tuple[int, int]] = {}
    lexical = analyzer = None
    if manifest.get("layout") == spec.layout and manifest.get("splitter") == splitter_version():
        bounds = np.flatnonzero(np.diff(table[:, 0], prepend=-1, append=-1))  # where each document's rows begin
        for first, last in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
            splits.setdefault(keys[table[first, 0]], (first, last))
        if manifest.get("analyzer_version") == spec.analyzer_version and len(folders) == 1:
            try:
                lexical = LexicalIndex.load(build_dir, "bm25_sentences")
                lemmas = json.loads((build_dir / "lemmas.json").read_text(encoding="utf-8"))
                analyzer = Analyzer.from_dict(manifest["analyzer"], lemmas)
            except (OSError, ValueError, KeyError):
                lexical = analyzer = None
            if lexical is not None and lexical.n_docs != len(table):
                lexical = analyzer = None
    return Previous(table, splits, rows, vectors, tokens, lexical, analyzer)


def _tables(folders: list[Path]) -> tuple[list[dict], np.ndarray]:
    """The documents and sentence tables of build folders as one: each table's document numbers follow the
    earlier folders' documents."""
    raw_docs: list[dict] = []
    tables = []
    for folder in folders:
        docs, table = read_documents(folder)
        tables.append(np.column_stack([table[:, :1] + len(raw_docs), table[:, 1:]]) if len(table) else table)
        raw_docs += docs
    return raw_docs, np.concatenate(tables)


def _one(parts: list, stacked: Callable):
    """A single part as it is; several read as one (``stacked``)."""
    return parts[0] if len(parts) == 1 else stacked(parts)


PARALLEL_SPLIT_CHARS = 2_000_000  # below this, worker start-up costs more than it saves


def split_all(docs: list[Document], layout: bool, report: Callable[[int], None],
               previous: Previous | None = None) -> tuple[list[Sentence], np.ndarray]:
    """Every document's sentences, in corpus order, and for each its row in ``previous`` (-1 when split
    here). A document whose exact text ``previous`` holds takes its sentences from there."""
    cached = previous.splits if previous is not None else {}
    keys = [split_key(d.raw, layout_key(d)) for d in docs]
    todo = [d for d, key in zip(docs, keys) if key not in cached]
    fresh = iter(split_documents(todo, layout, lambda done: report(done + len(docs) - len(todo))))
    sentences: list[Sentence] = []
    rows: list[np.ndarray] = []
    for doc, key in zip(docs, keys):
        span = cached.get(key)
        if span is None:
            part = next(fresh)
            rows.append(np.full(len(part), -1, dtype=np.int64))
        else:
            part = [Sentence(doc.doc_id, idx, start, end, doc.raw[start:end], KINDS[kind])
                    for idx, start, end, kind in previous.table[span[0] : span[1], 1:].tolist()]
            rows.append(np.arange(span[0], span[1], dtype=np.int64))
        sentences.extend(part)
    report(len(docs))
    return sentences, np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)


def split_documents(docs: list[Document], layout: bool, report: Callable[[int], None]) -> list[list[Sentence]]:
    """Each document's sentences. pysbd is pure Python (about 700 sentences/s per core here), so a large
    corpus is split in worker processes, one per core; spawned, not forked, because the parent may be
    running onnxruntime threads. The workers end with the build, however it ends: each watches its parent
    and exits once the parent is gone (a killed `qa index` leaves no worker splitting for nobody)."""
    workers = min(os.cpu_count() or 1, 8)
    if workers < 2 or sum(len(d.raw) for d in docs) < PARALLEL_SPLIT_CHARS:
        out = []
        for i, doc in enumerate(docs):
            out.append(split_sentences(doc, layout=layout))
            report(i + 1)
        return out
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from functools import partial

    chunk = max(1, min(500, len(docs) // (workers * 8)))
    batches = [docs[i : i + chunk] for i in range(0, len(docs), chunk)]
    out = []
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_exit_with_parent, initargs=(os.getpid(),))
    try:
        for done, part in enumerate(pool.map(partial(_split_batch, layout=layout), batches), start=1):
            out.extend(part)
            report(min(done * chunk, len(docs)))
    finally:  # on an error or Ctrl-C, batches not started are dropped rather than split first
        pool.shutdown(wait=True, cancel_futures=True)
    return out


def _split_batch(docs: list[Document], layout: bool) -> list[list[Sentence]]:
    return [split_sentences(d, layout=layout) for d in docs]


def _exit_with_parent(parent: int, every: float = 0.2) -> None:
    """Pool worker initializer: a thread that ends the worker once ``parent`` is no longer its parent."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every)
        os._exit(1)

    threading.Thread(target=watch, name="qa-parent-watch", daemon=True).start()


def analyzer_for(sentences: list[Sentence], reuse: np.ndarray | None, previous: Previous | None) -> Analyzer:
    """The analyzer of a build, knowing the lemma of every word of its sentences. Reusing a build, it
    starts from that build's table and looks up only the words of new sentences: the table then also
    keeps words of removed documents, which only matters to a question using such a word in another
    form than the corpus does (`qa index --rebuild` makes the exact table)."""
    if reuse is None:
        return Analyzer(stopwords=default_stopwords(), lemmatize=True).with_lemmas_of(s.text for s in sentences)
    base = previous.analyzer
    fresh = base.with_lemmas_of(sentences[i].text for i in np.flatnonzero(reuse < 0).tolist())
    return replace(base, lemmas={**base.lemmas, **fresh.lemmas})


def sentence_counts(sentences: list[Sentence], reuse: np.ndarray | None, previous: Previous | None,
                     analyzer: Analyzer) -> tuple[list[str], tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Each sentence's index terms as counts (sentence, term, tf), ordered by sentence, and the terms:
    taken from the previous build's lexical index for sentences reused from it (``reuse[i]`` ≥ 0, their
    row there), from the analyzer for the others."""
    ids: dict[str, int] = {}
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    fresh = range(len(sentences))
    if reuse is not None:
        old = previous.lexical
        ids = {t: i for i, t in enumerate(old.terms)}
        docs, terms, tfs = old.counts()
        starts = np.searchsorted(docs, np.arange(old.n_docs + 1))
        taken = np.flatnonzero(reuse >= 0)
        lengths = starts[reuse[taken] + 1] - starts[reuse[taken]]
        at = gather_ranges(starts[reuse[taken]], lengths)
        parts.append((np.repeat(taken, lengths), terms[at], tfs[at]))
        fresh = np.flatnonzero(reuse < 0).tolist()
    rows: list[int] = []
    found: list[int] = []
    for i in fresh:
        for term in analyzer.terms(sentences[i].text):
            rows.append(i)
            found.append(ids.setdefault(term, len(ids)))
    width = max(len(ids), 1)
    keys, tf = np.unique(np.array(rows, dtype=np.int64) * width + np.array(found, dtype=np.int64), return_counts=True)
    parts.append((keys // width, keys % width, tf))
    doc, term, tf = (np.concatenate(column) for column in zip(*parts))
    order = np.argsort(doc, kind="stable")
    return list(ids), (doc[order], term[order], tf[order])


def passage_counts(passages: list[Passage], n_sentences: int, doc: np.ndarray, term: np.ndarray,
                    tf: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A passage's counts are the sums of its sentences' (its text is theirs joined by spaces)."""
    starts = np.searchsorted(doc, np.arange(n_sentences + 1))
    sizes = np.fromiter((len(p.sentence_ids) for p in passages), dtype=np.int64, count=len(passages))
    members = np.fromiter((i for p in passages for i in p.sentence_ids), dtype=np.int64, count=int(sizes.sum()))
    owner = np.repeat(np.arange(len(passages), dtype=np.int64), sizes)
    lengths = starts[members + 1] - starts[members]
    at = gather_ranges(starts[members], lengths)
    n_terms = int(term.max()) + 1 if len(term) else 1
    keys, inverse = np.unique(np.repeat(owner, lengths) * n_terms + term[at], return_inverse=True)
    return keys // n_terms, keys % n_terms, np.bincount(inverse, weights=tf[at]).astype(np.int64)


def encode_texts(encoder, texts: list[str], report: Callable[[int, int], None],
                       known: Previous | None = None, batch: int = 512, keep_tokens: int = 0,
                       known_rows: np.ndarray | None = None):
    """Vectors of ``texts``, each distinct text encoded once (news repeats boilerplate and wire copy), and
    not at all when ``known`` already holds it: at ``known_rows[i]`` (≥ 0) for the first texts, else any row
    with that text. With ``keep_tokens``, the word pieces of the first ``keep_tokens`` texts (the
    sentences) as :class:`SentenceTokens` (reused ones by their row in ``known``); else None."""
    first: dict[str, int] = {}
    inverse = np.fromiter((first.setdefault(t, len(first)) for t in texts), dtype=np.int64, count=len(texts))
    distinct = list(first)
    out = np.zeros((len(distinct), encoder.dim), dtype=np.float32)
    source = np.full(len(texts), -1, dtype=np.int64)  # per text: its row in `known`
    if known is not None:
        if known_rows is not None:
            source[: len(known_rows)] = known_rows
        lookup = np.flatnonzero(source < 0)
        source[lookup] = np.fromiter((known.rows.get(texts[i], -1) for i in lookup), dtype=np.int64, count=len(lookup))
    found = np.full(len(distinct), -1, dtype=np.int64)
    found[inverse[source >= 0]] = source[source >= 0]
    hit = found >= 0
    if hit.any():
        out[hit] = known.vectors[found[hit]]
    todo = np.flatnonzero(~hit)
    pieces: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    # Sorting by length keeps padding small inside each model batch; the order is restored afterwards.
    order = todo[np.argsort([len(distinct[j]) for j in todo], kind="stable")]
    for i in range(0, len(order), batch):
        ids = order[i : i + batch]
        chunk = [distinct[j] for j in ids]
        if keep_tokens:
            done = encoder.encode_tokens(chunk)
            out[ids] = done.vectors
            for j, t, p in zip(ids.tolist(), done.tokens, done.token_ids):
                pieces[j] = (t.astype(np.float16), p)
        else:
            out[ids] = encoder.encode(chunk)
        report(min(i + batch, len(order)), len(order))
    if not keep_tokens:
        return out[inverse], None
    # A sentence takes the word pieces of the row its vector came from, else those encoded here.
    rows = np.where(source[:keep_tokens] >= 0, source[:keep_tokens], found[inverse[:keep_tokens]])
    new = [pieces[j] for j in inverse[:keep_tokens][rows < 0].tolist()]
    offsets = np.concatenate([[0], np.cumsum([len(p) for _, p in new], dtype=np.int64)]).astype(np.int64)
    vectors = np.concatenate([v for v, _ in new]) if new else np.zeros((0, encoder.dim), np.float16)
    ids = np.concatenate([p for _, p in new]).astype(np.int32) if new else np.zeros(0, np.int32)
    return out[inverse], SentenceTokens(rows, vectors, offsets, ids)

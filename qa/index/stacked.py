"""Several segments read as one index, by global id: rows (sentence vectors, word-piece vectors) and the
BM25 lexicon with corpus-wide statistics.

A segmented index (qa/index/segments.py) is a list of immutable segments, each a small index of its own
documents, and deletion marks. Reading it as one index needs each segment's rows at a global id (segment
``s`` holds the global ids ``offsets[s]`` to ``offsets[s + 1]``) and BM25 statistics over the live
documents of every segment together, so that a document scores what it would in one index built from
scratch: the document frequencies are summed over segments, deleted documents left out, and the idf is
computed from the sums as :meth:`qa.lexical.LexicalIndex.from_counts` computes it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from qa.index.rows import row_ids
from qa.lexical import LexicalIndex, TermTable, okapi_idf, okapi_scores, scores_at


class StackedRows:
    """The rows of several matrices (:class:`qa.index.rows.VectorRows` or arrays, all as wide) as one:
    ``rows[ids]`` in the order asked, each read from the part that holds it."""

    def __init__(self, parts: Sequence):
        if not parts:
            raise ValueError("no parts to stack")
        self.parts = list(parts)
        self.offsets = np.concatenate([[0], np.cumsum([len(p) for p in self.parts])]).astype(np.int64)
        widths = {p.shape[1] for p in self.parts}
        if len(widths) != 1:
            raise ValueError(f"parts of different widths {sorted(widths)}")
        self.shape = (int(self.offsets[-1]), widths.pop())
        self.dtype = np.dtype(self.parts[0].dtype)

    def __len__(self) -> int:
        return self.shape[0]

    def part_of(self, ids: np.ndarray) -> np.ndarray:
        """The part holding each global id."""
        return np.searchsorted(self.offsets, ids, side="right") - 1

    def __getitem__(self, ids) -> np.ndarray:
        if isinstance(ids, (int, np.integer)):
            return self[np.array([ids])][0]
        ids = row_ids(ids, self.shape[0])
        out = np.empty((len(ids), self.shape[1]), dtype=self.dtype)
        part = self.part_of(ids)
        for p in np.unique(part).tolist():
            at = np.flatnonzero(part == p)
            out[at] = self.parts[p][ids[at] - self.offsets[p]]
        return out

    def ranges(self, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """Rows ``starts[i]`` to ``ends[i]`` for each ``i``, one after the other; a range lies within one part
        (a sentence's word pieces are in its segment)."""
        starts, ends = np.asarray(starts, dtype=np.int64), np.asarray(ends, dtype=np.int64)
        out = np.empty((int((ends - starts).sum()), self.shape[1]), dtype=self.dtype)
        bounds = np.concatenate([[0], np.cumsum(ends - starts)])
        part = self.part_of(starts)
        for p in np.unique(part).tolist():
            which = np.flatnonzero((part == p) & (ends > starts))
            if not len(which):
                continue
            base = self.offsets[p]
            source = self.parts[p]
            if hasattr(source, "ranges"):
                got = source.ranges(starts[which] - base, ends[which] - base)
            else:
                got = np.concatenate([source[s - base:e - base] for s, e in zip(starts[which], ends[which])])
            at = np.concatenate([np.arange(bounds[i], bounds[i + 1]) for i in which.tolist()])
            out[at] = got
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        whole = np.concatenate([np.asarray(p) for p in self.parts])
        return whole if dtype is None else whole.astype(dtype)


class StackedTokenRows:
    """Several segments' word pieces (:class:`qa.index.rows.TokenRows`) as one previous build's, sentence after
    sentence: what a build reusing a generation copies rows from (``offsets``, ``scales``, ``_ids`` and
    :meth:`copy_rows` over the pieces of all of them)."""

    def __init__(self, parts: Sequence):
        self.parts = list(parts)
        sizes = [int(p.offsets[-1]) for p in self.parts]
        self.piece_offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.offsets = np.concatenate([*(p.offsets[:-1] + base for p, base in zip(self.parts, self.piece_offsets)),
                                       self.piece_offsets[-1:]]).astype(np.int64)
        self.scales = np.concatenate([p.scales for p in self.parts])
        self._ids = np.concatenate([np.asarray(p._ids) for p in self.parts])
        self.vectors = self.parts[0].vectors  # the width of every part's rows

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def copy_rows(self, first: int, last: int, out_fd: int, out_at: int) -> None:
        """Rows ``first`` to ``last`` (over all parts) into ``out_fd`` at ``out_at``, part by part."""
        row_bytes = self.vectors._row_bytes
        for part, base, end in zip(self.parts, self.piece_offsets[:-1].tolist(), self.piece_offsets[1:].tolist()):
            lo, hi = max(first, base), min(last, end)
            if lo < hi:
                part.copy_rows(lo - base, hi - base, out_fd, out_at + (lo - first) * row_bytes)


class StackedLexicon(TermTable):
    """The lexicons of several segments (each a :class:`qa.lexical.LexicalIndex` over its own documents) read
    as one over the live documents of all of them: global document ids (segment offsets added), corpus-wide
    document frequencies, idf and average length. Deleted documents keep their ids and never score; ``n_docs``
    counts the live ones, as an index built from them alone would.

    It answers what ranking and retrieval ask of a lexicon (``vocab``, ``idf``, ``idf_of``, ``n_docs``,
    ``postings``, ``scores``, ``scores_of``, ``contains``) with the same results as one
    :meth:`~qa.lexical.LexicalIndex.from_counts` index of the live documents (ids aside)."""

    def __init__(self, parts: Sequence[LexicalIndex], live: Sequence[np.ndarray | None], k1: float = 1.5,
                 b: float = 0.75):
        if len(parts) != len(live):
            raise ValueError("one live mask (or None: every document) per part")
        self.parts = list(parts)
        self.live = [np.ones(p.n_docs, dtype=bool) if m is None else np.asarray(m, dtype=bool)
                     for p, m in zip(self.parts, live)]
        self.offsets = np.concatenate([[0], np.cumsum([p.n_docs for p in self.parts])]).astype(np.int64)
        self.k1, self.b = k1, b
        self.doc_len = np.concatenate([p.doc_len for p in self.parts]).astype(np.int32) if self.parts \
            else np.zeros(0, dtype=np.int32)
        self.alive = np.concatenate(self.live) if self.parts else np.zeros(0, dtype=bool)
        df: dict[str, int] = {}
        for part, mask in zip(self.parts, self.live):
            terms = part.terms
            counts = _live_document_frequencies(part, mask)
            for t in np.flatnonzero(counts).tolist():
                df[terms[t]] = df.get(terms[t], 0) + int(counts[t])
        ordered = sorted(df)  # the vocabulary in term order, as from_counts keeps it
        self.vocab = {t: i for i, t in enumerate(ordered)}
        n_live = int(self.alive.sum())
        self.df = np.array([df[t] for t in ordered], dtype=np.int64)
        self.idf = okapi_idf(self.df, n_live)
        self.avgdl = float(self.doc_len[self.alive].sum() / n_live) if n_live else 0.0
        self._n_live = n_live

    @property
    def n_docs(self) -> int:
        return self._n_live

    def frequencies(self) -> np.ndarray:
        """Per term row: how many live documents hold it."""
        return self.df

    def postings(self, term: str) -> tuple[np.ndarray, np.ndarray]:
        """The live documents holding ``term`` (global ids, ascending) and its frequency in each."""
        docs, tfs = [], []
        for offset, part, mask in zip(self.offsets.tolist(), self.parts, self.live):
            d, f = part.postings(term)
            if len(d):
                keep = mask[d]
                docs.append(d[keep].astype(np.int64) + offset)
                tfs.append(f[keep])
        if not docs:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int32)
        return np.concatenate(docs), np.concatenate(tfs)

    def scores(self, terms: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(doc_ids, scores)`` of every live document holding a query term, BM25 with the corpus-wide
        statistics (a repeated query term counts once per occurrence, as in rank-bm25)."""
        parts = [(self.postings(t), self.idf_of(t)) for t in terms if t in self.vocab]
        return okapi_scores(parts, self.doc_len, self.avgdl, self.k1, self.b)

    def scores_of(self, terms: list[str], doc_ids: np.ndarray) -> np.ndarray:
        return scores_at(self.scores(terms), doc_ids)

    def contains(self, doc_ids: np.ndarray, terms: list[str]) -> np.ndarray:
        """Boolean matrix ``[len(doc_ids), len(terms)]``: whether each document has each term."""
        doc_ids = np.asarray(doc_ids, dtype=np.int64)
        out = np.zeros((len(doc_ids), len(terms)), dtype=bool)
        part = np.searchsorted(self.offsets, doc_ids, side="right") - 1
        for p in np.unique(part).tolist():
            at = np.flatnonzero(part == p)
            out[at] = self.parts[p].contains(doc_ids[at] - self.offsets[p], terms)
        return out


def _live_document_frequencies(part: LexicalIndex, live: np.ndarray) -> np.ndarray:
    """Per term row of ``part``: how many of its live documents hold it."""
    if live.all():
        return np.diff(part.indptr)
    rows = np.repeat(np.arange(len(part.indptr) - 1), np.diff(part.indptr))
    return np.bincount(rows[live[part.docs]], minlength=len(part.indptr) - 1)

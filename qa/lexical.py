"""BM25 over an inverted index, with rank-bm25's scoring.

rank-bm25 computes the statistics (Okapi idf with its epsilon floor, document lengths) when the index is
built; they are then stored as compact postings arrays. A query scores only the documents that contain
one of its terms, with the same formula rank-bm25's ``get_scores`` applies to every document, in NumPy:
the scores are identical, and a query costs the length of its postings instead of the corpus size.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class CorpusStatistics:
    """The corpus-wide part of BM25: each term's idf and the average document length."""

    idf: dict[str, float]
    avgdl: float

    @classmethod
    def okapi(cls, document_frequencies: dict[str, int], n_docs: int, total_length: int,
              epsilon: float = 0.25) -> "CorpusStatistics":
        """rank-bm25's BM25Okapi statistics from counts: ``document_frequencies`` in the order the terms first
        occur in the corpus (the order its idf floor sums them in), ``n_docs`` and their summed length."""
        from rank_bm25 import BM25Okapi

        bm = BM25Okapi.__new__(BM25Okapi)  # only its idf formula, applied to counts gathered elsewhere
        bm.corpus_size, bm.epsilon, bm.idf = n_docs, epsilon, {}
        bm._calc_idf(document_frequencies)
        return cls(bm.idf, total_length / n_docs)


def okapi_idf(df: np.ndarray, n_docs: int, epsilon: float = 0.25) -> np.ndarray:
    """rank-bm25's BM25Okapi idf of terms held by ``df`` of ``n_docs`` documents (the terms in vocabulary
    order): log((N − df + 0.5) / (df + 0.5)), a negative value floored at ``epsilon`` × the mean idf."""
    idf = np.log(n_docs - df + 0.5) - np.log(df + 0.5)
    idf = np.where(idf < 0, epsilon * idf.mean(), idf) if len(idf) else idf
    return np.asarray(idf, dtype=np.float32)


def okapi_scores(parts: list[tuple[tuple[np.ndarray, np.ndarray], float]], doc_len: np.ndarray, avgdl: float,
                 k1: float, b: float) -> tuple[np.ndarray, np.ndarray]:
    """``(doc_ids, scores)`` of BM25 from each query term's postings (documents, frequencies) and idf: summed
    into one slot per document, linear in the postings where sorting them would not be."""
    if not parts:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    acc = np.zeros(len(doc_len), dtype=np.float64)
    touched = np.zeros(len(doc_len), dtype=bool)
    for (docs, tfs), idf in parts:  # a document appears once in a term's postings
        norm = k1 * (1 - b + b * doc_len[docs] / avgdl)
        acc[docs] += idf * tfs * (k1 + 1) / (tfs + norm)
        touched[docs] = True
    ids = np.flatnonzero(touched)
    return ids.astype(np.int64), acc[ids].astype(np.float32)


def scores_at(scored: tuple[np.ndarray, np.ndarray], doc_ids: np.ndarray) -> np.ndarray:
    """The scores of ``doc_ids`` in ``(ids ascending, scores)``; 0 for a document not scored."""
    ids, vals = scored
    out = np.zeros(len(doc_ids), dtype=np.float32)
    if len(ids):
        pos = np.searchsorted(ids, doc_ids)
        hit = (pos < len(ids)) & (ids[np.minimum(pos, len(ids) - 1)] == doc_ids)
        out[hit] = vals[pos[hit]]
    return out


class TermTable:
    """What a lexicon answers from its ``vocab`` (term → row) and ``idf`` (by row) alone."""

    vocab: dict[str, int]
    idf: np.ndarray

    @property
    def terms(self) -> list[str]:
        """The vocabulary by row."""
        return sorted(self.vocab, key=self.vocab.get)

    def idf_of(self, term: str) -> float | None:
        row = self.vocab.get(term)
        return None if row is None else float(self.idf[row])


@dataclass
class LexicalIndex(TermTable):
    vocab: dict[str, int]  # term → row of the postings
    idf: np.ndarray  # float32 per term (rank-bm25's BM25Okapi.idf)
    doc_len: np.ndarray  # int32 per document
    indptr: np.ndarray  # int64, postings of term t are docs[indptr[t]:indptr[t+1]]
    docs: np.ndarray  # int32 document ids, ascending within a term
    tfs: np.ndarray  # int32 term frequencies, aligned with docs
    avgdl: float
    k1: float = 1.5
    b: float = 0.75

    @property
    def n_docs(self) -> int:
        return len(self.doc_len)

    @classmethod
    def build(cls, corpus: list[list[str]], k1: float = 1.5, b: float = 0.75, *,
              statistics: CorpusStatistics | None = None) -> LexicalIndex:
        """Postings of ``corpus``, scored with its own idf and average length, or with ``statistics``
        gathered over a larger corpus of which it is a part (one shard of a sharded index)."""
        from rank_bm25 import BM25Okapi

        bm = BM25Okapi(corpus, k1=k1, b=b)
        if statistics is not None:
            bm.idf = {t: statistics.idf[t] for t in bm.idf}
            bm.avgdl = statistics.avgdl
        vocab = {t: i for i, t in enumerate(sorted(bm.idf))}
        rows: list[list[tuple[int, int]]] = [[] for _ in vocab]
        for doc, freqs in enumerate(bm.doc_freqs):
            for term, tf in freqs.items():
                rows[vocab[term]].append((doc, tf))
        sizes = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        indptr = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        flat = [p for r in rows for p in r]
        docs = np.fromiter((d for d, _ in flat), dtype=np.int32, count=len(flat))
        tfs = np.fromiter((t for _, t in flat), dtype=np.int32, count=len(flat))
        idf = np.array([bm.idf[t] for t in vocab], dtype=np.float32)
        return cls(vocab, idf, np.asarray(bm.doc_len, dtype=np.int32), indptr, docs, tfs, float(bm.avgdl), k1, b)

    @classmethod
    def from_counts(cls, n_docs: int, terms: list[str], doc_ids: np.ndarray, term_ids: np.ndarray, tfs: np.ndarray,
                    k1: float = 1.5, b: float = 0.75, epsilon: float = 0.25) -> "LexicalIndex":
        """The index of ``n_docs`` documents given as term counts: document ``doc_ids[i]`` holds term
        ``terms[term_ids[i]]`` ``tfs[i]`` times (one entry per document and term).

        The statistics are rank-bm25's BM25Okapi ones (Okapi idf, negative values floored at ``epsilon`` ×
        the mean idf; document lengths and their mean), computed in NumPy from counts rather than token
        lists, so that an index update reuses the counts of unchanged documents instead of tokenising them
        again. :meth:`build` gives the same index from token lists. Terms no document holds are dropped.
        """
        doc_ids, term_ids = np.asarray(doc_ids, dtype=np.int64), np.asarray(term_ids, dtype=np.int64)
        tfs = np.asarray(tfs, dtype=np.int64)
        df = np.bincount(term_ids, minlength=len(terms))
        kept = sorted(np.flatnonzero(df).tolist(), key=terms.__getitem__)  # the vocabulary in term order
        renumber = np.full(len(terms), -1, dtype=np.int64)
        renumber[kept] = np.arange(len(kept))
        rows = renumber[term_ids]
        order = np.lexsort((doc_ids, rows))
        df = df[kept]
        idf = okapi_idf(df, n_docs, epsilon)
        doc_len = np.bincount(doc_ids, weights=tfs, minlength=n_docs).astype(np.int32)
        return cls({terms[t]: i for i, t in enumerate(kept)}, idf, doc_len,
                   np.concatenate([[0], np.cumsum(df)]).astype(np.int64), doc_ids[order].astype(np.int32),
                   tfs[order].astype(np.int32), float(doc_len.sum() / n_docs), k1, b)

    def frequencies(self) -> np.ndarray:
        """Per term row: how many documents hold it (what a lexicon adds to corpus-wide statistics)."""
        return np.diff(self.indptr)

    def counts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The index as counts (doc_ids, term_ids, tfs), ordered by document: the input of :meth:`from_counts`
        with ``terms`` in vocabulary order."""
        term_ids = np.repeat(np.arange(len(self.idf), dtype=np.int64), np.diff(self.indptr))
        order = np.argsort(self.docs, kind="stable")
        return self.docs[order].astype(np.int64), term_ids[order], self.tfs[order].astype(np.int64)

    def postings(self, term: str) -> tuple[np.ndarray, np.ndarray]:
        row = self.vocab.get(term)
        if row is None:
            return np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int32)
        lo, hi = self.indptr[row], self.indptr[row + 1]
        return self.docs[lo:hi], self.tfs[lo:hi]

    def scores(self, terms: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(doc_ids, scores)`` for every document containing a query term (the rest score 0).

        A repeated query term counts once per occurrence, as in rank-bm25.
        """
        parts = [(self.postings(t), self.idf_of(t)) for t in terms if t in self.vocab]
        return okapi_scores(parts, self.doc_len, self.avgdl, self.k1, self.b)

    def scores_of(self, terms: list[str], doc_ids: np.ndarray) -> np.ndarray:
        """Scores of the given documents only (rank-bm25's ``get_batch_scores``)."""
        return scores_at(self.scores(terms), doc_ids)

    def contains(self, doc_ids: np.ndarray, terms: list[str]) -> np.ndarray:
        """Boolean matrix ``[len(doc_ids), len(terms)]``: whether each document has each term."""
        out = np.zeros((len(doc_ids), len(terms)), dtype=bool)
        for j, t in enumerate(terms):
            docs, _ = self.postings(t)
            if len(docs):  # postings are sorted: a binary search per candidate, whatever their length
                pos = np.minimum(np.searchsorted(docs, doc_ids), len(docs) - 1)
                out[:, j] = docs[pos] == doc_ids
        return out

    # -- persistence ---------------------------------------------------------------------------------

    def save(self, folder: Path, name: str) -> None:
        np.savez(folder / f"{name}.npz", idf=self.idf, doc_len=self.doc_len, indptr=self.indptr, docs=self.docs,
                 tfs=self.tfs)
        terms = sorted(self.vocab, key=self.vocab.get)
        (folder / f"{name}.json").write_text(json.dumps({"terms": terms, "avgdl": self.avgdl, "k1": self.k1,
                                                         "b": self.b}, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path, name: str) -> "LexicalIndex":
        meta = json.loads((folder / f"{name}.json").read_text(encoding="utf-8"))
        with np.load(folder / f"{name}.npz") as arrays:
            a = {k: arrays[k] for k in arrays.files}
        vocab = {t: i for i, t in enumerate(meta["terms"])}
        return cls(vocab, a["idf"], a["doc_len"], a["indptr"], a["docs"], a["tfs"], meta["avgdl"], meta["k1"], meta["b"])

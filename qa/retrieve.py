"""Passage retrieval: BM25, dense (FAISS) and their fusion.

Each retriever returns a :class:`Ranking` of passage ids, best first. Fusion is reciprocal rank fusion
by default: it needs no score calibration between two very differently scaled retrievers, and measured
against min-max score fusion it ties (docs/DECISIONS.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qa.index import CorpusIndex
from qa.lexical import CorpusStatistics, okapi_scores


@dataclass(frozen=True)
class Ranking:
    ids: np.ndarray  # int64 passage ids, best first
    scores: np.ndarray  # float32, same order

    @classmethod
    def empty(cls) -> "Ranking":
        return cls(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))

    def __len__(self) -> int:
        return len(self.ids)


def tie_keys(ids: np.ndarray, order: np.ndarray | None) -> np.ndarray:
    """What breaks ties between equal scores of ``ids``: their place in ``order`` (an index's canonical
    order, :attr:`qa.index.CorpusIndex.passage_order`), or the ids themselves when there is none."""
    return ids if order is None else order[ids]


def top_k(scores: np.ndarray, k: int, *, positive_only: bool = False, ties: np.ndarray | None = None) -> Ranking:
    """The ``k`` best entries of a dense score vector, best first; ties broken by lower ``ties`` (one key
    per entry), by lower id without it."""
    ids = np.flatnonzero(scores > 0) if positive_only else np.arange(len(scores))
    if len(ids) == 0:
        return Ranking.empty()
    if len(ids) > k:  # the k best, and every entry tied with the k-th: which of those stay is decided by id
        kth = scores[ids][np.argpartition(-scores[ids], k - 1)[k - 1]]
        ids = ids[scores[ids] >= kth]
    best = np.lexsort((tie_keys(ids, ties), -scores[ids]))[:k]
    ids = ids[best]
    return Ranking(ids.astype(np.int64), scores[ids].astype(np.float32))


def bm25(index: CorpusIndex, terms: list[str], k: int, statistics: CorpusStatistics | None = None) -> Ranking:
    """The ``k`` best passages by BM25, with the index's own statistics or with ``statistics`` (the idf of
    the query's terms and the average length over a larger corpus: a shard scored as part of the whole)."""
    if not terms:
        return Ranking.empty()
    lexicon = index.lexical_passages
    if statistics is None:
        ids, scores = lexicon.scores(terms)
    else:
        parts = [(lexicon.postings(t), statistics.idf[t]) for t in terms if t in statistics.idf]
        ids, scores = okapi_scores(parts, lexicon.doc_len, statistics.avgdl, lexicon.k1, lexicon.b)
    best = top_k(scores, k, positive_only=True, ties=tie_keys(ids, index.passage_order))
    return Ranking(ids[best.ids], best.scores)


def dense(index: CorpusIndex, query_vector: np.ndarray, k: int) -> Ranking:
    """The ``k`` passages nearest the query, ties broken by lower id as :func:`top_k` does: FAISS leaves the
    choice and order among equal scores (duplicated articles) to its heap, so the search widens until
    every passage tied with the k-th is in, which makes the ranking independent of how the corpus is split."""
    n = index.faiss_index.ntotal
    k = min(k, n)
    query = query_vector.reshape(1, -1).astype(np.float32)
    wanted = k
    while True:
        scores, ids = index.faiss_index.search(query, min(wanted + 1, n))
        keep = ids[0] >= 0
        scores, ids = scores[0][keep], ids[0][keep].astype(np.int64)
        if len(ids) <= k or wanted + 1 >= n or scores[-1] < scores[k - 1]:
            break
        wanted *= 2
    order = np.lexsort((tie_keys(ids, index.passage_order), -scores))[:k]
    return Ranking(ids[order], scores[order].astype(np.float32))


def rrf(rankings: list[Ranking], k: int = 60, ties: np.ndarray | None = None) -> Ranking:
    """Reciprocal rank fusion (Cormack et al., 2009): score = Σ 1 / (k + rank); ties as :func:`top_k`."""
    fused: dict[int, float] = {}
    for r in rankings:
        for rank, pid in enumerate(r.ids.tolist(), start=1):
            fused[pid] = fused.get(pid, 0.0) + 1.0 / (k + rank)
    return _from_dict(fused, ties)


def _from_dict(scores: dict[int, float], ties: np.ndarray | None) -> Ranking:
    if not scores:
        return Ranking.empty()
    ids = np.fromiter(scores.keys(), dtype=np.int64, count=len(scores))
    vals = np.fromiter(scores.values(), dtype=np.float64, count=len(scores))
    best = np.lexsort((tie_keys(ids, ties), -vals))
    return Ranking(ids[best], vals[best].astype(np.float32))


def retrieve(index: CorpusIndex, terms: list[str], query_vector: np.ndarray | None, *, mode: str,
             depth: int, rrf_k: int = 60) -> Ranking:
    """Passages for a query, by ``mode`` ∈ {bm25, dense, hybrid}."""
    if mode == "bm25":
        return bm25(index, terms, depth)
    if query_vector is None:
        raise ValueError(f"the {mode} retriever needs a query vector")
    if mode == "dense":
        return dense(index, query_vector, depth)
    if mode != "hybrid":
        raise ValueError(f"unknown retriever {mode!r}")
    return fuse([bm25(index, terms, depth), dense(index, query_vector, depth)], rrf_k, index.passage_order)


def fuse(parts: list[Ranking], rrf_k: int = 60, ties: np.ndarray | None = None) -> Ranking:
    """One ranking from the retrievers' by reciprocal rank fusion (a single one is returned as it is)."""
    if len(parts) == 1:
        return parts[0]
    return rrf(parts, rrf_k, ties)

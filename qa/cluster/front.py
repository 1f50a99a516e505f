"""The engine of a sharded index: it fans a question out to the shards, merges their passages into the
lists one index would have returned, gathers the rows of the candidate sentences (and their neighbours)
from the shards that own them, and runs qa/rank.py unchanged over a small index made of those rows.

The front holds the corpus's catalogue (documents, sentences, each document's mean vector, the lexicon's
terms and idf) but no sentence vectors or postings, so conversations (qa/conversation/) run on it
unchanged: a follow-up that keeps to its documents is scored on their rows gathered from the shards, and
the sentences its re-ranking reads come through :meth:`ShardedEngine.view_of`.

Where a shard does not answer, the question is answered from the others and the answer says ``degraded``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

import numpy as np

from qa import rank, retrieve
from qa.cluster.search import Candidates, Catalog, SentenceRows
from qa.cluster.shards import ShardSet
from qa.config import Settings
from qa.embed import start_query_encoder
from qa.engine import Engine, Query, Ranked
from qa.index import SentenceLookups, SentenceSet
from qa.lexical import LexicalIndex
from qa.text import Analyzer
from qa.types import Document, Passage, Sentence

class Shards(Protocol):
    """Calls a method on several shards at once; a shard that fails gives None (logged)."""

    def __len__(self) -> int: ...

    def fan_out(self, method: str, calls: dict[int, tuple]) -> dict[int, object | None]: ...


class LocalShards:
    """Shards in this process (tests, benchmarks): called one after the other; errors propagate."""

    def __init__(self, searchers: list):
        self.searchers = searchers

    def __len__(self) -> int:
        return len(self.searchers)

    def fan_out(self, method: str, calls: dict[int, tuple]) -> dict[int, object | None]:
        return {i: getattr(self.searchers[i], method)(*args) for i, args in calls.items()}


@dataclass
class CorpusLexicon(LexicalIndex):
    """A :class:`LexicalIndex` over a few sentences (the candidates) that reports the corpus's idf and
    size, as the ranker's coverage and unseen-term features read them."""

    corpus_vocab: dict[str, int] | None = None
    corpus_idf: np.ndarray | None = None
    corpus_docs: int = 0

    @property
    def n_docs(self) -> int:
        return self.corpus_docs

    def idf_of(self, term: str) -> float | None:
        row = self.corpus_vocab.get(term)
        return None if row is None else float(self.corpus_idf[row])

    @classmethod
    def of_corpus(cls, vocab: dict[str, int], idf: np.ndarray, n_docs: int, avgdl: float) -> CorpusLexicon:
        """The corpus's terms and idf without postings (the front's view of the whole corpus)."""
        empty = np.zeros(0, dtype=np.int32)
        return cls(vocab, idf, empty, np.zeros(len(vocab) + 1, dtype=np.int64), empty, empty, avgdl,
                   corpus_vocab=vocab, corpus_idf=idf, corpus_docs=n_docs)

    def of_rows(self, terms: list[str], lengths: np.ndarray, counts: np.ndarray) -> CorpusLexicon:
        """Postings of the query ``terms`` over some sentences: their lengths and (sentences, terms) counts."""
        known = [j for j, t in enumerate(terms) if t in self.corpus_vocab]
        vocab = {terms[j]: k for k, j in enumerate(known)}
        idf = np.array([self.corpus_idf[self.corpus_vocab[terms[j]]] for j in known], dtype=np.float32)
        by_term = counts[:, known].T
        term_of, sentence_of = np.nonzero(by_term)  # term by term, sentences ascending: postings order
        indptr = np.concatenate([[0], np.cumsum(np.bincount(term_of, minlength=len(known)))]).astype(np.int64)
        tfs = by_term[term_of, sentence_of].astype(np.int32)
        return CorpusLexicon(vocab, idf, lengths.astype(np.int32), indptr, sentence_of.astype(np.int32), tfs,
                             self.avgdl, self.k1, self.b, corpus_vocab=self.corpus_vocab, corpus_idf=self.corpus_idf,
                             corpus_docs=self.corpus_docs)


@dataclass
class TokenView:
    """The word pieces of some sentences in memory, read as :class:`qa.index.TokenRows` reads its file."""

    rows: np.ndarray  # int8
    scales: np.ndarray
    offsets: np.ndarray
    weights: np.ndarray  # per vocabulary piece: its corpus-wide weight

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def of(self, sentence_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        starts, ends = self.offsets[sentence_ids], self.offsets[sentence_ids + 1]
        lengths = ends - starts
        bounds = np.concatenate([[0], np.cumsum(lengths)])
        take = np.arange(bounds[-1]) - np.repeat(bounds[:-1] - starts, lengths)
        return self.rows[take], self.scales[take], bounds[:-1]


@dataclass(kw_only=True, eq=False)
class ShardedCatalogue(SentenceLookups):
    """The front's own view of the corpus (a :class:`qa.index.Catalogue`): every document and sentence,
    the corpus-wide lexicon and each document's mean vector, gathered from the shards at start; no vectors,
    passages or search structures, which stay with the shards."""

    path: Path  # the sharded set in service
    manifest: dict
    documents: dict[str, Document]
    sentences: list[Sentence]
    lexical_sentences: CorpusLexicon
    analyzer: Analyzer
    document_vectors: tuple[dict[str, int], np.ndarray]  # doc_id → row, and the documents' mean vectors
    skipped: list = field(default_factory=list)  # a sharded build keeps no report of skipped files
    lease: None = None  # the shards hold their builds


@dataclass
class _View:
    """Some sentences gathered from the shards as a small index: the corpus-wide id of each of its rows,
    the asked sentences' ids in it (those whose rows arrived), and whether a shard failed."""

    index: SentenceSet
    corpus_ids: np.ndarray
    ids: np.ndarray
    lost: bool


def merge_rankings(parts: list[retrieve.Ranking], depth: int) -> retrieve.Ranking:
    """The ``depth`` best of the shards' rankings, best first, equal scores by lower id: as one index over
    their passages ranks them (``retrieve.top_k`` and ``retrieve.dense`` break ties so)."""
    if not parts:
        return retrieve.Ranking.empty()
    ids = np.concatenate([p.ids for p in parts])
    scores = np.concatenate([p.scores for p in parts])
    keep = np.lexsort((ids, -scores))[:depth]
    return retrieve.Ranking(ids[keep], scores[keep])


class ShardedEngine(Engine):
    """An :class:`Engine` whose index is spread over shards (see the module's docstring)."""

    def __init__(self, settings: Settings, shard_set: ShardSet, shards: Shards):
        self.shard_set = shard_set
        self.shards = shards
        vocab, idf = shard_set.sentence_lexicon()
        manifest = shard_set.manifest
        self.lexicon = CorpusLexicon.of_corpus(vocab, idf, manifest["sentences"], manifest["sentence_avgdl"])
        self.offsets = np.array([s["sentence_offset"] for s in manifest["shards"]], dtype=np.int64)
        weights = shard_set.path / "token_weights.npy"
        self.token_weights = np.load(weights) if weights.exists() else None
        documents, sentences, document_vectors = self._catalog()
        manifest = {**manifest, "documents": len(documents)}  # as one index's manifest counts them (/health)
        front = ShardedCatalogue(path=shard_set.path, manifest=manifest, documents=documents, sentences=sentences,
                                 lexical_sentences=self.lexicon, analyzer=shard_set.analyzer(),
                                 document_vectors=document_vectors)
        super().__init__(settings, front, None, start_query_encoder(settings))

    def _catalog(self) -> tuple[dict[str, Document], list[Sentence], tuple[dict[str, int], np.ndarray]]:
        replies = self.shards.fan_out("catalog", {i: () for i in range(len(self.shards))})
        missing = [i for i, r in replies.items() if r is None]
        if missing:
            raise RuntimeError(f"shards {missing} did not answer: the sharded index cannot be opened")
        parts: list[Catalog] = [replies[i] for i in range(len(self.shards))]
        documents = {d.doc_id: d for c in parts for d in c.documents}
        named = [d for c in parts for d in c.vector_documents]
        vectors = np.concatenate([c.document_vectors for c in parts]) if parts \
            else np.zeros((0, self.shard_set.manifest["dim"]), dtype=np.float32)
        return documents, [s for c in parts for s in c.sentences], ({d: r for r, d in enumerate(named)}, vectors)

    def _near_sentences(self, previous: Engine | None = None) -> None:
        """No table of close sentences: it is made per build from the sentence vectors, which the shards hold
        (disagreements are looked for among the question's candidates only)."""
        return None

    def ranked(self, query: Query, mode: str, within: np.ndarray | None = None) -> Ranked:
        if within is None:
            ids, degraded = self._candidates(query, mode)
        else:
            ids, degraded = np.asarray(within, dtype=np.int64), False
        view = self._view(ids, list(dict.fromkeys(query.terms)))
        scored = self.score_candidates(view.index, view.ids, query, mode)
        return Ranked(view.index, replace(scored, degraded=degraded or view.lost), corpus_ids=view.corpus_ids)

    def view_of(self, ids: np.ndarray, terms: list[str]) -> tuple[SentenceSet, np.ndarray] | None:
        ids = np.asarray(ids, dtype=np.int64)
        view = self._view(ids, list(dict.fromkeys(terms)))
        return None if view.lost else (view.index, view.ids)

    def _candidates(self, query: Query, mode: str) -> tuple[np.ndarray, bool]:
        """The candidate sentences (corpus-wide ids), as one index lists them, and whether a shard failed."""
        depth = self.profile.ranking.candidate_passages
        asked = self.shards.fan_out("candidates", {i: (query.terms, query.vector, mode, depth)
                                                    for i in range(len(self.shards))})
        found: list[Candidates] = [c for c in asked.values() if c is not None]
        retrievers = len(found[0].rankings) if found else 0
        parts = [merge_rankings([c.rankings[j] for c in found], depth) for j in range(retrievers)]
        passages = retrieve.fuse(parts, self.profile.ranking.rrf_k) if parts \
            else retrieve.Ranking.empty()
        listed = {pid: Passage(pid, "", sids) for c in found for pid, sids in c.passage_sentences.items()}
        return rank.candidate_sentences(listed, passages, depth=depth), len(found) < len(self.shards)

    def _view(self, ids: np.ndarray, terms: list[str]) -> _View:
        """An index of sentences ``ids`` and their neighbours (in corpus order, so that ids compare as the
        corpus's do), gathered from the shards that own them (see :class:`_View`)."""
        total = self.lexicon.corpus_docs
        wanted = np.unique(np.clip(np.concatenate([ids, ids - 1, ids + 1]), 0, max(total - 1, 0))) \
            if len(ids) else ids
        owner = np.searchsorted(self.offsets, wanted, side="right") - 1
        calls = {int(i): (wanted[owner == i], terms) for i in np.unique(owner).tolist()}
        replies = self.shards.fan_out("rows", calls)
        got: list[SentenceRows] = [replies[i] for i in sorted(replies) if replies[i] is not None]
        corpus_ids = _ids_of(got)
        lost = len(got) < len(calls)
        if lost:  # only the sentences whose rows arrived
            ids = ids[np.isin(ids, corpus_ids)]
        return _View(self._index_of(got, terms), corpus_ids, np.searchsorted(corpus_ids, ids), lost)

    def _index_of(self, rows: list[SentenceRows], terms: list[str]) -> SentenceSet:
        dim = self.shard_set.manifest["dim"]
        sentences = [s for r in rows for s in r.sentences]
        tokens = None
        if self.token_weights is not None and rows and rows[0].piece_rows is not None:
            counts = np.concatenate([r.piece_counts for r in rows])
            tokens = TokenView(np.concatenate([r.piece_rows for r in rows]),
                               np.concatenate([r.piece_scales for r in rows]),
                               np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), self.token_weights)
        lexicon = self.lexicon.of_rows(terms, _stack([r.term_lengths for r in rows], np.int32),
                                       np.concatenate([r.term_counts for r in rows]) if rows
                                       else np.zeros((0, len(terms)), dtype=np.int32))
        titles = {doc_id: title for r in rows for doc_id, title in r.titles.items()}
        return SentenceSet(documents={d: Document(d, t, "") for d, t in titles.items()}, sentences=sentences,
                           sentence_vectors=np.concatenate([r.vectors for r in rows]) if rows
                           else np.zeros((0, dim), dtype=np.float32),
                           lexical_sentences=lexicon, analyzer=self.index.analyzer, tokens=tokens)


def _ids_of(rows: list[SentenceRows]) -> np.ndarray:
    return np.concatenate([r.ids for r in rows]) if rows else np.zeros(0, dtype=np.int64)


def _stack(parts: list[np.ndarray], dtype) -> np.ndarray:
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)


def open_local(settings: Settings, root, searcher_of: Callable | None = None) -> ShardedEngine:
    """A sharded engine over the shards under ``root``, all loaded in this process."""
    from qa.cluster.search import ShardSearcher
    from qa.cluster.shards import load_set

    shard_set = load_set(root)
    make = searcher_of or (lambda folder: ShardSearcher(folder, nprobe=settings.ann_nprobe))
    return ShardedEngine(settings, shard_set, LocalShards([make(f) for f in shard_set.shards]))

"""The engine of a sharded index: it fans a question out to the shards, merges their passages into the
lists one index would have returned, gathers the rows of the candidate sentences (and their neighbours)
from the shards that own them, and runs qa/rank.py unchanged over a small index made of those rows.

It reads one snapshot of each shard (:class:`FrontState`): the corpus-wide statistics are computed here from
every shard's counts over its live documents, and the idf of a question's terms goes with its search, so a
shard's scores are the corpus's however its documents changed; a changed shard's new snapshot makes a new
engine (:meth:`ShardedEngine.updated`, qa/cluster/updates.py).

The front holds the corpus's catalogue (documents, sentences, each document's mean vector, the lexicon's
terms and idf) but no sentence vectors or postings, so conversations (qa/conversation/) run on it
unchanged: a follow-up that keeps to its documents is scored on their rows gathered from the shards, and
the sentences its re-ranking reads come through :meth:`ShardedEngine.view_of`.

Where a shard does not answer, the question is answered from the others and the answer says ``degraded``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Protocol

import numpy as np

from qa import formats, rank, retrieve
from qa.cluster.search import Counts, SentenceRows, Snapshot
from qa.cluster.shards import ShardSet
from qa.config import Settings
from qa.embed import start_query_encoder
from qa.engine import Engine, Query, Ranked
from qa.index import SentenceLookups, SentenceSet, gather_ranges
from qa.index.rows import piece_weights
from qa.lexical import CorpusStatistics, LexicalIndex, okapi_idf
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
    """The front's own view of the corpus (a :class:`qa.index.Catalogue`): every live document, every sentence
    id of every shard (``live`` says which are not of a deleted document), the corpus-wide lexicon and each
    document's mean vector, gathered from the shards' snapshots; no vectors, passages or search structures,
    which stay with the shards."""

    path: Path  # the sharded set in service
    manifest: dict
    documents: dict[str, Document]
    sentences: list[Sentence]
    live: np.ndarray
    lexical_sentences: CorpusLexicon
    analyzer: Analyzer
    document_vectors: tuple[dict[str, int], np.ndarray]  # doc_id → row, and the documents' mean vectors
    skipped: list = field(default_factory=list)  # a sharded build keeps no report of skipped files
    lease: None = None  # the shards hold their builds

    @cached_property
    def document_sentences(self) -> dict[str, np.ndarray]:
        by_doc: dict[str, list[int]] = {}
        for i in np.flatnonzero(self.live).tolist():
            by_doc.setdefault(self.sentences[i].doc_id, []).append(i)
        return {d: np.array(ids, dtype=np.int64) for d, ids in sorted(by_doc.items())}

    @cached_property
    def sentence_ids(self) -> dict[tuple[str, int], int]:
        return {(self.sentences[i].doc_id, self.sentences[i].index): i for i in np.flatnonzero(self.live).tolist()}


@dataclass(frozen=True)
class FrontState:
    """What the front holds of one snapshot per shard: the snapshots, where each shard's sentence and passage
    ids start in the corpus's, the corpus-wide statistics (passage BM25, the sentence lexicon, word-piece
    weights) and the catalogue."""

    snapshots: tuple[Snapshot, ...]
    sentence_offsets: np.ndarray
    passage_offsets: np.ndarray
    passages: CorpusStatistics
    token_weights: np.ndarray | None
    catalogue: ShardedCatalogue
    file_shards: dict[str, int]  # the shard that holds each file's documents

    @property
    def generations(self) -> tuple[str, ...]:
        return tuple(s.generation for s in self.snapshots)


def summed_counts(counts: list[Counts]) -> tuple[list[str], np.ndarray, int, int]:
    """The corpus's terms (in term order), how many live documents hold each, its live documents and their
    summed length, from every shard's :class:`Counts`."""
    df: dict[str, int] = {}
    for part in counts:
        for term, n in zip(part.terms, part.df.tolist()):
            if n:
                df[term] = df.get(term, 0) + n
    terms = sorted(df)
    return terms, np.array([df[t] for t in terms], dtype=np.int64), sum(c.documents for c in counts), \
        sum(c.length for c in counts)


def front_state(shard_set: ShardSet, snapshots: list[Snapshot]) -> FrontState:
    """The corpus-wide view of ``snapshots`` (one per shard, in shard order): statistics summed over the live
    documents of all, as one index built from scratch over them has them (qa/index/stacked.py)."""
    stats = [s.statistics for s in snapshots]
    terms, df, n_passages, passage_length = summed_counts([s.passages for s in stats])
    passages = CorpusStatistics(dict(zip(terms, okapi_idf(df, n_passages).tolist())),
                                passage_length / max(n_passages, 1))
    terms, df, n_sentences, sentence_length = summed_counts([s.sentences for s in stats])
    lexicon = CorpusLexicon.of_corpus({t: i for i, t in enumerate(terms)}, okapi_idf(df, n_sentences), n_sentences,
                                      sentence_length / max(n_sentences, 1))
    weights = None
    if stats and all(s.piece_df is not None for s in stats):
        weights = piece_weights(np.sum([s.piece_df for s in stats], axis=0), n_sentences, stats[0].content)
    catalogs = [s.catalog for s in snapshots]
    named = [d for c in catalogs for d in c.vector_documents]
    vectors = np.concatenate([c.document_vectors for c in catalogs])
    order = sorted(range(len(named)), key=named.__getitem__)
    lemmas = dict(sorted({w: lemma for s in stats for w, lemma in s.lemmas.items()}.items()))
    documents = dict(sorted((d.doc_id, d) for c in catalogs for d in c.documents))
    manifest = {**shard_set.manifest, "documents": len(documents), "sentences": n_sentences,  # as one index's
                "sentence_avgdl": lexicon.avgdl,  # manifest counts them (/health); a fingerprint any change moves
                "corpus_fingerprint": hashlib.sha256(" ".join(s.fingerprint for s in snapshots).encode()).hexdigest()}
    catalogue = ShardedCatalogue(
        path=shard_set.path, manifest=manifest, documents=documents,
        sentences=[s for c in catalogs for s in c.sentences], live=np.concatenate([c.live for c in catalogs]),
        lexical_sentences=lexicon, analyzer=Analyzer.from_dict(shard_set.manifest["analyzer"], lemmas),
        document_vectors=({named[i]: r for r, i in enumerate(order)}, vectors[np.array(order, dtype=np.int64)]))
    return FrontState(tuple(snapshots), _offsets([len(c.sentences) for c in catalogs]),
                      _offsets([c.passages for c in catalogs]), passages, weights, catalogue,
                      {formats.file_of(d.doc_id): i for i, c in enumerate(catalogs) for d in c.documents})


def _offsets(sizes: list[int]) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)


@dataclass
class _View:
    """Some sentences gathered from the shards as a small index: the corpus-wide id of each of its rows,
    the asked sentences' ids in it (those whose rows arrived), and whether a shard failed."""

    index: SentenceSet
    corpus_ids: np.ndarray
    ids: np.ndarray
    lost: bool


def merge_rankings(parts: list[retrieve.Ranking], depth: int) -> retrieve.Ranking:
    """The ``depth`` best of the shards' rankings, best first, equal scores by lower id (ids numbered in the
    corpus's canonical order: as one index over their passages ranks them)."""
    if not parts:
        return retrieve.Ranking.empty()
    ids = np.concatenate([p.ids for p in parts])
    scores = np.concatenate([p.scores for p in parts])
    keep = np.lexsort((ids, -scores))[:depth]
    return retrieve.Ranking(ids[keep], scores[keep])


class ShardedEngine(Engine):
    """An :class:`Engine` whose index is spread over shards (see the module's docstring), at one snapshot of
    each shard (:class:`FrontState`); :meth:`updated` gives the engine over newer snapshots."""

    def __init__(self, settings: Settings, shard_set: ShardSet, shards: Shards, state: FrontState | None = None,
                 models_of: Engine | None = None, profile=None):
        self.shard_set = shard_set
        self.shards = shards
        self.state = state or front_state(shard_set, self._snapshots(range(len(shards))))
        self.lexicon = self.state.catalogue.lexical_sentences
        self.offsets = self.state.sentence_offsets[:-1]
        self.token_weights = self.state.token_weights
        super().__init__(settings, self.state.catalogue, None,
                         start_query_encoder(settings) if models_of is None else None, profile=profile)
        if models_of is not None:  # its models and conversations, as Engine.with_index shares them
            with models_of._encoder_lock:
                self._encoder = models_of._encoder
                self._query_encoder = models_of._query_encoder
                self._pending_query_encoder = models_of._pending_query_encoder
            with models_of._conversations_lock:
                if models_of._conversations is not None:
                    self.conversations = models_of._conversations.for_engine(self)

    def _snapshots(self, numbers) -> list[Snapshot]:
        replies = self.shards.fan_out("snapshot", {i: () for i in numbers})
        missing = [i for i, r in replies.items() if r is None]
        if missing:
            raise RuntimeError(f"shards {missing} did not answer: the sharded index cannot be opened")
        return [replies[i] for i in sorted(replies)]

    def updated(self, numbers=(), settings: Settings | None = None, profile=None) -> "ShardedEngine":
        """This engine's models and conversations over the newest snapshots of shards ``numbers`` (the others'
        kept): how the front serves a change a shard has made; with ``settings`` or ``profile`` as
        :meth:`Engine.with_index` takes them."""
        numbers = sorted(set(numbers))
        snapshots = list(self.state.snapshots)
        for i, snapshot in zip(numbers, self._snapshots(numbers) if numbers else []):
            snapshots[i] = snapshot
        state = front_state(self.shard_set, snapshots) if numbers else self.state
        if profile is None and (settings is None or settings.profile == self.settings.profile):
            profile = self.profile
        return ShardedEngine(settings or self.settings, self.shard_set, self.shards, state, models_of=self,
                             profile=profile)

    def with_index(self, corpus_index, settings: Settings | None = None, profile=None) -> Engine:
        if corpus_index is not self.index:
            raise ValueError("a sharded engine's index is its shards' snapshots: see `updated`")
        return self.updated((), settings, profile)

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
        known = self.state.passages
        statistics = CorpusStatistics({t: known.idf[t] for t in query.terms if t in known.idf}, known.avgdl)
        generations = self.state.generations
        asked = self.shards.fan_out("candidates", {i: (generations[i], query.terms, query.vector, mode, depth,
                                                       statistics) for i in range(len(self.shards))})
        found = {i: c for i, c in asked.items() if c is not None}
        listed: dict[int, Passage] = {}
        for i, c in found.items():
            base, sentence_base = int(self.state.passage_offsets[i]), int(self.state.sentence_offsets[i])
            listed.update({pid + base: Passage(pid + base, "", tuple(s + sentence_base for s in sids))
                           for pid, sids in c.passage_sentences.items()})
        canonical = self._canonical_passages(listed)
        rank_of = {pid: r for r, pid in enumerate(canonical.tolist())}
        retrievers = len(next(iter(found.values())).rankings) if found else 0
        parts = [merge_rankings([self._ranked_as(c.rankings[j], int(self.state.passage_offsets[i]), rank_of)
                                 for i, c in found.items()], depth) for j in range(retrievers)]
        fused = retrieve.fuse(parts, self.profile.ranking.rrf_k) if parts else retrieve.Ranking.empty()
        passages = retrieve.Ranking(canonical[fused.ids], fused.scores)
        return rank.candidate_sentences(listed, passages, depth=depth), len(found) < len(self.shards)

    def _canonical_passages(self, listed: dict[int, Passage]) -> np.ndarray:
        """The passage ids of ``listed`` in the corpus's canonical order (document id, then place)."""
        sentences = self.index.sentences

        def key(pid: int) -> tuple[str, int]:
            first = sentences[listed[pid].sentence_ids[0]]
            return first.doc_id, first.index

        return np.array(sorted(listed, key=key), dtype=np.int64)

    @staticmethod
    def _ranked_as(ranking: retrieve.Ranking, base: int, rank_of: dict[int, int]) -> retrieve.Ranking:
        ids = np.fromiter((rank_of[int(p) + base] for p in ranking.ids), dtype=np.int64, count=len(ranking.ids))
        return retrieve.Ranking(ids, ranking.scores)

    def _view(self, ids: np.ndarray, terms: list[str]) -> _View:
        """An index of sentences ``ids`` and their neighbours (live ones, in the corpus's canonical order, so
        that ids compare as one index's do), gathered from the shards that own them (see :class:`_View`)."""
        catalogue = self.state.catalogue
        total = len(catalogue.sentences)
        wanted = np.unique(np.clip(np.concatenate([ids, ids - 1, ids + 1]), 0, max(total - 1, 0))) \
            if len(ids) else ids
        wanted = wanted[catalogue.live[wanted]]
        owner = np.searchsorted(self.offsets, wanted, side="right") - 1
        generations = self.state.generations
        calls = {int(i): (generations[i], wanted[owner == i] - self.offsets[i], terms)
                 for i in np.unique(owner).tolist()}
        replies = self.shards.fan_out("rows", calls)
        got = [(i, replies[i]) for i in sorted(replies) if replies[i] is not None]
        lost = len(got) < len(calls)
        corpus_ids = np.concatenate([r.ids + self.offsets[i] for i, r in got]) if got else np.zeros(0, np.int64)
        rows: list[SentenceRows] = [r for _, r in got]
        sentences = [s for r in rows for s in r.sentences]
        order = np.array(sorted(range(len(sentences)), key=lambda k: (sentences[k].doc_id, sentences[k].index)),
                         dtype=np.int64)
        corpus_ids = corpus_ids[order]
        if lost:  # only the sentences whose rows arrived
            ids = ids[np.isin(ids, corpus_ids)]
        position = {int(c): k for k, c in enumerate(corpus_ids.tolist())}
        asked = np.fromiter((position[int(i)] for i in ids), dtype=np.int64, count=len(ids))
        return _View(self._index_of(rows, terms, order), corpus_ids, asked, lost)

    def _index_of(self, rows: list[SentenceRows], terms: list[str], order: np.ndarray) -> SentenceSet:
        """A small index of the sentences of ``rows`` (listed shard after shard), its rows in ``order``."""
        dim = self.shard_set.manifest["dim"]
        sentences = [s for r in rows for s in r.sentences]
        tokens = None
        if self.token_weights is not None and rows and rows[0].piece_rows is not None:
            counts = np.concatenate([r.piece_counts for r in rows])
            starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
            take = gather_ranges(starts[order], counts[order])
            tokens = TokenView(np.concatenate([r.piece_rows for r in rows])[take],
                               np.concatenate([r.piece_scales for r in rows])[take],
                               np.concatenate([[0], np.cumsum(counts[order])]).astype(np.int64), self.token_weights)
        lengths = _stack([r.term_lengths for r in rows], np.int32)[order]
        term_counts = np.concatenate([r.term_counts for r in rows])[order] if rows \
            else np.zeros((0, len(terms)), dtype=np.int32)
        lexicon = self.lexicon.of_rows(terms, lengths, term_counts)
        titles = {doc_id: title for r in rows for doc_id, title in r.titles.items()}
        vectors = np.concatenate([r.vectors for r in rows])[order] if rows else np.zeros((0, dim), dtype=np.float32)
        return SentenceSet(documents={d: Document(d, t, "") for d, t in titles.items()},
                           sentences=[sentences[k] for k in order.tolist()], sentence_vectors=vectors,
                           lexical_sentences=lexicon, analyzer=self.index.analyzer, tokens=tokens)


def _stack(parts: list[np.ndarray], dtype) -> np.ndarray:
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)


def open_local(settings: Settings, root, searcher_of: Callable | None = None) -> ShardedEngine:
    """A sharded engine over the shards under ``root``, all loaded in this process."""
    from qa.cluster.search import ShardSearcher
    from qa.cluster.shards import load_set

    shard_set = load_set(root)
    make = searcher_of or (lambda folder: ShardSearcher(folder, nprobe=settings.ann_nprobe))
    return ShardedEngine(settings, shard_set, LocalShards([make(f) for f in shard_set.shards]))

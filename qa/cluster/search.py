"""What one shard answers: its best passages for a question, the rows of its sentences the ranker reads, and
what the front holds of it (a :class:`Snapshot`); and how it changes (a document update written as a segment
of its own index, merges). Ids in and out are the shard's own: the front owns the offsets that make them
corpus-wide, since a shard that grows moves the ids of those after it.

A shard serves several generations of its index at once (the one published and a few before it), each named
by its folder: the front asks every question of the generations it took its snapshots from, so a question
never mixes a shard's old and new sentences while the front moves to the new snapshot.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qa import index as index_mod
from qa import retrieve
from qa.lexical import CorpusStatistics
from qa.types import Document, Sentence

GENERATIONS_KEPT = 4  # a shard's generations loaded at once: the newest and those questions may still be on


@dataclass
class Candidates:
    """A shard's best passages by each retriever asked for (raw scores: BM25 with the corpus-wide
    statistics, inner products) and the sentences of each passage listed."""

    rankings: list[retrieve.Ranking]
    passage_sentences: dict[int, tuple[int, ...]]


@dataclass
class SentenceRows:
    """Everything the ranker reads about some sentences: their place in their document, texts, vectors,
    word pieces (int8 rows, scales, count per sentence), length in terms and the query terms' counts."""

    ids: np.ndarray
    sentences: list[Sentence]
    titles: dict[str, str]
    vectors: np.ndarray
    piece_rows: np.ndarray | None
    piece_scales: np.ndarray | None
    piece_counts: np.ndarray | None
    term_lengths: np.ndarray
    term_counts: np.ndarray  # (sentences, query terms) int32


@dataclass
class Catalog:
    """What the front holds of a shard's corpus: its live documents, every sentence id (a deleted document's
    keep theirs until a merge: ``live`` says which count), how many passage ids, and the unit mean sentence
    vector of each live document (``CorpusIndex.document_vectors``: which articles tell the same story)."""

    documents: list[Document]
    sentences: list[Sentence]
    live: np.ndarray  # bool per sentence
    passages: int
    vector_documents: list[str]
    document_vectors: np.ndarray


@dataclass
class Counts:
    """A lexicon's part of corpus-wide BM25 statistics: its live documents, their summed length, and how many
    of them hold each term."""

    documents: int
    length: int
    terms: list[str]
    df: np.ndarray

    @classmethod
    def of(cls, lexicon) -> "Counts":
        alive = getattr(lexicon, "alive", None)
        lengths = lexicon.doc_len if alive is None else lexicon.doc_len[alive]
        return cls(int(lexicon.n_docs), int(lengths.sum()), lexicon.terms, np.asarray(lexicon.frequencies()))


@dataclass
class ShardStatistics:
    """What a shard adds to the corpus-wide statistics: BM25 counts of its passages and sentences, how many of
    its live sentences hold each word piece (None without word pieces), and its analyzer's lemma table."""

    passages: Counts
    sentences: Counts
    piece_df: np.ndarray | None
    content: np.ndarray | None  # which word pieces are content (the weights of the others are 0)
    lemmas: dict[str, str]


@dataclass
class Snapshot:
    """A shard at one generation: its name, what the front lists of it, and its statistics."""

    generation: str
    catalog: Catalog
    statistics: ShardStatistics
    fingerprint: str  # of the shard's documents (qa.index.spec.corpus_fingerprint)


class ShardSearcher:
    """One shard's index folder: the generations it serves, and its updates when ``settings`` are given (the
    corpus folder, the build spec and the model a new segment is written with)."""

    def __init__(self, folder: Path, *, nprobe: int = 64, settings=None):
        self.folder = Path(folder)
        self.nprobe = nprobe
        self.settings = settings
        self._loaded: OrderedDict[str, index_mod.CorpusIndex] = OrderedDict()
        self._lock = threading.Lock()  # the table of generations
        self._changing = threading.Lock()  # this shard's updates, and the swap to a generation it published
        self._encoder = None
        self._serve(index_mod.load(self.folder, nprobe=nprobe))

    def generation(self) -> str:
        """The newest generation's name (its folder's)."""
        with self._lock:
            return next(reversed(self._loaded))

    def index_of(self, generation: str | None = None) -> index_mod.CorpusIndex:
        """The index of ``generation`` (the newest when None); KeyError when it is no longer served."""
        with self._lock:
            return self._loaded[generation if generation is not None else next(reversed(self._loaded))]

    def _serve(self, index: index_mod.CorpusIndex) -> str:
        """Serve ``index`` as the newest generation; the oldest beyond :data:`GENERATIONS_KEPT` let go."""
        name = index.path.name
        with self._lock:
            self._loaded[name] = index
            self._loaded.move_to_end(name)
            dropped = [self._loaded.popitem(last=False)[1] for _ in range(len(self._loaded) - GENERATIONS_KEPT)]
        for old in dropped:
            if old.lease is not None:
                old.lease.release()
        return name

    # -- questions ----------------------------------------------------------------------------------

    def candidates(self, generation: str | None, terms: list[str], vector: np.ndarray | None, mode: str, depth: int,
                   statistics: CorpusStatistics | None = None) -> Candidates:
        """The shard's ``depth`` best passages by BM25 (scored with ``statistics``, the corpus-wide idf of
        ``terms`` and average passage length, when given) and/or by inner product, as ``mode`` needs."""
        index = self.index_of(generation)
        parts = []
        if mode in ("bm25", "hybrid"):
            parts.append(retrieve.bm25(index, terms, depth, statistics))
        if mode in ("dense", "hybrid"):
            parts.append(retrieve.dense(index, vector, depth))
        listed = np.unique(np.concatenate([p.ids for p in parts])) if parts else np.zeros(0, dtype=np.int64)
        sentences = {pid: tuple(index.passages[pid].sentence_ids) for pid in listed.tolist()}
        return Candidates(parts, sentences)

    def rows(self, generation: str | None, ids: np.ndarray, terms: list[str]) -> SentenceRows:
        """The rows of the shard's sentences ``ids`` for the query ``terms``."""
        index = self.index_of(generation)
        local = np.asarray(ids, dtype=np.int64)
        sentences = [index.sentences[i] for i in local.tolist()]
        rows = scales = counts = None
        if index.tokens is not None:
            rows, scales, starts = index.tokens.of(local)
            counts = np.diff(np.append(starts, len(rows)))
        lex = index.lexical_sentences
        term_counts = np.zeros((len(local), len(terms)), dtype=np.int32)
        for j, term in enumerate(terms):
            docs, tfs = lex.postings(term)
            if len(docs):
                pos = np.minimum(np.searchsorted(docs, local), len(docs) - 1)
                hit = docs[pos] == local
                term_counts[hit, j] = tfs[pos[hit]]
        titles = {s.doc_id: index.documents[s.doc_id].title for s in sentences if s.doc_id in index.documents}
        return SentenceRows(local, sentences, titles, np.asarray(index.sentence_vectors[local]),
                            rows, scales, counts, lex.doc_len[local], term_counts)

    def snapshot(self) -> Snapshot:
        """The newest generation: its documents and sentences (in the shard's id order) and statistics."""
        index = self.index_of()
        rows, vectors = index.document_vectors
        live = getattr(index, "live_sentences", None)
        catalog = Catalog(list(index.documents.values()), list(index.sentences),
                          np.ones(len(index.sentences), dtype=bool) if live is None else np.asarray(live),
                          len(index.passages), list(rows), vectors)
        tokens = index.tokens
        content = getattr(tokens, "content", None)
        piece_df = tokens.frequencies(len(content)) if tokens is not None and content is not None else None
        statistics = ShardStatistics(Counts.of(index.lexical_passages), Counts.of(index.lexical_sentences),
                                     piece_df, content, dict(index.analyzer.lemmas))
        return Snapshot(index.path.name, catalog, statistics, str(index.manifest.get("corpus_fingerprint")))

    # -- changes ------------------------------------------------------------------------------------

    def apply(self, file_ids: list[str]) -> str:
        """Index the corpus folder's files ``file_ids`` (added, replaced or removed) as a segment of this
        shard (:func:`qa.index.apply_files`: only they are read) and serve it; the new generation's name."""
        from qa.engine import build_spec
        from qa.ingest import IngestLimits

        s = self._settings()
        with self._changing, index_mod.build_lock(self.folder):
            current = self._published()
            if not index_mod.apply_files(self.folder, current, s.corpus_dir, file_ids, build_spec(s), self._model(),
                                         IngestLimits.from_settings(s)):
                raise RuntimeError(f"the index at {self.folder} was built with other settings: run `qa index --ray`")
            return self._published().path.name

    def merge_due(self) -> int:
        """Merge the segments the merge policy finds due (qa/index/merge.py; updates meanwhile are not held
        up: the merge publishes under the build lock only) and serve the result; how many were published."""
        from qa.engine import build_spec

        s = self._settings()
        done = index_mod.merge_due(self.folder, self.index_of(), build_spec(s), nprobe=self.nprobe,
                                   ann_min_passages=s.ann_min_passages, max_sentences=s.build_segment_sentences)
        if done:
            with self._changing:
                self._published()
        return done

    def _published(self) -> index_mod.CorpusIndex:
        """The generation published in the folder, served as the newest (loaded, sharing the segments of the
        one served, when it is another). Call with ``_changing`` held."""
        current = self.index_of()
        if index_mod.published_build(self.folder) != current.path.name:
            self._serve(index_mod.load(self.folder, nprobe=self.nprobe, loaded=index_mod.segments_of(current)))
        return self.index_of()

    def _settings(self):
        if self.settings is None:
            raise RuntimeError("this shard was opened read-only (no settings): it takes no updates")
        return self.settings

    def _model(self):
        """The encoder a new segment is embedded with: the ONNX export the build made, else the model."""
        from qa.embed import load_encoder, onnx_encoder, onnx_ready

        if self._encoder is None:
            s = self._settings()
            self._encoder = onnx_encoder(s) if onnx_ready(s) else load_encoder(s)
        return self._encoder

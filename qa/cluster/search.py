"""What one shard answers: its best passages for a question, and the rows of its sentences the ranker
reads. Ids in and out are the corpus-wide ones (the shard's own plus its offsets)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qa import index as index_mod
from qa import retrieve
from qa.types import Document, Sentence


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
    """What the front holds of a shard: its documents and sentences, and the unit mean sentence vector of
    each document with sentences (``CorpusIndex.document_vectors``: which articles tell the same story)."""

    documents: list[Document]
    sentences: list[Sentence]
    vector_documents: list[str]
    document_vectors: np.ndarray


class ShardSearcher:
    """One shard's index, loaded read-only, answering in corpus-wide ids."""

    def __init__(self, folder: Path, *, nprobe: int = 64):
        self.index = index_mod.load(folder, nprobe=nprobe)
        shard = self.index.manifest["shard"]
        self.sentence_offset = int(shard["sentence_offset"])
        self.passage_offset = int(shard["passage_offset"])

    def candidates(self, terms: list[str], vector: np.ndarray | None, mode: str, depth: int) -> Candidates:
        """The shard's ``depth`` best passages by BM25 and/or by inner product, as ``mode`` needs."""
        parts = []
        if mode in ("bm25", "hybrid"):
            parts.append(retrieve.bm25(self.index, terms, depth))
        if mode in ("dense", "hybrid"):
            parts.append(retrieve.dense(self.index, vector, depth))
        listed = np.unique(np.concatenate([p.ids for p in parts])) if parts else np.zeros(0, dtype=np.int64)
        sentences = {int(pid) + self.passage_offset:
                     tuple(sid + self.sentence_offset for sid in self.index.passages[pid].sentence_ids)
                     for pid in listed.tolist()}
        return Candidates([retrieve.Ranking(p.ids + self.passage_offset, p.scores) for p in parts], sentences)

    def rows(self, ids: np.ndarray, terms: list[str]) -> SentenceRows:
        """The rows of sentences ``ids`` (corpus-wide, all in this shard) for the query ``terms``."""
        index = self.index
        local = np.asarray(ids, dtype=np.int64) - self.sentence_offset
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
        titles = {s.doc_id: index.documents[s.doc_id].title for s in sentences}
        return SentenceRows(np.asarray(ids, dtype=np.int64), sentences, titles, index.sentence_vectors[local],
                            rows, scales, counts, lex.doc_len[local], term_counts)

    def catalog(self) -> Catalog:
        """The shard's documents, sentences and document vectors, in corpus order."""
        rows, vectors = self.index.document_vectors
        return Catalog(list(self.index.documents.values()), self.index.sentences, list(rows), vectors)

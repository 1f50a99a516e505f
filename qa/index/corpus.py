"""The loaded index of a corpus: everything retrieval and ranking read, shared read-only between requests."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from qa import cues, leases
from qa.index.rows import TokenRows, VectorRows
from qa.ingest import Skipped
from qa.lexical import LexicalIndex
from qa.text import Analyzer
from qa.types import Document, Passage, Sentence


@dataclass
class CorpusIndex:
    """Everything retrieval needs, loaded once and shared read-only between requests."""

    path: Path
    manifest: dict
    documents: dict[str, Document]
    sentences: list[Sentence]
    passages: list[Passage]
    faiss_index: object
    sentence_vectors: VectorRows  # rows read on demand: rows[ids]
    lexical_passages: LexicalIndex
    lexical_sentences: LexicalIndex
    analyzer: Analyzer
    sentence_passages: list[list[int]] = field(default_factory=list)  # sentence id → passage ids
    tokens: TokenRows | None = None  # word-piece vectors per sentence, when the build kept them
    skipped: list[Skipped] = field(default_factory=list)  # the corpus folder's files this build did not read
    lease: leases.Lease | None = None  # held while this build is in use, so no publish removes its folder

    def __post_init__(self):
        if not self.sentence_passages:
            self.sentence_passages = [[] for _ in self.sentences]
            for p in self.passages:
                for sid in p.sentence_ids:
                    self.sentence_passages[sid].append(p.passage_id)

    @cached_property
    def sentence_idf(self) -> dict[str, float]:
        """Term → idf over sentences (terms the corpus never uses are absent)."""
        lex = self.lexical_sentences
        return {t: float(lex.idf[i]) for t, i in lex.vocab.items()}

    @cached_property
    def sentence_documents(self) -> np.ndarray:
        """Sentence id → its document's ordinal: whether two sentences share a document, for many at once."""
        ordinal: dict[str, int] = {}
        return np.array([ordinal.setdefault(s.doc_id, len(ordinal)) for s in self.sentences], dtype=np.int64)

    @cached_property
    def max_sentence_idf(self) -> float:
        """The highest idf over sentences (1.0 for an empty vocabulary): a term's salience is its share of it."""
        idf = self.sentence_idf
        return max(idf.values()) if idf else 1.0

    @cached_property
    def sentence_ids(self) -> dict[tuple[str, int], int]:
        """(doc_id, sentence index in the document) → global sentence id."""
        return {(s.doc_id, s.index): i for i, s in enumerate(self.sentences)}

    @cached_property
    def document_sentences(self) -> dict[str, np.ndarray]:
        """doc_id → its global sentence ids, in order."""
        by_doc: dict[str, list[int]] = {}
        for i, sentence in enumerate(self.sentences):
            by_doc.setdefault(sentence.doc_id, []).append(i)
        return {d: np.array(ids, dtype=np.int64) for d, ids in by_doc.items()}

    @cached_property
    def document_vectors(self) -> tuple[dict[str, int], np.ndarray]:
        """doc_id → row, and each document's unit mean sentence vector (what the document is about)."""
        by_doc = self.document_sentences
        rows = {d: r for r, d in enumerate(by_doc)}
        if not rows:
            return rows, np.zeros((0, self.sentence_vectors.shape[1]), dtype=np.float32)
        order = np.concatenate(list(by_doc.values()))
        starts = np.cumsum([0] + [len(ids) for ids in by_doc.values()])[:-1]
        sums = np.add.reduceat(np.asarray(self.sentence_vectors[order], dtype=np.float32), starts, axis=0)
        return rows, sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)

    @cached_property
    def proper_words(self) -> frozenset[str]:
        """Casefolded words the corpus writes capitalised mid-sentence (qa.cues.proper_words)."""
        return cues.proper_words(s.text for s in self.sentences)

    @property
    def fingerprint(self) -> str:
        return self.manifest["corpus_fingerprint"]

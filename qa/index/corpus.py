"""The loaded index of a corpus, and the two narrow views of it that the rest of qa reads:

* :class:`SentenceSet`: what ranking reads (qa/rank.py, qa/agreement.py, the answer checks): documents, their
  sentences with vectors and word pieces, the sentences' lexicon and the analyzer. A :class:`CorpusIndex` is
  one; so are the sentences a sharded front gathers from its shards for one question (qa/cluster/front.py).
* :class:`Catalogue`: what the engine, the document routes and conversations read of the corpus as a whole:
  its documents and sentences, their lookups, each document's mean vector, the build it was loaded from. A
  :class:`CorpusIndex` is one; so is a sharded front's catalogue, which holds no vectors or search structures.

Both are read-only once made and shared between requests; their lookups are computed once, on first use.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Protocol

import numpy as np

from qa.index.rows import VectorRows
from qa.index.stacked import StackedLexicon, StackedRows
from qa.ingest import Skipped
from qa.lexical import LexicalIndex
from qa.text import Analyzer
from qa.types import Document, Passage, Sentence


class WordPieces(Protocol):
    """Every sentence's word-piece vectors (:class:`qa.index.rows.TokenRows` on disk, or rows in memory) and
    each vocabulary piece's weight."""

    weights: np.ndarray

    def __len__(self) -> int: ...

    def of(self, sentence_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...


class SentenceLookups:
    """Lookups over ``sentences`` and ``lexical_sentences`` that a question needs many times, each computed
    once per instance; with the analyzer, all that reading a question against a corpus's terms needs."""

    sentences: list[Sentence]
    lexical_sentences: LexicalIndex
    analyzer: Analyzer

    @cached_property
    def sentence_idf(self) -> dict[str, float]:
        """Term → idf over sentences (terms the corpus never uses are absent)."""
        lex = self.lexical_sentences
        return {t: float(lex.idf[i]) for t, i in lex.vocab.items()}

    @cached_property
    def max_sentence_idf(self) -> float:
        """The highest idf over sentences (1.0 for an empty vocabulary): a term's salience is its share of it."""
        idf = self.sentence_idf
        return max(idf.values()) if idf else 1.0

    @cached_property
    def sentence_documents(self) -> np.ndarray:
        """Sentence id → its document's ordinal: whether two sentences share a document, for many at once."""
        ordinal: dict[str, int] = {}
        return np.array([ordinal.setdefault(s.doc_id, len(ordinal)) for s in self.sentences], dtype=np.int64)

    @cached_property
    def document_names(self) -> list[str]:
        """The documents' ids by the ordinals of :attr:`sentence_documents`."""
        return list(dict.fromkeys(s.doc_id for s in self.sentences))

    @cached_property
    def sentence_order(self) -> np.ndarray | None:
        """Each sentence's position in the corpus's canonical order (by document id, then place in the
        document), which breaks ties between equal scores; None when the ids are in that order (a build:
        its documents are sorted by id). An index of segments numbers its sentences otherwise."""
        return None

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


@dataclass(kw_only=True, eq=False)
class SentenceSet(SentenceLookups):
    """Sentences with everything ranking reads of them (see the module's docstring)."""

    documents: dict[str, Document]
    sentences: list[Sentence]
    sentence_vectors: VectorRows | StackedRows | np.ndarray  # rows by sentence id: rows[ids]
    lexical_sentences: LexicalIndex | StackedLexicon
    analyzer: Analyzer
    tokens: WordPieces | None = None  # word-piece vectors per sentence, when the build kept them

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


class Held(Protocol):
    """A hold on folders another process may remove (qa/leases.py), released when the index is let go."""

    def release(self) -> None: ...


class Catalogue(Protocol):
    """What the engine, the document routes and conversations read of a whole corpus (see the module's
    docstring)."""

    path: Path  # the build folder (or sharded set) in service
    manifest: dict
    documents: dict[str, Document]
    sentences: list[Sentence]
    lexical_sentences: LexicalIndex
    analyzer: Analyzer
    skipped: list[Skipped]
    lease: Held | None

    @property
    def document_vectors(self) -> tuple[dict[str, int], np.ndarray]: ...

    @property
    def document_sentences(self) -> dict[str, np.ndarray]: ...

    @property
    def sentence_ids(self) -> dict[tuple[str, int], int]: ...

    @property
    def sentence_idf(self) -> dict[str, float]: ...

    @property
    def max_sentence_idf(self) -> float: ...


@dataclass(kw_only=True, eq=False)
class CorpusIndex(SentenceSet):
    """One build of a corpus, loaded: its sentences (a :class:`SentenceSet`), passages with their lexical and
    dense indexes, and the build's record. A :class:`Catalogue` too."""

    path: Path
    manifest: dict
    passages: Sequence[Passage]  # by passage id
    faiss_index: object  # FAISS's search(query, k) and ntotal over the passage vectors
    lexical_passages: LexicalIndex | StackedLexicon
    skipped: list[Skipped] = field(default_factory=list)  # the corpus folder's files this build did not read
    lease: Held | None = None  # held while this build is in use, so no publish removes its folder
    stored_fields: dict[str, dict] = field(default_factory=dict)  # doc_id → its fields as documents.json keeps them

    @property
    def fingerprint(self) -> str:
        return self.manifest["corpus_fingerprint"]

    @cached_property
    def passage_documents(self) -> np.ndarray:
        """Passage id → its document's ordinal (as :attr:`sentence_documents` numbers them)."""
        first = np.fromiter((p.sentence_ids[0] for p in self.passages), dtype=np.int64, count=len(self.passages))
        return self.sentence_documents[first] if len(first) else first

    @cached_property
    def passage_order(self) -> np.ndarray | None:
        """As :attr:`sentence_order`, for passages."""
        return None

    @cached_property
    def fingerprint_chunks(self) -> dict[str, bytes]:
        """Each live document's part of the corpus fingerprint (qa.index.spec.document_chunk), so an update
        can record the fingerprint of the corpus after it without reading the corpus folder again."""
        from qa.index.spec import document_chunk

        return {d: document_chunk(d, doc.raw, self.stored_fields.get(d, {})) for d, doc in self.documents.items()}

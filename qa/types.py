"""The data that flows through the pipeline.

Everything a user sees is anchored in a :class:`Document`'s raw text by character offsets, so any
answer can be checked by slicing the original file: ``doc.raw[s.start:s.end] == s.text``.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

SentenceKind = Literal["title", "heading", "body", "code"]
BlockKind = Literal["title", "heading", "body", "item", "code", "nobreak"]


@dataclass(frozen=True, slots=True)
class Block:
    """A span of a document's canonical text that its format marks as one unit (HTML, Word, …): a paragraph
    ("body"), a list item or table row ("item": body text on a line of its own, never read as a heading), a
    heading, a code block; ``nobreak`` spans (inline code) lie inside another block and no sentence ends
    inside one. Plain text has no blocks: its units come from its lines (qa/layout.py)."""

    start: int
    end: int
    kind: BlockKind = "body"


@dataclass(frozen=True, slots=True)
class Document:
    doc_id: str  # the file's path relative to the corpus folder, or "<file>.jsonl#<id>": stable, checkable
    title: str  # from metadata (HTML, JSONL), a headline first line, or the file name
    raw: str  # the canonical text (a text file exactly as read, extracted HTML, a JSONL "text"); never modified
    url: str | None = None
    published: str | None = None  # as the source gives it (JSONL) or the page's own date markup (HTML)
    source: str | None = None  # the corpus file it was read from (relative path)
    author: str | None = None  # author or sender, from the format's metadata
    blocks: tuple[Block, ...] | None = None  # the structure its format gives (HTML, DOCX, …); None: from its lines
    pages: tuple[int, ...] | None = None  # start offset of each page in raw (PDF); None: a format without pages

    def page_of(self, offset: int) -> int | None:
        """The 1-based page that holds ``offset``, or None for a document without pages."""
        return bisect_right(self.pages, offset) or 1 if self.pages else None


@dataclass(frozen=True, slots=True)
class Sentence:
    doc_id: str
    index: int  # position among the document's sentences
    start: int  # offsets into Document.raw
    end: int
    text: str
    kind: SentenceKind = "body"


@dataclass(frozen=True, slots=True)
class Passage:
    """A window of consecutive sentences of one document: the unit both retrievers index. Its text is its
    sentences' texts joined by spaces (``qa.index.passage_text``), not stored: a large corpus would hold
    every sentence twice."""

    passage_id: int
    doc_id: str
    sentence_ids: tuple[int, ...]  # global sentence ids (positions in the index's sentence list)


@dataclass(frozen=True, slots=True)
class Citation:
    doc_id: str
    title: str
    sentence_index: int
    start: int
    end: int
    page: int | None = None  # 1-based page where the sentence starts (PDF); None for formats without pages
    published: str | None = None  # the document's date, when its format gives one

    def to_dict(self) -> dict:
        # Written out: dataclasses.asdict deep-copies field by field (14 µs against 0.4 µs here), and a
        # stored turn and its HTTP answer serialise a dozen citations per question.
        out = {"doc_id": self.doc_id, "title": self.title, "sentence_index": self.sentence_index,
               "start": self.start, "end": self.end, "page": self.page}  # page always: null without pages
        if self.published is not None:
            out["published"] = self.published
        return out


@dataclass(frozen=True, slots=True)
class Disagreement:
    """A sentence of another document worded like an answer sentence that differs from it in a name, number
    or date (qa/claims.py): where the sources disagree. ``differs`` pairs what the answer sentence says with
    what this one says."""

    citation: Citation
    text: str
    differs: tuple[tuple[str, str], ...]

    def to_dict(self) -> dict:
        return {**self.citation.to_dict(), "text": self.text, "differs": [list(pair) for pair in self.differs]}

    @classmethod
    def from_dict(cls, data: dict) -> "Disagreement":
        citation = Citation(data["doc_id"], data["title"], data["sentence_index"], data["start"], data["end"],
                            page=data.get("page"), published=data.get("published"))
        return cls(citation, data["text"], tuple((a, b) for a, b in data.get("differs", [])))


@dataclass(slots=True)
class AnswerSentence:
    text: str
    citation: Citation
    score: float
    also_in: list[Citation] = field(default_factory=list)  # the same statement in other places
    context: str | None = None  # the previous sentence, when this one leans on it ("They said…")
    kind: SentenceKind = "body"  # "code" for a code block (shown as written, not as prose)
    disagrees: list[Disagreement] = field(default_factory=list)  # other places that say it differently

    def to_dict(self) -> dict:
        c = self.citation
        out = {
            "text": self.text,
            "doc_id": c.doc_id,
            "title": c.title,
            "sentence_index": c.sentence_index,
            "start": c.start,
            "end": c.end,
            "page": c.page,
            "kind": self.kind,
            "score": round(float(self.score), 6),
            "also_in": [a.to_dict() for a in self.also_in],
            "disagrees": [d.to_dict() for d in self.disagrees],
        }
        if c.published is not None:
            out["published"] = c.published
        if self.context is not None:
            out["context"] = self.context
        return out


@dataclass(slots=True)
class Answer:
    question: str
    answered: bool
    sentences: list[AnswerSentence]
    retriever: str
    confidence: float = 0.0
    understood_as: str | None = None  # how a follow-up was read, when history changed the query
    message: str | None = None  # e.g. "not found in the corpus"
    conversation_id: str | None = None  # set when the question was asked as a turn of a conversation
    degraded: bool = False  # part of the corpus (a shard of a sharded index) could not be searched

    def to_dict(self) -> dict:
        out = {
            "question": self.question,
            "answered": self.answered,
            "sentences": [s.to_dict() for s in self.sentences],
            "retriever": self.retriever,
            "confidence": round(float(self.confidence), 6),
        }
        if self.understood_as is not None:
            out["understood_as"] = self.understood_as
        if self.message is not None:
            out["message"] = self.message
        if self.conversation_id is not None:
            out["conversation_id"] = self.conversation_id
        if self.degraded:
            out["degraded"] = True
        return out


@dataclass
class Query:
    """A question as the retrievers see it. ``text``/``terms``/``vector`` may differ from the question itself
    when a conversation's history was used to understand it; ``understood_as`` then says how."""

    question: str
    text: str
    terms: list[str]
    vector: np.ndarray | None
    understood_as: str | None = None
    tokens: tuple[np.ndarray, np.ndarray] | None = None  # the question's token vectors and word-piece ids
    names: np.ndarray | None = None  # which of those pieces spell a name (rank.name_pieces)
    neighbour_cosine: bool = True  # score a sentence by its neighbours' cosine too (the profile's ``context_dense``)

"""The request and response models of the HTTP API.

They are the contract a client sees: FastAPI validates requests against them and documents every field in
``/openapi.json``, so a model's name and field descriptions are part of the API.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer

from qa.config import Retriever
from qa.conversation import MAX_ID_CHARS
from qa.engine import MAX_QUESTION_CHARS

# -- answers -------------------------------------------------------------------------------------------


class AskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"question": "What happened at the Torkham border crossing?"}]})

    question: str = Field(min_length=1, max_length=MAX_QUESTION_CHARS, pattern=r"[^\s\x1c-\x1f]",
                          description=f"the question: not blank, at most {MAX_QUESTION_CHARS} characters")
    conversation_id: str | None = Field(
        None, min_length=1, max_length=MAX_ID_CHARS,
        description="continue this conversation (the question may then be a follow-up); "
                    "null starts a new conversation and returns its id")
    top_k: int | None = Field(None, ge=1, le=20, description="at most this many answer sentences; null means "
                                                           "the server's configured default (QA_TOP_K, 5)")
    retriever: Retriever | None = Field(
        None, description="retrieval mode; null means the server's configured default (QA_RETRIEVER, hybrid)")
    abstain: bool = Field(True, description="false returns the best sentences even below the confidence "
                                            "threshold (`answered` still tells); meant for evaluation")

    @field_validator("question", mode="before")
    @classmethod
    def _not_blank(cls, value: Any) -> Any:
        # The schema's pattern counts \x1c-\x1f as blank, as str.strip() does; this says why in words.
        if isinstance(value, str) and not value.strip():
            raise ValueError("the question is empty")
        return value


class CitationOut(BaseModel):
    doc_id: str
    title: str
    sentence_index: int = Field(description="position of the sentence among its document's sentences")
    start: int = Field(description="offset of the sentence in the document's raw text (Unicode code points)")
    end: int
    page: int | None = Field(None, description="1-based page where the sentence starts (PDF); null for formats "
                                               "without pages")
    published: str | None = Field(None, description="the document's date, when its format gives one")

    @model_serializer(mode="wrap")
    def _with_page(self, handler):
        return _page_kept(self, handler(self))


def _page_kept(model, out: dict) -> dict:
    """``out`` with its ``page`` key, null included: the answer routes leave empty fields out, but a client
    should not have to tell "no page" (a format without pages) from "page not sent"."""
    if isinstance(out, dict):
        out.setdefault("page", model.page)
    return out


class DisagreementOut(BaseModel):
    """A sentence of another document worded like the answer sentence that differs from it in a name, number
    or date: the sources disagree."""

    doc_id: str
    title: str
    sentence_index: int
    start: int
    end: int
    page: int | None = Field(None, description="the page of a paged document (PDF); null for the others")
    text: str = Field(description="the other sentence exactly as in its source: raw[start:end]")
    differs: list[tuple[str, str]] = Field(
        description='each difference as [what the answer sentence says, what this sentence says], e.g. '
                    '["12", "15"] or ["Glenhaven", "Dunmarrow"]')


class AnswerSentenceOut(BaseModel):
    text: str = Field(description="the sentence exactly as in the source: raw[start:end]")
    doc_id: str
    title: str
    sentence_index: int
    start: int
    end: int
    page: int | None = Field(None, description="1-based page where the sentence starts (PDF); null for formats "
                                               "without pages")
    published: str | None = Field(None, description="the document's date, when its format gives one")
    kind: Literal["title", "heading", "body", "code"] = Field(
        "body", description='"code": a code block, to be shown as written (line breaks kept)')
    score: float
    also_in: list[CitationOut] = Field(description="the same statement elsewhere in the corpus: the same "
                                                   "names, numbers and dates")
    disagrees: list[DisagreementOut] = Field(
        default_factory=list, description="sentences of other documents worded like this one that differ in a "
                                          "name, number or date: where the sources disagree")
    context: str | None = Field(None, description="the previous sentence, when this one leans on it")

    @model_serializer(mode="wrap")
    def _with_page(self, handler):
        return _page_kept(self, handler(self))


class AskResponse(BaseModel):
    """The answer object of ``qa ask --json`` plus the conversation it belongs to and the server time."""

    conversation_id: str = Field(description="the conversation this question is a turn of")
    question: str
    answered: bool = Field(description="false: nothing in the corpus answers it (see `message`)")
    sentences: list[AnswerSentenceOut]
    retriever: str
    confidence: float
    understood_as: str | None = Field(None, description="how a follow-up was read, when history changed it")
    message: str | None = Field(None, description='e.g. "not found in the corpus"')
    degraded: bool | None = Field(None, description="true: part of a sharded corpus could not be searched "
                                                    "(qa serve --ray); absent otherwise")
    took_ms: float = Field(description="time spent answering inside the server")


# -- conversations -------------------------------------------------------------------------------------


class ConversationCreated(BaseModel):
    conversation_id: str


class TurnOut(BaseModel):
    question: str
    understood_as: str | None
    answered: bool
    citations: list[CitationOut]
    disagrees: list[list[DisagreementOut]] = Field(
        default_factory=list, description="per citation, where other sources differ from it (empty lists "
                                          "when none do; empty for turns stored without them)")
    asked_at: str


class ConversationOut(BaseModel):
    conversation_id: str
    turns: list[TurnOut]


# -- documents -----------------------------------------------------------------------------------------


class DocumentSummary(BaseModel):
    doc_id: str
    title: str
    sentences: int = Field(description="number of sentences")
    format: str = Field("txt", description='the file format: "txt", "md", "html", "pdf", "docx", "odt", "epub", '
                                          '"rtf", "eml" or "jsonl"')
    published: str | None = Field(None, description="its date (HTML date markup, PDF or DOCX properties, the "
                                                    "e-mail's Date, a JSONL `published` field)")
    author: str | None = Field(None, description="its author or sender, when its format gives one")
    url: str | None = None
    pages: int | None = Field(None, description="number of pages (PDF); null for formats without pages")


class DocumentList(BaseModel):
    count: int
    documents: list[DocumentSummary]


class SentenceOut(BaseModel):
    index: int
    start: int = Field(description="offset into `text` (Unicode code points)")
    end: int
    kind: Literal["title", "heading", "body", "code"]


class DocumentOut(BaseModel):
    doc_id: str
    title: str
    text: str = Field(description="the document's canonical text: a .txt/.md file exactly as read, an HTML "
                                  "page's extracted article, a PDF's text layer, a JSONL record's `text`")
    sentences: list[SentenceOut]
    published: str | None = None
    author: str | None = None
    url: str | None = None
    pages: list[int] | None = Field(None, description="offset in `text` where each page starts (PDF): page n "
                                                      "starts at pages[n - 1]; null for formats without pages")


class SkippedFile(BaseModel):
    """A file of the corpus folder that is not indexed."""

    path: str = Field(description="its path in the corpus folder (a folder's ends with /)")
    reason: str = Field(description='one of "unsupported type", "no text layer", "encrypted", "damaged", '
                                    '"empty", "too big", "not UTF-8", "binary", "link out of the folder", '
                                    '"link to a folder", "hidden", "unreadable", "name not allowed", "bad record"')
    detail: str = Field("", description="the reason in words (for a .jsonl file, which line)")


class DocumentUpdated(BaseModel):
    doc_id: str
    created: bool = Field(description="true: a new document; false: an existing one was replaced or deleted")
    build: str = Field(description="the index build now answering questions (in this worker process; the "
                                   "others load it within `refresh_seconds`)")
    documents: int
    sentences: int


class DocumentUpload(BaseModel):
    """The JSON form of an upload (``text/plain`` sends the document's text as the body instead)."""

    text: str
    title: str | None = Field(None, description="one line; becomes the document's headline")


# -- the service ---------------------------------------------------------------------------------------


class Health(BaseModel):
    status: Literal["ready", "loading", "error"]
    ready: bool
    reloading: bool = False
    updating: bool = Field(False, description="an index build or document update of this index is running "
                                              "(in this process or another)")
    model: str | None = None
    corpus_fingerprint: str | None = None
    documents: int | None = None
    sentences: int | None = None
    passages: int | None = None
    skipped: int | None = Field(None, description="files of the corpus folder not indexed (GET /documents/skipped)")
    index_built_at: str | None = None
    index_build_seconds: float | None = None
    engine_loaded_at: str | None = None
    error: str | None = Field(None, description="why the engine could not be loaded (or reloaded)")
    worker_pid: int = Field(default_factory=os.getpid, description="the process that answered: with "
                            "`qa serve --workers N`, each worker loads a reload's new build within about "
                            "a second of the others, and reports on itself")


class ReloadStarted(BaseModel):
    detail: str


class ReloadRequest(BaseModel):
    """An empty JSON object: the route takes no options, but a JSON body (which a browser cannot send
    cross-origin unasked) is required."""

    model_config = ConfigDict(extra="forbid")


# -- errors --------------------------------------------------------------------------------------------


class ErrorItem(BaseModel):
    field: str
    message: str


class ErrorOut(BaseModel):
    detail: str
    errors: list[ErrorItem] | None = None
    error_id: str | None = None

"""The HTTP service: a thin FastAPI layer over :class:`qa.engine.Engine`.

Every route is a plain function over the engine it is handed (``Depends(get_engine)``), so tests can swap
in their own engine with ``app.dependency_overrides``. Routes that do CPU work are sync ``def`` functions:
FastAPI runs them in its thread pool, so a question being answered never blocks the event loop.

The engine in service lives in :class:`ServiceState` and is replaced by one attribute assignment, so a
request uses either the old engine or the new one, never a mixture; requests keep being answered from the
old index while a new one is built (``POST /admin/reload``, when enabled) and swapped in.

Run it with ``qa serve`` or ``python -m uvicorn --factory qa.api:create_app``. See docs/API.md.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
from fastapi import Depends, FastAPI, HTTPException, Path as PathParam, Request, Response, status
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from threadpoolctl import threadpool_limits

from qa import index as index_mod
from qa.config import Retriever, Settings
from qa.conversation import HTTP_NAMESPACE, MAX_ID_CHARS, ConversationStore, UnknownConversation, attach_store
from qa.api.routes.documents import add_document_routes, updater_of_app
from qa.updates import watch_folder
from qa.engine import MAX_QUESTION_CHARS, Engine, InvalidQuestion
from qa.api.security import AdminDep, BodyReadTimeout, JsonBodyDep, host_patterns, public_error

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
STATIC_DIR = Path(__file__).resolve().parents[1] / "static"
PAGE_HEADERS = {
    # The chat page loads only its own files and renders document text as text, never as HTML.
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


# -- request and response models ---------------------------------------------------------------------


class AskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"question": "What happened at the Torkham border crossing?"}]})

    question: str = Field(min_length=1, max_length=MAX_QUESTION_CHARS, pattern=r"\S",
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
        # str.strip() and the schema's regex disagree on a few control characters; the engine strips.
        if isinstance(value, str) and not value.strip():
            raise ValueError("the question is empty")
        return value


class CitationOut(BaseModel):
    doc_id: str
    title: str
    sentence_index: int = Field(description="position of the sentence among its document's sentences")
    start: int = Field(description="offset of the sentence in the document's raw text (Unicode code points)")
    end: int


class AnswerSentenceOut(BaseModel):
    text: str = Field(description="the sentence exactly as in the source: raw[start:end]")
    doc_id: str
    title: str
    sentence_index: int
    start: int
    end: int
    score: float
    also_in: list[CitationOut] = Field(description="the same statement elsewhere in the corpus")
    context: str | None = Field(None, description="the previous sentence, when this one leans on it")


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


class ConversationCreated(BaseModel):
    conversation_id: str


class TurnOut(BaseModel):
    question: str
    understood_as: str | None
    answered: bool
    citations: list[CitationOut]
    asked_at: str


class ConversationOut(BaseModel):
    conversation_id: str
    turns: list[TurnOut]


class DocumentSummary(BaseModel):
    doc_id: str
    title: str
    sentences: int = Field(description="number of sentences")


class DocumentList(BaseModel):
    count: int
    documents: list[DocumentSummary]


class SentenceOut(BaseModel):
    index: int
    start: int = Field(description="offset into `text` (Unicode code points)")
    end: int
    kind: Literal["title", "heading", "body"]


class DocumentOut(BaseModel):
    doc_id: str
    title: str
    text: str = Field(description="the document's raw text, exactly as read")
    sentences: list[SentenceOut]


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
    index_built_at: str | None = None
    index_build_seconds: float | None = None
    engine_loaded_at: str | None = None
    error: str | None = Field(None, description="why the engine could not be loaded (or reloaded)")
    worker_pid: int = Field(default_factory=os.getpid, description="the process that answered: with "
                            "`qa serve --workers N`, each worker loads a reload's new build within about "
                            "a second of the others, and reports on itself")


class ErrorItem(BaseModel):
    field: str
    message: str


class ErrorOut(BaseModel):
    detail: str
    errors: list[ErrorItem] | None = None
    error_id: str | None = None


def _err(description: str) -> dict:
    return {"model": ErrorOut, "description": description}


NOT_READY = {503: _err("the engine is still loading, or could not be loaded (see /health)")}
BAD_INPUT = {422: _err("invalid request"), 413: _err(f"request body larger than {MAX_BODY_BYTES} bytes"),
             400: _err("the body cannot be read (not UTF-8, or an invalid Content-Length)"),
             408: _err("the body stopped arriving (the connection is closed)")}


# -- the engine in service ---------------------------------------------------------------------------


class ServiceState:
    """Holds the engine in service and (re)loads it in a background thread.

    ``engine`` is replaced by a single assignment once a new engine is fully loaded and warmed up, so
    readers see the old engine or the new one; requests already running finish on the engine they began with.
    """

    def __init__(self, settings: Settings, engine: Engine | None = None):
        self.settings = settings
        self._conversations: ConversationStore | None = None
        self._engine: Engine | None = None
        self.engine = engine
        self.error: str | None = None  # what a client is told; the log has the exception itself
        self.loaded_at: str | None = _now() if engine is not None else None
        self._loading = threading.Lock()  # held while a load or reload runs

    @property
    def busy(self) -> bool:
        return self._loading.locked()

    @property
    def engine(self) -> Engine | None:
        return self._engine

    @engine.setter
    def engine(self, engine: Engine | None) -> None:
        """Put ``engine`` in service, answering conversations from the HTTP namespace's store (opened once,
        so it outlives a reload): a conversation named in the CLI is never reachable over HTTP."""
        if engine is not None:
            if self._conversations is None:
                self._conversations = ConversationStore.from_settings(self.settings, HTTP_NAMESPACE)
            attach_store(engine, self._conversations)
        self._engine = engine

    def start_loading(self, *, check_corpus: bool = True) -> bool:
        """Load (or reload) the engine in a daemon thread; False when a load is already running.
        ``check_corpus=False`` loads the published build as it is (it was just built by another process)."""
        if not self._loading.acquire(blocking=False):
            return False
        threading.Thread(target=self._load, args=(check_corpus,), name="qa-engine-load", daemon=True).start()
        return True

    def follow(self, every: float) -> threading.Event:
        """Every ``every`` seconds, load the index's published build if another process has published a new
        one since (a sibling worker's reload, `qa index`): the workers of one server then serve the same
        index shortly after any of them reloads. Set the returned event to stop."""
        stop = threading.Event()
        target = self.settings.index_dir()

        def watch() -> None:
            tried = None  # a build that failed to load is not retried until another one is published
            while not stop.wait(every):
                engine, published = self.engine, index_mod.published_build(target)
                if engine is None or published in (None, tried, engine.index.path.name) or self.busy:
                    continue
                log.info("a new build of the index was published (%s): loading it", published)
                tried = published if self.start_loading(check_corpus=False) else tried

        threading.Thread(target=watch, name="qa-index-follow", daemon=True).start()
        return stop

    def _load(self, check_corpus: bool = True) -> None:
        try:
            t0 = time.perf_counter()
            log.info("loading the engine for %s", self.settings.corpus_dir)
            engine = Engine.open(self.settings, check_corpus=check_corpus,
                                 on_rebuild=lambda why: log.info("building the index (%s)", why))
            engine.encode_query("warm up")  # load the model now, not in the first request
            # Conversations live in SQLite under settings.data_dir, so they outlive the swap.
            self.engine = engine  # the swap: one reference assignment
            self.error = None
            self.loaded_at = _now()
            log.info("engine ready in %.1f s: %s", time.perf_counter() - t0, engine.index.path)
        except Exception as exc:  # reported by /health; the old engine (if any) stays in service
            self.error = public_error(exc)
            log.error("could not load the engine: %s: %s", type(exc).__name__, exc, exc_info=not _is_expected(exc))
        finally:
            self._loading.release()


def _is_expected(exc: Exception) -> bool:
    from qa.index import IndexUnavailable

    return isinstance(exc, (IndexUnavailable, FileNotFoundError, ValueError))


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


async def get_state(request: Request) -> ServiceState:  # async: no thread-pool hop for a lookup
    return request.app.state.qa


async def get_engine(state: Annotated[ServiceState, Depends(get_state)]) -> Engine:
    engine = state.engine
    if engine is None:
        why = f"the engine could not be loaded: {state.error}" if state.error else "the engine is still loading"
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, why, headers={"Retry-After": "5"})
    return engine


EngineDep = Annotated[Engine, Depends(get_engine)]


@dataclass(frozen=True)
class Catalog:
    """Per-index lookups for the document routes, computed once per index."""

    index: object
    ranges: dict[str, tuple[int, int]]  # doc_id → [first, last) global sentence ids
    listing: DocumentList


_catalog: Catalog | None = None
_catalog_lock = threading.Lock()


def catalog(engine: Engine) -> Catalog:
    global _catalog
    current = _catalog
    if current is not None and current.index is engine.index:
        return current
    with _catalog_lock:
        if _catalog is not None and _catalog.index is engine.index:
            return _catalog
        ranges: dict[str, tuple[int, int]] = {}
        for sid, s in enumerate(engine.index.sentences):
            first, _ = ranges.get(s.doc_id, (sid, sid))
            ranges[s.doc_id] = (first, sid + 1)
        docs = sorted(engine.index.documents.values(), key=lambda d: d.doc_id)
        counts = {doc_id: last - first for doc_id, (first, last) in ranges.items()}
        listing = DocumentList(count=len(docs), documents=[
            DocumentSummary(doc_id=d.doc_id, title=d.title, sentences=counts.get(d.doc_id, 0)) for d in docs])
        _catalog = Catalog(engine.index, ranges, listing)
        return _catalog


# -- routes --------------------------------------------------------------------------------------------


def not_found(what: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, what)


async def ask(body: AskRequest, engine: EngineDep, request: Request) -> dict:
    """Answer a question with cited source sentences (a follow-up when `conversation_id` is given)."""
    # CPU work, in a worker thread; at most `ask_workers` at once, so that a burst queues here instead of
    # in thousands of threads, while enough run together for their questions to share model runs.
    return await anyio.to_thread.run_sync(answer_question, body, engine, limiter=request.app.state.ask_limiter)


def answer_question(body: AskRequest, engine: Engine) -> dict:
    """The work of POST /ask (blocking)."""
    t0 = time.perf_counter()
    cid = body.conversation_id
    try:
        answer = engine.ask(body.question, top_k=body.top_k, retriever=body.retriever, conversation_id=cid,
                            start_conversation=cid is None, abstain=body.abstain)
    except UnknownConversation:
        raise not_found(f"no conversation {cid!r}") from None
    except InvalidQuestion as exc:  # the request model checks the question too; kept for safety
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    out = answer.to_dict()
    out["took_ms"] = round((time.perf_counter() - t0) * 1000, 3)
    return out


def create_conversation(engine: EngineDep) -> ConversationCreated:
    """Start an empty conversation; pass its id to /ask."""
    return ConversationCreated(conversation_id=engine.conversations.create())


ConversationId = Annotated[str, PathParam(min_length=1, max_length=MAX_ID_CHARS)]


def get_conversation(conversation_id: ConversationId, engine: EngineDep) -> ConversationOut:
    """The turns of a conversation, oldest first."""
    turns = engine.conversations.turns(conversation_id)
    if turns is None:
        raise not_found(f"no conversation {conversation_id!r}")
    return ConversationOut(conversation_id=conversation_id, turns=[
        TurnOut(question=t.question, understood_as=t.understood_as, answered=t.answered, asked_at=str(t.asked_at),
                citations=[CitationOut(**c.to_dict()) for c in t.citations]) for t in turns])


def delete_conversation(conversation_id: ConversationId, engine: EngineDep) -> Response:
    """Forget a conversation."""
    if not engine.conversations.delete(conversation_id):
        raise not_found(f"no conversation {conversation_id!r}")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def list_documents(engine: EngineDep) -> DocumentList:
    """The documents of the corpus."""
    return catalog(engine).listing


DocId = Annotated[str, PathParam(min_length=1, max_length=MAX_ID_CHARS, description="e.g. 000_f45c79c16f6a0511.txt")]


def get_document(doc_id: DocId, engine: EngineDep) -> DocumentOut:
    """A document's raw text and its sentences with offsets, to show a cited sentence in place."""
    doc = engine.index.documents.get(doc_id)  # a lookup in the loaded index, never a file path
    if doc is None:
        raise not_found(f"no document {doc_id!r}")
    first, last = catalog(engine).ranges.get(doc_id, (0, 0))
    return DocumentOut(doc_id=doc.doc_id, title=doc.title, text=doc.raw, sentences=[
        SentenceOut(index=s.index, start=s.start, end=s.end, kind=s.kind)
        for s in engine.index.sentences[first:last]])


def health(state: Annotated[ServiceState, Depends(get_state)], response: Response) -> Health:
    """Whether the service answers questions, and from which index (503 while not ready)."""
    engine = state.engine
    if engine is None:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return Health(status="error" if state.error else "loading", ready=False, reloading=state.busy,
                      updating=index_mod.build_running(state.settings.index_dir()), error=state.error)
    m = engine.index.manifest
    return Health(status="ready", ready=True, reloading=state.busy,
                  updating=index_mod.build_running(state.settings.index_dir()), model=m.get("model"),
                  corpus_fingerprint=m.get("corpus_fingerprint"), documents=m.get("documents"),
                  sentences=m.get("sentences"), passages=m.get("passages"), index_built_at=m.get("built_at"),
                  index_build_seconds=m.get("build_seconds"), engine_loaded_at=state.loaded_at, error=state.error)


class ReloadStarted(BaseModel):
    detail: str


class ReloadRequest(BaseModel):
    """An empty JSON object: the route takes no options, but a JSON body (which a browser cannot send
    cross-origin unasked) is required."""

    model_config = ConfigDict(extra="forbid")


def reload(state: Annotated[ServiceState, Depends(get_state)], _admin: AdminDep, _json: JsonBodyDep,
           body: ReloadRequest) -> ReloadStarted:
    """Reopen the index (rebuilding it if the corpus changed) in the background; the old one keeps answering
    until the new one is swapped in. Poll /health: `reloading` turns false, `corpus_fingerprint` changes.
    Needs `Authorization: Bearer <QA_ADMIN_TOKEN>` and the JSON body `{}`."""
    if not state.start_loading():
        raise HTTPException(status.HTTP_409_CONFLICT, "a reload is already running")
    return ReloadStarted(detail="reload started")


def page() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", headers=PAGE_HEADERS)


DOCS_ASSETS = "/docs-assets"


def swagger_ui_dir() -> Path:
    """Swagger UI's files as the ``swagger-ui-bundle-v2`` package installs them: /docs works offline."""
    from swagger_ui_bundle import swagger_ui_path

    return Path(swagger_ui_path)


def api_docs(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "").rstrip("/")
    return get_swagger_ui_html(openapi_url=root + request.app.openapi_url, title="qa — API docs",
                               swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui-bundle.js",
                               swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui.css",
                               swagger_favicon_url=f"{root}{DOCS_ASSETS}/favicon-32x32.png")


# -- middleware and error handling ---------------------------------------------------------------------


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int):
        super().__init__(status.HTTP_413_CONTENT_TOO_LARGE, f"request body larger than {limit} bytes")


class BodySizeLimit:
    """Refuse request bodies over ``max_bytes`` with 413: at once from Content-Length, and by counting
    the bytes of a streamed (chunked) body as the application reads it."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES, upload_bytes: int | None = None):
        self.app = app
        self.max_bytes = max_bytes
        self.upload_bytes = upload_bytes or max_bytes  # PUT /documents/…: a whole document

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.upload_bytes if scope["method"] == "PUT" else self.max_bytes
        declared = [v for k, v in scope["headers"] if k == b"content-length"]
        if declared:
            try:
                size = int(declared[0])
            except ValueError:
                await _send_json(send, 400, {"detail": "invalid Content-Length"})
                return
            if size > limit:
                await _send_json(send, 413, {"detail": BodyTooLarge(limit).detail})
                return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)  # FastAPI turns it into the 413 response
            return message

        watched = _WatchedSend(send)
        try:
            await self.app(scope, counting_receive, watched)
        except BodyTooLarge as exc:  # raised where nothing turned it into a response
            if not watched.started:
                await _send_json(send, 413, {"detail": exc.detail})


class ErrorBoundary:
    """The last exception handler: any error that escapes a route becomes a JSON 500 with an error id and no
    traceback, and is logged with its traceback. (Starlette's own ``exception_handler(Exception)`` re-raises
    the error to the server after answering, which logs it twice and breaks TestClient; this does not.)"""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        watched = _WatchedSend(send)
        try:
            await self.app(scope, receive, watched)
        except Exception as exc:
            error_id = uuid.uuid4().hex[:12]
            log.error("unexpected error %s in %s %s", error_id, scope.get("method"), scope.get("path"), exc_info=exc)
            if not watched.started:
                await _send_json(send, 500, {"detail": "internal error", "error_id": error_id})


class _WatchedSend:
    """An ASGI ``send`` that remembers whether the response has started (then no error response can follow)."""

    def __init__(self, send: Send):
        self.send = send
        self.started = False

    async def __call__(self, message: Message) -> None:
        self.started = self.started or message["type"] == "http.response.start"
        await self.send(message)


async def _send_json(send: Send, status_code: int, body: dict) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status_code,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
    """FastAPI's JSON error, with an ``Allow`` header on 405 that lists the methods of every route at the path
    (Starlette lists only those of the first route it matched, e.g. GET but not DELETE)."""
    if exc.status_code == 405:
        allowed: set[str] = set()
        for route in request.app.router.routes:
            match, _ = route.matches(request.scope)
            if match != Match.NONE and getattr(route, "methods", None):
                allowed |= route.methods
        if allowed:
            exc.headers = {**(exc.headers or {}), "Allow": ", ".join(sorted(allowed))}
    return await http_exception_handler(request, exc)


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 with one readable message (and the details per field), never echoing the input back."""
    items = []
    for e in exc.errors():
        loc = [str(p) for p in e.get("loc", ()) if p != "body"] or ["body"]
        if e.get("type") == "json_invalid":
            msg = f"malformed JSON: {e.get('ctx', {}).get('error', 'cannot be parsed')}"
            loc = ["body"]
        elif e.get("type") == "value_error":
            msg = str(e.get("ctx", {}).get("error", e.get("msg")))
        else:
            msg = e.get("msg", "invalid")
        items.append(ErrorItem(field=".".join(loc), message=msg))
    detail = "; ".join(f"{i.field}: {i.message}" for i in items) or "invalid request"
    return JSONResponse(status_code=422, content=ErrorOut(detail=detail, errors=items).model_dump(exclude_none=True))


# -- the application -----------------------------------------------------------------------------------


def create_app(engine: Engine | None = None, settings: Settings | None = None, *,
               allow_reload: bool = False, max_body_bytes: int = MAX_BODY_BYTES,
               ask_workers: int | None = None, load_on_startup: bool = True, follow_index: bool = False,
               watch: bool = False) -> FastAPI:
    """The HTTP app. Without ``engine`` it loads one from ``settings`` at start-up (in the background:
    /health answers 503 until it is ready), unless ``load_on_startup`` is false (the engine is then set
    on ``app.state.qa`` by the caller, as tests do). ``allow_reload`` adds ``POST /admin/reload``.
    ``ask_workers`` bounds the questions answered at once (default: ``settings.ask_workers``).
    ``follow_index`` loads each new build of the index another process publishes (``ServiceState.follow``,
    every ``settings.follow_seconds``). ``watch`` updates the index when files of the corpus folder change
    (``qa serve --watch``, qa/updates.py)."""
    settings = settings or (engine.settings if engine is not None else Settings())
    state = ServiceState(settings, engine)
    # Requests run side by side on few cores. A matrix product (the ranker's token match) would wake BLAS's
    # own worker threads, which then spin beside the requests: twice the CPU per request (docs/DECISIONS.md).
    threadpool_limits(limits=1, user_api="blas")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if state.engine is None and load_on_startup:
            state.start_loading()
        stop = state.follow(settings.follow_seconds) if follow_index and settings.follow_seconds else None
        watching = watch_folder(updater_of_app(app), settings.watch_seconds) if watch else None
        yield
        for event in (stop, watching):
            if event is not None:
                event.set()

    app = FastAPI(
        title="qa",
        version="0.1.0",
        summary="Extractive, cited question answering over a news corpus.",
        description="Every answer is a list of exact source sentences with citations (document, title, sentence "
                    "index, character offsets into the raw file); nothing is generated. Offsets count Unicode "
                    "code points. Errors are JSON objects with a `detail` message.",
        lifespan=lifespan,
        docs_url=None,  # served below from packaged assets, not from a CDN
        redoc_url=None,
    )
    app.state.qa = state
    app.state.settings = settings  # qa.api.security reads the admin token here
    app.state.ask_limiter = anyio.CapacityLimiter(ask_workers or settings.ask_workers)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)

    app.post("/ask", response_model=AskResponse, response_model_exclude_none=True, tags=["answers"],
             responses={404: _err("unknown conversation"), **BAD_INPUT, **NOT_READY})(ask)
    app.post("/conversations", status_code=201, response_model=ConversationCreated, tags=["conversations"],
             responses={**BAD_INPUT, **NOT_READY})(create_conversation)
    app.get("/conversations/{conversation_id}", response_model=ConversationOut, tags=["conversations"],
            responses={404: _err("unknown conversation"), 422: _err("invalid id"), **NOT_READY})(get_conversation)
    app.delete("/conversations/{conversation_id}", status_code=204, response_class=Response, tags=["conversations"],
               responses={204: {"description": "deleted"}, 404: _err("unknown conversation"),
                          422: _err("invalid id"), **NOT_READY})(delete_conversation)
    app.get("/documents", response_model=DocumentList, tags=["documents"], responses=NOT_READY)(list_documents)
    app.get("/documents/{doc_id:path}", response_model=DocumentOut, tags=["documents"],
            responses={404: _err("unknown document"), 422: _err("invalid id"), **NOT_READY})(get_document)
    app.get("/health", response_model=Health, tags=["service"],
            responses={503: {"model": Health, "description": "not ready: loading, or the load failed"}})(health)
    if allow_reload:
        app.post("/admin/reload", status_code=202, response_model=ReloadStarted, tags=["service"],
                 responses={409: _err("a reload is already running"), 401: _err("no or a wrong admin token"),
                            403: _err("the server has no admin token"), 415: _err("the body is not JSON"),
                            **BAD_INPUT})(reload)
    add_document_routes(app)  # PUT and DELETE /documents/{doc_id} (qa/api/routes/documents.py)
    app.get("/", include_in_schema=False)(page)
    app.get("/docs", include_in_schema=False)(api_docs)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.mount(DOCS_ASSETS, StaticFiles(directory=swagger_ui_dir()), name="docs-assets")

    # Innermost first: the body-read timeout sees the server's receive; the Host check, outermost, refuses a
    # request for a name this server is not known by (DNS rebinding) before anything else reads it.
    app.add_middleware(BodyReadTimeout, seconds=settings.body_timeout_s)
    # A PUT carries a whole document: JSON may escape every character of it into two.
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes, upload_bytes=2 * settings.max_document_bytes)
    app.add_middleware(ErrorBoundary)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=host_patterns(settings.allowed_hosts), www_redirect=False)
    return app


def serving_app(engine: Engine, settings: Settings) -> FastAPI:
    """The app ``qa serve`` runs over an engine it has opened: the question path warmed up before the first
    request (the model's first run, the vocabulary ``rank.name_pieces`` reads), ``/admin/reload`` as the
    settings say, and each build of the index another process publishes loaded."""
    engine.query("warm up", "hybrid")  # the mode that runs every part of the question path
    return create_app(engine, settings, allow_reload=settings.allow_reload, follow_index=True, watch=settings.watch)


def worker_app() -> FastAPI:
    """The app of one worker process of ``qa serve --workers N`` (``qa.serve`` calls it in each worker, and
    ``uvicorn --factory qa.api:worker_app`` works too).

    Settings come from the environment, which the supervisor has set to its own (CLI options included). The
    supervisor has built the index already, so the engine opens quickly; it is opened and warmed up here,
    before the worker listens, so a worker in service (and one that replaces a dead one) never answers
    503. Workers follow the published index, so a reload that one of them does reaches them all."""
    settings = Settings()
    engine = Engine.open(settings, on_rebuild=lambda why: log.info("building the index (%s)", why))
    return serving_app(engine, settings)

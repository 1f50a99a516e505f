"""The app factory: the routers of ``qa/api/routes/``, the middleware, the exception handlers and the
lifespan that loads the engine, put together once per process (``qa serve``, its workers, uvicorn's
``--factory``, tests).

Routes that do CPU work are sync ``def`` functions (or hand it to a worker thread): FastAPI runs them in its
thread pool, so a question being answered never blocks the event loop.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware
from threadpoolctl import threadpool_limits

from qa.api.errors import http_error, validation_error
from qa.api.middleware import MAX_BODY_BYTES, BodyReadTimeout, BodySizeLimit, ErrorBoundary
from qa.api.routes import ask, conversations, documents, service
from qa.api.security import host_patterns
from qa.api.state import ServiceState, updater_of_app
from qa.config import Settings
from qa.engine import Engine
from qa.updates import IndexUpdates, watch_folder

log = logging.getLogger(__name__)


def create_app(engine: Engine | None = None, settings: Settings | None = None, *,
               allow_reload: bool = False, max_body_bytes: int = MAX_BODY_BYTES,
               ask_workers: int | None = None, load_on_startup: bool = True, follow_index: bool = False,
               watch: bool = False, updates: IndexUpdates | None = None) -> FastAPI:
    """The HTTP app. Without ``engine`` it loads one from ``settings`` at start-up (in the background:
    /health answers 503 until it is ready), unless ``load_on_startup`` is false (the engine is then set
    on ``app.state.qa`` by the caller, as tests do). ``allow_reload`` adds ``POST /admin/reload``.
    ``ask_workers`` bounds the questions answered at once (default: ``settings.ask_workers``).
    ``follow_index`` loads each new build of the index another process publishes (``ServiceState.follow``,
    every ``settings.refresh_seconds``). ``watch`` updates the index when files of the corpus folder change
    (``qa serve --watch``, qa/updates.py). ``updates``: how the index takes changes, when it is not one index
    folder (a sharded index: ``qa.cluster.updates``)."""
    settings = settings or (engine.settings if engine is not None else Settings())
    state = ServiceState(settings, engine, updates)
    # Requests run side by side on few cores. A matrix product (the ranker's token match) would wake BLAS's
    # own worker threads, which then spin beside the requests: twice the CPU per request (docs/DECISIONS.md).
    threadpool_limits(limits=1, user_api="blas")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if state.engine is None and load_on_startup:
            state.start_loading()
        stop = state.follow(settings.refresh_seconds) if follow_index and settings.refresh_seconds else None
        watching = watch_folder(updater_of_app(app), settings.watch_seconds, settings.watch_quiet_s) \
            if watch else None
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
        docs_url=None,  # served by the service router from packaged assets, not from a CDN
        redoc_url=None,
    )
    app.state.qa = state
    app.state.settings = settings  # qa.api.security reads the admin token here
    app.state.ask_limiter = anyio.CapacityLimiter(ask_workers or settings.ask_workers)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)

    for router in (ask.router, conversations.router, documents.router, service.router):
        app.include_router(router)
    if allow_reload:
        app.include_router(service.admin_router)
    service.mount_assets(app)

    # Innermost first: the body-read timeout sees the server's receive; the Host check, outermost, refuses a
    # request for a name this server is not known by (DNS rebinding) before anything else reads it.
    app.add_middleware(BodyReadTimeout, seconds=settings.body_timeout_s, deadline=settings.body_deadline_s)
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

"""The engine in service, and the route dependencies that hand it to the routes.

The engine lives in :class:`ServiceState` and is replaced by one attribute assignment, so a request uses
either the old engine or the new one, never a mixture; requests keep being answered from the old index while
a new one is built (``POST /admin/reload``, another process's build, a document update) and swapped in.
Routes take it as ``EngineDep`` (``Depends(get_engine)``), so tests can swap in their own engine with
``app.dependency_overrides``.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from qa.api.errors import public_error
from qa.api.schemas import DocumentList, DocumentSummary, SkippedFile
from qa.config import Settings
from qa.conversation import HTTP_NAMESPACE, ConversationStore, attach_store
from qa.engine import Engine
from qa.formats import format_of
from qa.updates import IndexUpdates, LocalIndex, Updater, published

log = logging.getLogger(__name__)

SWAP_ATTEMPTS = 3  # loads of the published build when the one loaded was replaced meanwhile


class ServiceState:
    """Holds the engine in service and (re)loads it in a background thread.

    ``engine`` is replaced by a single assignment once a new engine is fully loaded and warmed up, so
    readers see the old engine or the new one; requests already running finish on the engine they began with.
    """

    def __init__(self, settings: Settings, engine: Engine | None = None, updates: IndexUpdates | None = None):
        self.settings = settings
        self.updates = updates or LocalIndex()  # how the index takes changes (one folder, or shards)
        self._conversations: ConversationStore | None = None
        self._engine: Engine | None = None
        self._swap = threading.RLock()  # a swap and the check that the engine's build is still current
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
        with self._swap:
            if engine is not None:
                if self._conversations is None:
                    self._conversations = ConversationStore.from_settings(self.settings, HTTP_NAMESPACE)
                attach_store(engine, self._conversations)
            previous, self._engine = self._engine, engine
            if previous is not None and (engine is None or previous.index is not engine.index):
                retire(previous)

    def swap_in_if_current(self, engine: Engine) -> bool:
        """Put ``engine`` in service if its build is still the published one (False otherwise): a load that
        took a while never replaces the newer build an update of this process swapped in meanwhile, so a
        client that was told its change is in reads it on this process from then on."""
        with self._swap:
            if self.updates.published_name(self.settings) not in (None, self.updates.name_of(engine)):
                return False
            self.engine = engine
            return True

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

        def watch() -> None:
            tried = None  # a build that failed to load is not retried until another one is published
            while not stop.wait(every):
                engine = self.engine
                try:
                    name = self.updates.published_name(self.settings)
                except Exception as exc:  # a shard not answering: looked at again next time
                    log.warning("could not tell what index is published: %s", exc)
                    continue
                if engine is None or name in (None, tried, self.updates.name_of(engine)) or self.busy:
                    continue
                log.info("a new build of the index was published (%s): loading it", name)
                tried = name if not self.refresh_to_published(engine) else None

        threading.Thread(target=watch, name="qa-index-follow", daemon=True).start()
        return stop

    def refresh_to_published(self, engine: Engine) -> bool:
        """Swap in ``engine`` over the index published now, sharing the segments it holds (a generation that
        adds a segment reads only that one): how a worker picks up another process's update. False when it
        could not be loaded (reported by /health; the engine in service stays)."""
        if not self._loading.acquire(blocking=False):
            return True  # a load is under way: it serves the newest build once done
        try:
            fresh = self.updates.published(engine)
            if not self.swap_in_if_current(fresh):
                retire(fresh)
            return True
        except Exception as exc:
            log.warning("could not load the published index: %s", exc)
            self.error = str(exc)
            return False
        finally:
            self._loading.release()

    def _load(self, check_corpus: bool = True) -> None:
        try:
            t0 = time.perf_counter()
            log.info("loading the engine for %s", self.settings.corpus_dir)
            engine = Engine.open(self.settings, check_corpus=check_corpus,
                                 on_rebuild=lambda why: log.info("building the index (%s)", why))
            engine.encode_query("warm up")  # load the model now, not in the first request
            # Conversations live in SQLite under settings.data_dir, so they outlive the swap.
            for _ in range(SWAP_ATTEMPTS):  # the swap: one reference assignment (else `follow` tries again)
                if self.swap_in_if_current(engine):
                    break
                retire(engine)
                engine = published(engine)
            self.error = None
            self.loaded_at = _now()
            log.info("engine ready in %.1f s: %s", time.perf_counter() - t0, engine.index.path)
        except Exception as exc:  # reported by /health; the old engine (if any) stays in service
            self.error = public_error(exc)
            log.error("could not load the engine: %s: %s", type(exc).__name__, exc, exc_info=not _is_expected(exc))
        finally:
            self._loading.release()


def retire(engine: Engine) -> None:
    """Let the build of an engine out of service go: its lease is released (a later publish may remove the
    folder). Requests still running on it finish: a loaded index reads its build only through the files it
    opened when it loaded, which stay readable after their folder is removed."""
    if engine.index.lease is not None:
        engine.index.lease.release()


def _is_expected(exc: Exception) -> bool:
    from qa.index import IndexUnavailable

    return isinstance(exc, (IndexUnavailable, FileNotFoundError, ValueError))


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# -- route dependencies --------------------------------------------------------------------------------


async def get_state(request: Request) -> ServiceState:  # async: no thread-pool hop for a lookup
    return request.app.state.qa


StateDep = Annotated[ServiceState, Depends(get_state)]


async def get_engine(state: StateDep) -> Engine:
    engine = state.engine
    if engine is None:
        why = f"the engine could not be loaded: {state.error}" if state.error else "the engine is still loading"
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, why, headers={"Retry-After": "5"})
    return engine


EngineDep = Annotated[Engine, Depends(get_engine)]


def updater_of_app(app) -> Updater:
    """The app's updater (document updates, ``qa serve --watch``), made on first use over its engine holder
    (``app.state.qa``)."""
    updater = getattr(app.state, "updater", None)
    if updater is None:
        updater = app.state.updater = Updater(app.state.qa)
    return updater


# -- per-index lookups ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Catalog:
    """Per-index lookups for the document routes, computed once per index."""

    index: object
    ranges: dict[str, tuple[int, int]]  # doc_id → [first, last) global sentence ids
    listing: DocumentList
    skipped: list[SkippedFile]


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
        ranges = {doc_id: (int(ids[0]), int(ids[-1]) + 1)  # a document's sentences are consecutive ids
                  for doc_id, ids in engine.index.document_sentences.items() if len(ids)}
        docs = sorted(engine.index.documents.values(), key=lambda d: d.doc_id)
        counts = {doc_id: last - first for doc_id, (first, last) in ranges.items()}
        listing = DocumentList(count=len(docs), documents=[
            DocumentSummary(doc_id=d.doc_id, title=d.title, sentences=counts.get(d.doc_id, 0),
                            format=format_of(d.source or d.doc_id), published=d.published, author=d.author,
                            url=d.url, pages=len(d.pages) if d.pages else None) for d in docs])
        skipped = [SkippedFile(path=s.path, reason=s.reason, detail=s.detail)
                   for s in engine.index.skipped]
        _catalog = Catalog(engine.index, ranges, listing, skipped)
        return _catalog

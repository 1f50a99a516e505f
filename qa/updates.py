"""Changing the corpus while it is served: a document is written into (or removed from) the corpus folder
durably, the index is updated (:func:`with_files`: the file's documents as a new segment; :func:`refreshed`:
whatever changed in the folder) and the new engine swapped in; due merges of segments follow in the
background (:class:`BackgroundMerges`).

The folder stays the one source of truth: the index it gets is the one `qa index` would build from the
folder, so a restart, `qa index` and every worker process agree with it. An update
holds the index's build lock from its file change to the build that includes it (and updates of one
process run one at a time), so every build reads the folder with every acknowledged change in it, whichever
process made it. Files are changed through :class:`qa.confined.Folder`: never outside the corpus folder,
never through a link.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from qa import formats
from qa import index as index_mod
from qa.config import Settings
from qa.confined import Folder
from qa.engine import Engine, build_spec
from qa.formats import DocumentError, DocumentTooLarge, JsonTooDeep
from qa.ingest import IngestLimits, document_from_upload, read_corpus
from qa.types import Document

log = logging.getLogger(__name__)


class BadDocument(ValueError):
    """The id or the upload cannot be a document; the message says why."""


class UploadTooLarge(BadDocument):
    """The document is larger than ``Settings.max_document_bytes``."""


class UnreadableBody(BadDocument):
    """The body cannot be parsed at all (JSON nested too deep), like a malformed request body elsewhere."""


class UnknownDocument(KeyError):
    pass


@dataclass(frozen=True)
class UpdateResult:
    doc_id: str
    created: bool  # PUT: there was no such document before
    build: str  # the build now in service
    documents: int
    sentences: int


def validate_doc_id(doc_id: str) -> str:
    """``doc_id`` as the path of a document file inside the corpus folder (``qa.formats.check_file_id``: a
    relative path with a readable suffix, no ``..`` or hidden parts, no control or invisible characters,
    parts that fit a file name). Ids are checked, never sanitised."""
    try:
        return formats.check_file_id(doc_id).as_posix()
    except DocumentError as exc:
        raise BadDocument(str(exc)) from None


def upload_file_bytes(doc_id: str, body: bytes, content_type: str, limits: IngestLimits) -> bytes:
    """The bytes of the corpus file an upload becomes, checked by reading them exactly as ``load_corpus``
    would (``qa.ingest.document_from_upload``). The body is the file for ``text/plain``, ``text/markdown``
    and ``text/html``; a JSON body ``{"text", "title"?}`` becomes a text file whose first line is the
    title (a .txt or .md file's headline). Raises :class:`BadDocument` before anything is written."""
    try:
        if formats.media_suffix(content_type) == ".json":
            if doc_id.lower().endswith(formats.HTML_SUFFIXES):
                raise DocumentError("send a web page as text/html")
            _, text, meta = formats.parse_record(formats.decode_text(body))
            if meta.url or meta.published:
                raise DocumentError("a text file keeps only a title and the text: url and published are kept "
                                    "by a .jsonl corpus file")
            if meta.title and ("\n" in meta.title or "\r" in meta.title):
                raise DocumentError("the title is one line of text")
            body = ((meta.title.strip() + "\n\n") if meta.title and meta.title.strip() else "").encode() + text.encode()
            content_type = "text/plain"
        document_from_upload(doc_id, body, content_type, limits)
    except DocumentTooLarge as exc:
        raise UploadTooLarge(str(exc)) from None
    except JsonTooDeep as exc:
        raise UnreadableBody(str(exc)) from None
    except DocumentError as exc:
        raise BadDocument(str(exc)) from None
    return body


def corpus_signature(folder: Path) -> tuple:
    """Path, size and modification time of every document file under ``folder`` (subfolders included, hidden
    names skipped, as ``load_corpus`` reads it): what changes when a file is added, changed or removed. About
    a stat per file, so polling it every second is cheap even at 100,000 files."""
    out = []
    pending = [(folder, "")]
    while pending:
        here, prefix = pending.pop()
        try:
            entries = list(os.scandir(here))
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    pending.append((Path(entry.path), f"{prefix}{entry.name}/"))
                elif entry.name.lower().endswith(formats.SUFFIXES):
                    st = entry.stat()
                    out.append((prefix + entry.name, st.st_size, st.st_mtime_ns))
            except OSError:
                continue
    return tuple(sorted(out))


def settled_documents(docs: list[Document], in_service: dict[str, Document], folder: Path, quiet: float,
                      now: float) -> list[Document]:
    """``docs`` (the folder's) with the documents of every file modified less than ``quiet`` seconds from
    ``now`` as ``in_service`` has them (none, for a new file): a file another program is still writing is not
    indexed half way, whichever update builds the index meanwhile (``qa serve --watch``). Uploads are written
    whole and dated ``quiet`` seconds back (:meth:`Updater.put`), so they count as settled at once."""
    if quiet <= 0:
        return docs
    unsettled = set()
    for file_id in {formats.file_of(d.doc_id) for d in docs}:
        try:
            if abs(now - os.stat(folder / file_id).st_mtime) < quiet:
                unsettled.add(file_id)
        except OSError:  # removed since it was read: the next look sees that
            continue
    if not unsettled:
        return docs
    kept = [d for d in docs if formats.file_of(d.doc_id) not in unsettled]
    kept += [d for d in in_service.values() if formats.file_of(d.doc_id) in unsettled]
    return sorted(kept, key=lambda d: d.doc_id)


# -- applying changes to an engine's index ------------------------------------------------------------------


def refreshed(engine: Engine, progress: Callable[[str, int, int], None] | None = None, *,
              select: Callable[[list[Document]], list[Document]] | None = None) -> Engine:
    """An engine over the corpus folder as it is now: a change since the published index is indexed
    (:func:`qa.index.index_change`: a small one as a segment, a large one by a build) and published;
    ``engine`` itself when nothing changed. It shares ``engine``'s models, conversation store and loaded
    segments.

    The folder is read with the build lock held: a change another process made (and acknowledged) while
    this one waited is then in what is built, never overwritten by a build of the folder as it was.
    ``select`` chooses what of the folder's documents to index (:func:`settled_documents`)."""
    target, spec = engine.settings.index_dir(), build_spec(engine.settings)
    with index_mod.build_lock(target):
        base = published(engine)
        corpus = read_corpus(engine.settings.corpus_dir, IngestLimits.from_settings(engine.settings))
        docs = corpus.documents if select is None else select(corpus.documents)
        current, why = index_mod.index_is_current(target, docs, spec, corpus.skipped)
        if not current:
            log.info("updating the index (%s)", why)
            index_mod.index_change(target, base.index, docs, corpus.skipped, spec, engine.query_encoder, progress,
                                   segment_sentences=engine.settings.build_segment_sentences)
        return _after(engine, base)


def with_files(engine: Engine, file_ids: list[str]) -> Engine:
    """An engine with the folder's files ``file_ids`` indexed as they are now (added, replaced or removed),
    reading only them (:func:`qa.index.apply_files`): an upload or a deletion through the API."""
    target, s = engine.settings.index_dir(), engine.settings
    with index_mod.build_lock(target):
        base = published(engine)
        if not index_mod.apply_files(target, base.index, s.corpus_dir, file_ids, build_spec(s), engine.query_encoder,
                                     IngestLimits.from_settings(s)):
            return refreshed(base)
        return _after(engine, base)


def published(engine: Engine) -> Engine:
    """``engine``, or one over the index published since (another process's update, a merge) sharing its
    loaded segments: what an update applies to."""
    target = engine.settings.index_dir()
    if index_mod.published_build(target) == engine.index.path.name:
        return engine
    return engine.with_index(index_mod.load(target, nprobe=engine.settings.ann_nprobe,
                                            loaded=index_mod.segments_of(engine.index)))


def _after(engine: Engine, base: Engine) -> Engine:
    """The engine over what is published after an update made over ``base``; an intermediate ``base`` (neither
    ``engine`` nor the result) lets its index go."""
    fresh = published(base)
    if base is not engine and fresh is not base and base.index.lease is not None:
        base.index.lease.release()
    return fresh


def merge_due(engine: Engine) -> int:
    """Publish the merges of segments the policy finds due (qa/index/merge.py); how many (0 when another
    process merges). ``engine`` is not changed: load the published index to serve them."""
    s = engine.settings
    return index_mod.merge_due(s.index_dir(), engine.index, build_spec(s), nprobe=s.ann_nprobe,
                               ann_min_passages=s.ann_min_passages, max_sentences=s.build_segment_sentences)


class IndexUpdates(Protocol):
    """How a service's index takes changes: one index folder (:class:`LocalIndex`) or the shards of a
    sharded index (``qa.cluster.updates.ShardedIndex``). The service code (:class:`Updater`,
    :class:`BackgroundMerges`, ``qa.api.state``) is the same for both."""

    def lock(self, settings: Settings) -> AbstractContextManager: ...  # every process's changes, one at a time

    def published_name(self, settings: Settings) -> str | None: ...  # what is published now

    def name_of(self, engine: Engine) -> str: ...  # what ``engine`` serves, named as published_name names it

    def published(self, engine: Engine) -> Engine: ...

    def with_files(self, engine: Engine, file_ids: list[str]) -> Engine: ...

    def refreshed(self, engine: Engine, select: Callable[[list[Document]], list[Document]] | None = None) -> Engine: ...

    def merge_due(self, engine: Engine) -> int: ...


class LocalIndex:
    """:class:`IndexUpdates` of the index folder ``settings.index_dir()`` (this module's functions)."""

    def lock(self, settings: Settings) -> AbstractContextManager:
        return index_mod.build_lock(settings.index_dir())

    def published_name(self, settings: Settings) -> str | None:
        return index_mod.published_build(settings.index_dir())

    def name_of(self, engine: Engine) -> str:
        return engine.index.path.name

    def published(self, engine: Engine) -> Engine:
        return published(engine)

    def with_files(self, engine: Engine, file_ids: list[str]) -> Engine:
        return with_files(engine, file_ids)

    def refreshed(self, engine: Engine, select: Callable[[list[Document]], list[Document]] | None = None) -> Engine:
        return refreshed(engine, select=select)

    def merge_due(self, engine: Engine) -> int:
        return merge_due(engine)


def updates_of(state) -> IndexUpdates:
    """The :class:`IndexUpdates` of a service's engine holder: its own (``state.updates``), else one folder's."""
    return getattr(state, "updates", None) or LocalIndex()


class Updater:
    """Applies document updates to a service's engine holder (an object with ``settings`` and a
    swappable ``engine``, e.g. ``qa.api.state.ServiceState``). ``busy`` while one runs."""

    def __init__(self, state):
        self.state = state
        self.index = updates_of(state)
        self._lock = threading.Lock()
        self.merges = BackgroundMerges(state)

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    @property
    def folder(self) -> Path:
        return self.state.settings.corpus_dir

    @contextmanager
    def _changing(self) -> Iterator[Folder]:
        """Held from a change of the folder to the swap of the engine that includes it: this process's
        updates one at a time, and every process's builds after it (the build lock)."""
        with self._lock, self.index.lock(self.state.settings):
            yield Folder(self.folder)

    def put(self, doc_id: str, body: bytes, content_type: str) -> UpdateResult:
        """Store the upload as ``doc_id`` and answer from it: returns once the engine in service has it.
        A bad upload raises :class:`BadDocument` before anything is written; a path the folder cannot
        take raises :class:`qa.confined.Refused` and writes nothing."""
        name = validate_doc_id(doc_id)
        data = upload_file_bytes(name, body, content_type, IngestLimits.from_settings(self.state.settings))
        with self._changing() as corpus:
            before = corpus.read(name)
            made = corpus.write(name, data, mtime_ns=self._settled_now())

            def undo() -> None:
                if before is not None:
                    corpus.write(name, before, mtime_ns=self._settled_now())
                else:
                    corpus.remove(name)
                    corpus.remove_folders(made)

            self._refresh_or_undo(undo, name)
            result = self._result(name, created=before is None)
        self.merges.request()
        return result

    def delete(self, doc_id: str) -> UpdateResult:
        name = validate_doc_id(doc_id)
        with self._changing() as corpus:
            before = corpus.read(name)
            if before is None:
                raise UnknownDocument(name)
            corpus.remove(name)
            self._refresh_or_undo(lambda: corpus.write(name, before, mtime_ns=self._settled_now()), name)
            result = self._result(name, created=False)
        self.merges.request()
        return result

    def refresh(self) -> bool:
        """Bring the engine in service up to date with the folder; whether it changed."""
        with self._changing():
            engine = self.state.engine
            if engine is None:
                return False
            fresh = self.index.refreshed(engine, select=self._settled(engine))
            self.state.engine = fresh  # the swap: one reference assignment
        if fresh is not engine:
            self.merges.request()
        return fresh is not engine

    def _refresh_or_undo(self, undo: Callable[[], None], name: str) -> None:
        """Index the changed file ``name`` (only it is read); if that fails, put the folder back as it was so
        it agrees with the index."""
        engine = self.state.engine
        if engine is None:
            raise RuntimeError("the engine is not loaded yet")
        try:
            self.state.engine = self.index.with_files(engine, [name])
        except BaseException:
            try:
                undo()
            except Exception as exc:  # the error to report is the update's own
                log.error("could not undo a failed update of the corpus folder: %s", exc)
            raise

    @property
    def _quiet(self) -> float:
        """How long a file must stay unchanged to be indexed: ``watch_quiet_s`` when the folder is watched
        (other programs write there); 0 otherwise."""
        settings = self.state.settings
        return settings.watch_quiet_s if settings.watch else 0.0

    def _settled(self, engine) -> Callable[[list[Document]], list[Document]] | None:
        if not self._quiet:
            return None
        return lambda docs: settled_documents(docs, engine.index.documents, self.folder, self._quiet, time.time())

    def _settled_now(self) -> int | None:
        """The modification time an upload is written with: ``quiet`` seconds back, as it is whole already."""
        return time.time_ns() - int(self._quiet * 1e9) if self._quiet else None

    def _result(self, name: str, *, created: bool) -> UpdateResult:
        engine = self.state.engine
        m = engine.index.manifest
        return UpdateResult(name, created, self.index.name_of(engine), m["documents"], m["sentences"])


class BackgroundMerges:
    """Merges the index's segments in a thread of its own after updates (:func:`merge_due`: the merge
    policy of qa/index/merge.py), so that neither questions nor updates wait for a merge; each merge is
    published, and the service then loads it, sharing the segments it holds (``refresh_to_published``)."""

    def __init__(self, state):
        self.state = state
        self.index = updates_of(state)
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._start = threading.Lock()
        self.merged = 0  # merges this process published

    def request(self) -> None:
        """Check for due merges soon (an update was published)."""
        self._wake.set()
        with self._start:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="qa-merge", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while self._wake.wait():
            self._wake.clear()
            engine = self.state.engine
            if engine is None:
                continue
            try:
                done = self.index.merge_due(engine)
            except Exception as exc:  # the segments stay as they are; the next update tries again
                log.warning("merging the index's segments failed: %s", exc)
                continue
            if done:
                self.merged += done
                self.state.refresh_to_published(self.state.engine)


class SettledChanges:
    """When a watched folder's change is indexed: once its signature (:func:`corpus_signature`) differs from
    the one last indexed and has then stayed the same for ``quiet`` seconds, so that a file still being
    written is not indexed half way. Fed one look at the folder at a time (``due``), then told what was
    indexed (``indexed``)."""

    def __init__(self, indexed: tuple, quiet: float, now: float):
        self.quiet = quiet
        self._indexed = indexed
        self._last, self._since = indexed, now

    def due(self, signature: tuple, now: float) -> bool:
        if signature != self._last:  # changed since the last look: the quiet interval starts again
            self._last, self._since = signature, now
        return signature != self._indexed and now - self._since >= self.quiet

    def indexed(self, signature: tuple) -> None:
        self._indexed = signature


def watch_folder(updater: Updater, every: float, quiet: float = 0.0) -> threading.Event:
    """Poll the corpus folder every ``every`` seconds and update the index once its files changed and have
    then stayed the same (names, sizes, modification times) for ``quiet`` seconds (``qa serve --watch``,
    ``Settings.watch_quiet_s``; :class:`SettledChanges`). Set the returned event to stop."""
    stop = threading.Event()
    # taken now: a change made once this returns is noticed
    changes = SettledChanges(corpus_signature(updater.folder), quiet, time.monotonic())

    def loop() -> None:
        while not stop.wait(every):
            now = corpus_signature(updater.folder)
            if not changes.due(now, time.monotonic()) or updater.state.engine is None:
                continue
            try:
                if updater.refresh():
                    log.info("the corpus folder changed: the index was updated")
            except Exception as exc:  # logged; tried again at the next change
                log.error("could not update the index after the corpus folder changed: %s", exc)
            changes.indexed(now)

    threading.Thread(target=loop, name="qa-corpus-watch", daemon=True).start()
    return stop

"""Changing the corpus while it is served: a document is written into (or removed from) the corpus folder
durably, the index is updated incrementally (``Engine.refreshed``) and the new engine swapped in.

The folder stays the one source of truth: an update is a file change followed by the same incremental
build that `qa index` does, so a restart, `qa index` and every worker process agree with it. Updates of
one process run one at a time; the build lock orders them with other processes' builds.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from qa.ingest import content_blocks
from qa.types import Document

log = logging.getLogger(__name__)

DOCUMENT_SUFFIXES = (".txt",)  # the formats a corpus folder is read in (qa/ingest.py load_corpus)
_DOC_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


class BadDocument(ValueError):
    """The id or the upload cannot be a document; the message says why."""


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
    """``doc_id`` as a file name of the corpus folder: one plain name (letters, digits, ``._-``; no path,
    no ``..``) with a document suffix. Ids are checked, never sanitised into something else."""
    if not _DOC_ID.fullmatch(doc_id) or ".." in doc_id:
        raise BadDocument("a document id is a file name: letters, digits, '.', '_' and '-', starting with a "
                          "letter or digit, no '..', at most 200 characters")
    if not doc_id.endswith(DOCUMENT_SUFFIXES):
        raise BadDocument(f"a document id ends with {' or '.join(DOCUMENT_SUFFIXES)}")
    return doc_id


def document_from_upload(doc_id: str, body: bytes, content_type: str) -> tuple[Document, bytes]:
    """The document an upload makes and the bytes of its file. ``text/plain``: the body is the file.
    ``application/json``: ``{"text", "title"?}``; a title becomes the file's first line (a ``.txt`` file's
    headline). Refused (:class:`BadDocument`) unless it is UTF-8 text with some content."""
    kind = content_type.split(";")[0].strip().lower()
    if kind == "application/json":
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadDocument(f"malformed JSON: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("text"), str):
            raise BadDocument('a JSON document is an object with a "text" string')
        extra = set(data) - {"text", "title"}
        if extra:
            raise BadDocument(f"a {doc_id.rsplit('.', 1)[-1]} document holds only text and title, not "
                              f"{', '.join(sorted(extra))}")
        title = data.get("title")
        if title is not None and (not isinstance(title, str) or "\n" in title or "\r" in title):
            raise BadDocument("the title is one line of text")
        body = ((title.strip() + "\n\n") if title and title.strip() else "").encode() + data["text"].encode()
    elif kind != "text/plain":
        raise BadDocument("send the document as text/plain or application/json")
    if b"\x00" in body:
        raise BadDocument("the document is binary, not text")
    try:
        raw = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadDocument(f"the document is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    blocks = content_blocks(raw)
    if not blocks:
        raise BadDocument("the document has no text")
    return Document(doc_id, blocks[0].text, raw), body


def write_document(folder: Path, name: str, data: bytes) -> None:
    """Write ``folder/name`` so that it is either the old file or the whole new one, also after a crash:
    a temporary file (hidden, not a document suffix) written and fsynced, renamed over the name, and the
    folder fsynced so the rename itself is on disk."""
    path = folder / validate_doc_id(name)
    tmp = folder / f".{name}.{uuid.uuid4().hex[:8]}.part"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_folder(folder)


def remove_document(folder: Path, name: str) -> None:
    (folder / validate_doc_id(name)).unlink()
    _fsync_folder(folder)


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def corpus_signature(folder: Path) -> tuple:
    """Name, size and modification time of every document file: what changes when a file is added,
    changed or removed. About a stat per file, so polling it every second is cheap even at 100,000 files."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return ()
    out = []
    for entry in entries:
        if entry.name.endswith(DOCUMENT_SUFFIXES) and not entry.name.startswith("."):
            try:
                st = entry.stat()
            except OSError:
                continue
            out.append((entry.name, st.st_size, st.st_mtime_ns))
    return tuple(sorted(out))


class Updater:
    """Applies document updates to a service's engine holder (an object with ``settings`` and a
    swappable ``engine``, e.g. ``qa.api.ServiceState``). ``busy`` while one runs."""

    def __init__(self, state):
        self.state = state
        self._lock = threading.Lock()

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    @property
    def folder(self) -> Path:
        return self.state.settings.corpus_dir

    def put(self, doc_id: str, body: bytes, content_type: str) -> UpdateResult:
        """Store the upload as ``doc_id`` and answer from it: returns once the engine in service has it.
        A bad upload raises :class:`BadDocument` before anything is written."""
        name = validate_doc_id(doc_id)
        _, data = document_from_upload(name, body, content_type)
        with self._lock:
            path = self.folder / name
            before = path.read_bytes() if path.is_file() else None
            write_document(self.folder, name, data)
            self._refresh_or_undo(lambda: write_document(self.folder, name, before) if before is not None
                                  else remove_document(self.folder, name))
            return self._result(name, created=before is None)

    def delete(self, doc_id: str) -> UpdateResult:
        name = validate_doc_id(doc_id)
        with self._lock:
            path = self.folder / name
            if not path.is_file():
                raise UnknownDocument(name)
            before = path.read_bytes()
            remove_document(self.folder, name)
            self._refresh_or_undo(lambda: write_document(self.folder, name, before))
            return self._result(name, created=False)

    def refresh(self) -> bool:
        """Bring the engine in service up to date with the folder; whether it changed."""
        with self._lock:
            engine = self.state.engine
            if engine is None:
                return False
            fresh = engine.refreshed()
            self.state.engine = fresh  # the swap: one reference assignment
            return fresh is not engine

    def _refresh_or_undo(self, undo: Callable[[], None]) -> None:
        """Update the index; if that fails, put the folder back as it was so it agrees with the index."""
        engine = self.state.engine
        if engine is None:
            raise RuntimeError("the engine is not loaded yet")
        try:
            self.state.engine = engine.refreshed()
        except BaseException:
            undo()
            raise

    def _result(self, name: str, *, created: bool) -> UpdateResult:
        m = self.state.engine.index.manifest
        return UpdateResult(name, created, self.state.engine.index.path.name, m["documents"], m["sentences"])


def watch_folder(updater: Updater, every: float) -> threading.Event:
    """Poll the corpus folder every ``every`` seconds and update the index when its files changed
    (``qa serve --watch``). Set the returned event to stop."""
    stop = threading.Event()

    def loop() -> None:
        seen = corpus_signature(updater.folder)
        while not stop.wait(every):
            now = corpus_signature(updater.folder)
            if now == seen or updater.state.engine is None:
                continue
            try:
                if updater.refresh():
                    log.info("the corpus folder changed: the index was updated")
                seen = now
            except Exception as exc:  # logged; tried again at the next change
                log.error("could not update the index after the corpus folder changed: %s", exc)
                seen = now

    threading.Thread(target=loop, name="qa-corpus-watch", daemon=True).start()
    return stop

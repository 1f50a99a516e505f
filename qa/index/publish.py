"""An index folder's builds: the ``current`` link to the one in service, replaced atomically, and the
build lock that makes processes sharing the folder build one after the other."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from qa import leases

log = logging.getLogger(__name__)


CURRENT = "current"


TMP_PREFIX = ".tmp-"  # a build is written into TMP_PREFIX + its name, then renamed
MERGING = ".merging"  # where a merge writes its segment, out of reach of builds and publishes, until it is published


def referenced(folder: Path) -> set[str]:
    """The folders a published folder needs: itself, and the segments a generation lists
    (qa/index/segments.py)."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {folder.name}
    return {folder.name, *(e["name"] for e in manifest.get("segments", []) if isinstance(e, dict) and "name" in e)}


def publish(target: Path, build_dir: Path) -> None:
    """Point ``target/current`` at ``build_dir`` (a build, or a generation of segments) atomically, then
    remove the builds and generations it does not need and no process holds a lease on (:mod:`qa.leases`: a
    server still loading or serving one keeps it; a later publish removes it once its readers have moved).
    Call with :func:`build_lock` held."""
    link = target / f".{CURRENT}-{uuid.uuid4().hex[:8]}"
    os.symlink(build_dir.name, link)
    os.replace(link, target / CURRENT)
    keep = referenced(build_dir)
    for old in [*target.glob("build-*"), *target.glob("gen-*")]:
        if old.name not in keep:
            try:
                leases.remove_unleased(old, trash=target / f"{TMP_PREFIX}{old.name}")
            except OSError as exc:  # the new build is published whatever happens to an old one
                log.warning("could not remove the old build %s: %s", old.name, exc)


def published_build(target: Path) -> str | None:
    """The name of the build ``target/current`` points at (None when nothing is published): a cheap check
    of whether another process has published a new build since this one loaded its index."""
    try:
        return os.readlink(target / CURRENT)
    except OSError:
        return None


_locks_held = threading.local()  # the build locks the current thread holds (their lock files)


@contextmanager
def build_lock(target: Path) -> Iterator[None]:
    """Held while ``target`` is checked and built, so that processes sharing the folder (a server's worker
    processes, `qa index` beside a running server) build it once, one after the other; a document update
    holds it from its file change to the build that includes it. The lock is the kernel's (flock): it is
    released when its holder exits, however it exits. A thread that holds it may take it again (the outer
    hold decides when it is released); other threads of the process wait as other processes do.

    Whoever holds it is the only builder, so a temporary build folder found then was left by a build that
    was killed: it is removed."""
    target.mkdir(parents=True, exist_ok=True)
    lock_file = str((target / ".build.lock").resolve())
    held = _locks_held.__dict__.setdefault("files", set())
    if lock_file in held:
        yield
        return
    with open(lock_file, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        held.add(lock_file)
        try:
            for stale in target.glob(f"{TMP_PREFIX}build-*"):
                shutil.rmtree(stale, ignore_errors=True)
            yield
        finally:
            held.discard(lock_file)


@contextmanager
def merge_lock(target: Path) -> Iterator[bool]:
    """Held by the one process that merges the segments of ``target`` (qa/index/segments.py); yields whether
    this caller got it: a merge never waits for another, the holder merges whatever is due. Whoever gets it
    removes what a merge that was killed left in ``MERGING``."""
    staging = target / MERGING
    staging.mkdir(parents=True, exist_ok=True)
    with open(target / ".merge.lock", "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            for stale in staging.iterdir():
                shutil.rmtree(stale, ignore_errors=True)
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def build_running(target: Path) -> bool:
    """Whether some process (this one included) holds the build lock of ``target``: an index build or
    update is in progress."""
    lock = target / ".build.lock"
    if not lock.exists():
        return False
    with open(lock, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
        return False

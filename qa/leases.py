"""Reader leases on folders that another process may delete (a build folder of the index).

A reader takes a *shared* lease (``flock(LOCK_SH)`` on the folder's ``.lease`` file) before it reads the
folder and keeps it for as long as it may read there; whoever retires folders removes one only when it can
take the lease *exclusively*, i.e. no process holds it. The kernel releases a lease when its holder exits,
however it exits, so a killed reader never pins a folder for ever.

The folder is renamed away (to ``trash``) before it is deleted, so a removal cut short by a crash leaves
a folder under a name nobody reads, never a half-deleted one under its own name; a reader that took the
lease while the folder was being removed finds it gone (:class:`FolderGone`) and reads whatever replaced it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import weakref
from pathlib import Path

LEASE_FILE = ".lease"


class FolderGone(FileNotFoundError):
    """The folder was removed (or is being removed) before its lease could be taken."""


class Lease:
    """A shared lease on ``folder``, held until :meth:`release` or until the object is garbage."""

    def __init__(self, folder: Path, fd: int | None):
        self.folder = folder
        self._fd = fd
        self._finalizer = weakref.finalize(self, os.close, fd) if fd is not None else None

    @property
    def held(self) -> bool:
        return self._finalizer is not None and self._finalizer.alive

    def release(self) -> None:
        if self._finalizer is not None:
            self._finalizer()

    def __enter__(self) -> "Lease":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def take(folder: Path) -> Lease:
    """A shared lease on ``folder``; :class:`FolderGone` when it no longer exists or is being removed. On a
    folder this process may not write (a read-only index) there is nothing to lease and nobody can remove
    it: the lease is empty."""
    path = Path(folder) / LEASE_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    except FileNotFoundError:
        raise FolderGone(f"{folder} is gone") from None
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return Lease(Path(folder), None)
        raise
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # waits only while a remover holds it, i.e. while it deletes
        if os.fstat(fd).st_ino != os.stat(path, follow_symlinks=False).st_ino:
            raise FileNotFoundError
    except FileNotFoundError:
        os.close(fd)
        raise FolderGone(f"{folder} was removed") from None
    except BaseException:
        os.close(fd)
        raise
    return Lease(Path(folder), fd)


def remove_unleased(folder: Path, trash: Path) -> bool:
    """Delete ``folder`` unless a lease on it is held: renamed to ``trash`` (same file system), then removed.
    Whether it was removed (or already gone)."""
    path = Path(folder) / LEASE_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    except FileNotFoundError:
        return not Path(folder).exists()
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a reader holds it: removed by a later call, once its readers have moved
        os.rename(folder, trash)
        shutil.rmtree(trash, ignore_errors=True)
        return True
    finally:
        os.close(fd)


def leased(folder: Path) -> bool:
    """Whether some process holds a lease on ``folder`` now."""
    try:
        fd = os.open(Path(folder) / LEASE_FILE, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)

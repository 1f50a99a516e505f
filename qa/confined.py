"""Writing and removing files inside a folder without ever leaving it.

Every part of a path is opened relative to the descriptor of the folder before it (``dir_fd``) with
``O_NOFOLLOW``, so a link planted inside the folder, to a folder or a file, anywhere on the path, is refused
instead of followed, whatever changes between a check and its use; the final file is written under a short
temporary name (``O_CREAT | O_EXCL | O_NOFOLLOW``, so it never opens an existing file or link) and renamed
over the name inside the same folder descriptor. Nothing is created or removed outside the folder, and a
write that fails leaves nothing behind: no temporary file, no folder it made.

Paths are relative POSIX paths whose names were checked already (``qa.formats.check_file_id``). A name
that differs from an existing one of the same folder only in case or Unicode form is refused: on many file
systems and to every reader they are the same name. Refusals are :class:`Refused` with a message fit for
a client that names no server path.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
import unicodedata
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

TEMP_PREFIX = ".qa-"  # hidden: a corpus reader skips it; 4 + 16 + 4 bytes fit any file system's names
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # a pipe put in its place never blocks


class Refused(ValueError):
    """The path cannot be written or removed as asked; the message says why."""


class Conflict(Refused):
    """The path collides with what the folder holds: a folder or a link where a file should be, a file
    where a folder should be, a name that differs from another only in case."""


class NameTooLong(Refused):
    """The file system refuses the name's length."""


class NotPermitted(Refused):
    """The server may not write there."""


def same_name_key(name: str) -> str:
    """What two names that look the same share: their compatibility-normalised, case-folded form."""
    return unicodedata.normalize("NFKC", name).casefold()


class Folder:
    """A folder whose files are written and removed by relative path without leaving it."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def read(self, rel: str) -> bytes | None:
        """The bytes of the file ``rel``, or None when there is none."""
        parts = rel.split("/")
        try:
            with self._folders(parts[:-1], create=False) as (parent, _):
                existing = _lstat(parent, parts[-1], rel)
                if existing is not None and not stat.S_ISREG(existing.st_mode):
                    raise Conflict(f"{rel!r} is {_kind(existing)}, not a document file")
                fd = _refusing(lambda: os.open(parts[-1], _READ_FLAGS, dir_fd=parent), rel)
        except FileNotFoundError:
            return None
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):  # replaced since it was looked at
                raise Conflict(f"{rel!r} is not a document file")
            return fh.read()

    def write(self, rel: str, data: bytes, *, mtime_ns: int | None = None) -> list[str]:
        """Make ``rel`` hold ``data``, atomically and durably: the old file or the whole new one, also after
        a crash (written, fsynced, renamed over the name, the folder fsynced), with modification time
        ``mtime_ns`` when given. Missing folders on the way are made; returns them (outermost first), so
        that an undo can remove them again."""
        parts = rel.split("/")
        name = parts[-1]
        with self._folders(parts[:-1], create=True) as (parent, made):
            try:
                existing = _lstat(parent, name, rel)
                if existing is None:
                    _refuse_look_alike(parent, name, rel)
                elif not stat.S_ISREG(existing.st_mode):
                    raise Conflict(f"{rel!r} is {_kind(existing)}, not a document file")
                _write_renamed(parent, name, data, rel, mtime_ns)
            except BaseException:
                self.remove_folders(made)
                raise
            return made

    def remove(self, rel: str) -> None:
        """Remove the file ``rel``; FileNotFoundError when there is none."""
        parts = rel.split("/")
        with self._folders(parts[:-1], create=False) as (parent, _):
            existing = _lstat(parent, parts[-1], rel)
            if existing is None:
                raise FileNotFoundError(rel)
            if not stat.S_ISREG(existing.st_mode):
                raise Conflict(f"{rel!r} is {_kind(existing)}, not a document file")
            _refusing(lambda: os.unlink(parts[-1], dir_fd=parent), rel)
            os.fsync(parent)

    # -- walking ----------------------------------------------------------------------------------------

    @contextmanager
    def _folders(self, parts: list[str], *, create: bool) -> Iterator[tuple[int, list[str]]]:
        """The descriptor of the folder ``parts`` name under the root, each part opened without following a
        link, and the folders made on the way (``create``; FileNotFoundError otherwise)."""
        made: list[str] = []
        with ExitStack() as stack:
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # the configured folder itself
            stack.callback(os.close, fd)
            for depth, part in enumerate(parts):
                here = "/".join(parts[: depth + 1])
                existing = _lstat(fd, part, here)  # to say what is in the way; the open below enforces it
                if existing is not None and not stat.S_ISDIR(existing.st_mode):
                    raise Conflict(f"{here!r} is {_kind(existing)}, not a folder")
                if existing is None:
                    if not create:
                        raise FileNotFoundError(here)
                    try:
                        _refuse_look_alike(fd, part, here)
                        _refusing(lambda: os.mkdir(part, 0o755, dir_fd=fd), here)
                    except BaseException:
                        self.remove_folders(made)
                        raise
                    made.append(here)
                    os.fsync(fd)
                try:
                    child = _refusing(lambda: os.open(part, _DIR_FLAGS, dir_fd=fd), here)
                except BaseException:
                    self.remove_folders(made)
                    raise
                stack.callback(os.close, child)
                fd = child
            yield fd, made

    def remove_folders(self, made: list[str]) -> None:
        """Remove the folders a :meth:`write` made (``made``, outermost first) that are still empty."""
        for here in reversed(made):
            *above, name = here.split("/")
            try:
                with self._folders(above, create=False) as (parent, _):
                    os.rmdir(name, dir_fd=parent)
                    os.fsync(parent)
            except OSError:  # not empty (someone else wrote there meanwhile), or gone: left as it is
                pass


def _write_renamed(parent: int, name: str, data: bytes, rel: str, mtime_ns: int | None) -> None:
    tmp = f"{TEMP_PREFIX}{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if mtime_ns is not None:
                os.utime(fh.fileno(), ns=(mtime_ns, mtime_ns))
            os.fsync(fh.fileno())
        _refusing(lambda: os.rename(tmp, name, src_dir_fd=parent, dst_dir_fd=parent), rel)
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=parent)
        except FileNotFoundError:
            pass
        raise
    os.fsync(parent)  # the rename itself on disk


def _lstat(parent: int, name: str, rel: str) -> os.stat_result | None:
    try:
        return _refusing(lambda: os.stat(name, dir_fd=parent, follow_symlinks=False), rel)
    except FileNotFoundError:
        return None


def _refuse_look_alike(parent: int, name: str, rel: str) -> None:
    """Refuse a new ``name`` when the folder holds another that differs from it only in case or form."""
    key = same_name_key(name)
    for other in os.listdir(parent):
        if other != name and same_name_key(other) == key:
            raise Conflict(f"{rel!r} differs from the existing {other!r} only in case or Unicode form")


def _kind(st: os.stat_result) -> str:
    if stat.S_ISLNK(st.st_mode):
        return "a symbolic link (links are never followed)"
    if stat.S_ISDIR(st.st_mode):
        return "a folder"
    return "a file" if stat.S_ISREG(st.st_mode) else "a special file"


def _refusing(call, rel: str):
    """``call()``, with the errors a path can cause turned into refusals that say which part and why."""
    try:
        return call()
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            raise NameTooLong(f"{rel!r} is too long a name for the corpus folder's file system") from None
        if exc.errno in (errno.ENOTDIR, errno.ELOOP):
            raise Conflict(f"{rel!r}: a part of its path is a file or a symbolic link, not a folder "
                           "(links are never followed)") from None
        if exc.errno == errno.EISDIR:
            raise Conflict(f"{rel!r} is a folder, not a document") from None
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise NotPermitted(f"the server may not change {rel!r}") from None
        raise

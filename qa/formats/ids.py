"""The id rule: which strings can name a document. One rule for the corpus folder's files (a file whose
path breaks it is skipped) and for every route, so each id in an index can be opened, replaced and deleted,
and no id can be made to look like another."""

from __future__ import annotations

import unicodedata
from pathlib import PurePosixPath

from qa.formats.base import BAD_RECORD, DocumentError

# Separates a .jsonl file's id from the id of a record inside it. Files whose path holds it are refused,
# so a record's id can never equal a file's.
RECORD_SEPARATOR = "#"
MAX_ID_CHARS = 255  # a file's id (its path in the corpus folder), and a .jsonl record's own id, in characters
MAX_DOC_ID_CHARS = 2 * MAX_ID_CHARS + len(RECORD_SEPARATOR)  # any document id: "<file id>#<record id>"
MAX_NAME_BYTES = 255  # one part of a path, in UTF-8 bytes: NAME_MAX of Linux file systems
MAX_ID_PARTS = 32  # folders deep
# Format characters a script needs: zero-width non-joiner and joiner (Persian, Indic scripts, emoji).
_SCRIPT_FORMAT_CHARACTERS = frozenset("\u200c\u200d")


def unsafe_character(text: str) -> str | None:
    """The first character of ``text`` that an id may not hold, or None: control characters (NUL, C0, C1),
    line and paragraph separators, lone surrogates, and invisible format characters (the bidirectional
    overrides and isolates, zero-width spaces, a byte-order mark), which can make one id look like
    another; the zero-width joiner and non-joiner, which scripts need, are allowed."""
    for c in text:
        category = unicodedata.category(c)
        if category in ("Cc", "Cs", "Zl", "Zp") or (category == "Cf" and c not in _SCRIPT_FORMAT_CHARACTERS):
            return c
    return None


def _describe(c: str) -> str:
    kind = "a control character" if unicodedata.category(c) == "Cc" else "an invisible or layout character"
    return f"{kind} (U+{ord(c):04X})"


def check_record_id(value: object) -> str:
    """A JSONL record's id as text: a non-empty string or integer of at most MAX_ID_CHARS characters,
    none of which :func:`unsafe_character` refuses."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise DocumentError("'id' must be a string or an integer", BAD_RECORD)
    rid = str(value)
    if not rid.strip() or len(rid) > MAX_ID_CHARS:
        raise DocumentError(f"'id' must be 1 to {MAX_ID_CHARS} characters", BAD_RECORD)
    bad = unsafe_character(rid)
    if bad is not None:
        raise DocumentError(f"'id' holds {_describe(bad)}", BAD_RECORD)
    return rid


def check_file_name(file_id: str) -> PurePosixPath:
    """A relative POSIX path that can name a corpus file, whatever its suffix. At most ``MAX_ID_CHARS``
    characters in at most ``MAX_ID_PARTS`` parts of at most ``MAX_NAME_BYTES`` UTF-8 bytes; no ``\\`` or
    ``#``; no part that is empty, ``.``, ``..``, hidden (``.`` first) or padded with spaces; no character
    :func:`unsafe_character` refuses. Refused otherwise, so an id from a request never reaches the file
    system as given."""
    if not file_id or len(file_id) > MAX_ID_CHARS:
        raise DocumentError(f"a document id is 1 to {MAX_ID_CHARS} characters")
    bad = unsafe_character(file_id)
    if bad is not None:
        raise DocumentError(f"a document id may not hold {_describe(bad)}")
    if "\\" in file_id:
        raise DocumentError("a document id may not hold '\\' (parts are separated by '/')")
    if RECORD_SEPARATOR in file_id:
        raise DocumentError(f"'{RECORD_SEPARATOR}' is reserved for documents inside .jsonl files")
    parts = file_id.split("/")
    if any(part in ("", ".", "..") or part.startswith(".") for part in parts):
        raise DocumentError("a document id is a relative path without '.', '..' or hidden parts")
    if len(parts) > MAX_ID_PARTS:
        raise DocumentError(f"a document id has at most {MAX_ID_PARTS} parts (folders deep)")
    if any(part != part.strip() for part in parts):
        raise DocumentError("a part of a document id may not begin or end with a space")
    if any(len(part.encode("utf-8")) > MAX_NAME_BYTES for part in parts):
        raise DocumentError(f"a part of a document id is at most {MAX_NAME_BYTES} bytes (UTF-8)")
    return PurePosixPath(file_id)


def check_document_id(doc_id: str) -> str:
    """Any id a document of an index can have: a file's (:func:`check_file_name`) or a .jsonl record's,
    ``<file id>#<record id>`` (:func:`check_record_id`). ``GET /documents/{id}`` refuses what no document
    can be called, and accepts every id an index holds."""
    file_id, separator, record_id = doc_id.partition(RECORD_SEPARATOR)
    check_file_name(file_id)
    if separator:
        check_record_id(record_id)
    return doc_id


def file_of(doc_id: str) -> str:
    """The id of the file a document comes from: itself, or the .jsonl file of a record."""
    return doc_id.partition(RECORD_SEPARATOR)[0]


def record_doc_id(file_id: str, record_id: str) -> str:
    """The document id of record ``record_id`` of the .jsonl file ``file_id``: never a file's id (file ids
    cannot hold the separator) and never a path (nothing is below a file)."""
    return f"{file_id}{RECORD_SEPARATOR}{record_id}"

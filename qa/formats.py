"""Document formats: the bytes of one file (or one upload) → documents with one canonical text each.

The canonical text is what citations point into (``doc.raw[s.start:s.end] == s.text``):

* ``.txt`` and ``.md``: the file itself, decoded from UTF-8 without newline translation;
* ``.html`` / ``.htm``: the article text that trafilatura extracts (navigation, share buttons, footers and
  "most read" lists are left out by the extractor, not by patterns over tags);
* ``.jsonl``: one document per line, ``{"id", "text", "title"?, "url"?, "published"?}``; the ``text`` field.

Every rejection is a :class:`DocumentError` whose message is fit for a user (it never holds a server path).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath


TEXT_SUFFIXES = (".txt", ".md")
HTML_SUFFIXES = (".html", ".htm")
JSONL_SUFFIX = ".jsonl"
SUFFIXES = (*TEXT_SUFFIXES, *HTML_SUFFIXES, JSONL_SUFFIX)
# Separates a .jsonl file's id from the id of a record inside it. Files whose path holds it are refused,
# so a record's id can never equal a file's.
RECORD_SEPARATOR = "#"
MAX_ID_CHARS = 255  # a file's id (its path in the corpus folder), and a .jsonl record's own id, in characters
MAX_DOC_ID_CHARS = 2 * MAX_ID_CHARS + len(RECORD_SEPARATOR)  # any document id: "<file id>#<record id>"
MAX_NAME_BYTES = 255  # one part of a path, in UTF-8 bytes: NAME_MAX of Linux file systems
MAX_ID_PARTS = 32  # folders deep
# Format characters a script needs: zero-width non-joiner and joiner (Persian, Indic scripts, emoji).
_SCRIPT_FORMAT_CHARACTERS = frozenset("\u200c\u200d")
MAX_JSON_DEPTH = 64  # nesting of a JSON upload or .jsonl line; a record needs 1

_MEDIA_TYPES = {"text/plain": ".txt", "text/markdown": ".md", "text/html": ".html", "application/json": ".json"}


class DocumentError(ValueError):
    """A document that cannot be read; the message says why in words a user can act on."""


class DocumentTooLarge(DocumentError):
    """A document over the configured size limit (``Settings.max_document_bytes``)."""


class JsonTooDeep(DocumentError):
    """JSON nested deeper than :data:`MAX_JSON_DEPTH`: refused before parsing (a parser recurses per level)."""


@dataclass(frozen=True, slots=True)
class Metadata:
    title: str | None = None
    url: str | None = None
    published: str | None = None


def decode_text(data: bytes) -> str:
    """UTF-8 text exactly as stored (no newline translation, so offsets stay exact); binary or other
    encodings are refused rather than guessed."""
    if b"\x00" in data:
        raise DocumentError("binary content (NUL bytes)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DocumentError(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if not text.strip():
        raise DocumentError("no text")
    return text


def check_size(size: int, limit: int) -> None:
    if size > limit:
        raise DocumentTooLarge(f"{size:,} bytes is over the limit of {limit:,} bytes")


def title_from_name(name: str) -> str:
    """A readable title from a file name: its stem with underscores and dashes as spaces."""
    stem = PurePosixPath(name).name
    for suffix in SUFFIXES:
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    return " ".join(re.sub(r"[_\-]+", " ", stem).split()) or stem


def extract_html(data: bytes) -> tuple[str, Metadata]:
    """The article text of an HTML page and its title/url/date, by trafilatura (offline: it is given the
    page, never a URL to fetch). Its main extractor only (``fast``): the fallbacks return navigation links
    of a page that has no article. The date is taken only from the page's own markup, not guessed."""
    import trafilatura

    if b"\x00" in data:
        raise DocumentError("binary content (NUL bytes)")
    found = trafilatura.bare_extraction(
        data, fast=True, with_metadata=True, include_comments=False, include_tables=True, favor_precision=True,
        date_extraction_params={"extensive_search": False, "original_date": True},
    )
    text = (found.text if found is not None else None) or ""
    if not text.strip():
        raise DocumentError("no article text found in the HTML")
    return text, Metadata(title=found.title or None, url=found.url or None, published=found.date or None)


def check_record_id(value: object) -> str:
    """A JSONL record's id as text: a non-empty string or integer, printable, at most MAX_ID_CHARS."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise DocumentError("'id' must be a string or an integer")
    rid = str(value)
    if not rid.strip() or len(rid) > MAX_ID_CHARS:
        raise DocumentError(f"'id' must be 1 to {MAX_ID_CHARS} characters")
    bad = unsafe_character(rid)
    if bad is not None:
        raise DocumentError(f"'id' holds {_describe(bad)}")
    return rid


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


def check_json_depth(data: bytes | str, limit: int = MAX_JSON_DEPTH) -> None:
    """Raise :class:`JsonTooDeep` when the arrays and objects of a JSON text nest deeper than ``limit``,
    found without parsing it: escaped backslashes and quotes are dropped, then every byte but brackets and
    quotes, then the strings; the depth is the running sum over the brackets left. Linear and in C (bytes
    methods, one regular expression, NumPy): a 40 MB body costs milliseconds, and no parser is asked to
    recurse a million levels. Malformed JSON is left to the parser."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return  # too few brackets to nest that deep, however they are laid out
    import numpy as np

    plain = raw.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _NOT_STRUCTURE)
    codes = np.frombuffer(_STRING.sub(b"", plain), dtype=np.uint8)
    opens = ((codes == ord("[")) | (codes == ord("{"))).view(np.int8)
    depth = np.cumsum(2 * opens - 1, dtype=np.int32)
    if len(depth) and int(depth.max()) > limit:
        raise JsonTooDeep(f"JSON nested deeper than {limit} levels")


_NOT_STRUCTURE = bytes(c for c in range(256) if c not in b'[]{}"')
_STRING = re.compile(rb'"[^"]*"')


def parse_record(line: bytes | str) -> tuple[str | None, str, Metadata]:
    """One JSON object ``{"id"?, "text", "title"?, "url"?, "published"?}`` → (id or None, text, metadata)."""
    check_json_depth(line)
    try:
        item = json.loads(line)
    except ValueError as exc:
        raise DocumentError(f"malformed JSON ({exc})") from None
    if not isinstance(item, dict):
        raise DocumentError("a JSON object is expected")
    text = item.get("text")
    if not isinstance(text, str) or not text.strip():
        raise DocumentError("'text' must be a non-empty string")
    meta = {}
    for key in ("title", "url", "published"):
        value = item.get(key)
        if value is not None and not isinstance(value, str):
            raise DocumentError(f"'{key}' must be a string")
        meta[key] = (value.strip() or None) if value is not None else None  # "" counts as absent
    rid = check_record_id(item["id"]) if "id" in item else None
    return rid, text, Metadata(**meta)


def read_jsonl(lines: Iterator[bytes], limit: int) -> Iterator[tuple[int, tuple[str, str, Metadata] | DocumentError]]:
    """The records of a .jsonl file as (line number, (id, text, metadata)), one per non-blank line in file
    order; a bad line gives a :class:`DocumentError` instead, so the caller can skip it and go on."""
    seen: set[str] = set()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            check_size(len(line), limit)
            rid, text, meta = parse_record(decode_text(line))
            if rid is None:
                raise DocumentError("'id' is missing")
            if rid in seen:
                raise DocumentError(f"duplicate id {rid!r}")
        except DocumentError as exc:
            yield number, exc
            continue
        seen.add(rid)
        yield number, (rid, text, meta)


def file_of(doc_id: str) -> str:
    """The id of the file a document comes from: itself, or the .jsonl file of a record."""
    return doc_id.partition(RECORD_SEPARATOR)[0]


def record_doc_id(file_id: str, record_id: str) -> str:
    """The document id of record ``record_id`` of the .jsonl file ``file_id``: never a file's id (file ids
    cannot hold the separator) and never a path (nothing is below a file)."""
    return f"{file_id}{RECORD_SEPARATOR}{record_id}"


def check_file_name(file_id: str) -> PurePosixPath:
    """A relative POSIX path that can name a corpus file, whatever its suffix: the id rule of every route
    and of the corpus folder's files (a file whose path breaks it is skipped, so every id in an index can be
    opened, replaced and deleted). At most ``MAX_ID_CHARS`` characters in at most ``MAX_ID_PARTS`` parts of
    at most ``MAX_NAME_BYTES`` UTF-8 bytes; no ``\\`` or ``#``; no part that is empty, ``.``, ``..``, hidden
    (``.`` first) or padded with spaces; no character :func:`unsafe_character` refuses. Refused otherwise,
    so an id from a request never reaches the file system as given."""
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


def check_file_id(doc_id: str) -> PurePosixPath:
    """A document id that names a file a client may write: :func:`check_file_name`, with a readable suffix
    (.jsonl files are changed as files on the server)."""
    path = check_file_name(doc_id)
    if path.suffix.lower() not in (*TEXT_SUFFIXES, *HTML_SUFFIXES):
        raise DocumentError(f"a document id ends with one of {', '.join((*TEXT_SUFFIXES, *HTML_SUFFIXES))}")
    return path


def check_document_id(doc_id: str) -> str:
    """Any id a document of an index can have: a file's (:func:`check_file_name`) or a .jsonl record's,
    ``<file id>#<record id>`` (:func:`check_record_id`). ``GET /documents/{id}`` refuses what no document
    can be called, and accepts every id an index holds."""
    file_id, separator, record_id = doc_id.partition(RECORD_SEPARATOR)
    check_file_name(file_id)
    if separator:
        check_record_id(record_id)
    return doc_id


def read_file_bytes(data: bytes, suffix: str) -> tuple[str, Metadata]:
    """The canonical text and metadata of one .txt/.md/.html file's bytes."""
    if suffix in HTML_SUFFIXES:
        return extract_html(data)
    return decode_text(data), Metadata()


def media_suffix(content_type: str) -> str:
    """The file suffix an upload's media type stands for (``.json`` for a JSON record)."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media not in _MEDIA_TYPES:
        raise DocumentError(f"unsupported content type {media or '(none)'!r}: use one of {', '.join(_MEDIA_TYPES)}")
    return _MEDIA_TYPES[media]

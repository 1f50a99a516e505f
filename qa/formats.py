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
MAX_ID_CHARS = 255

_MEDIA_TYPES = {"text/plain": ".txt", "text/markdown": ".md", "text/html": ".html", "application/json": ".json"}


class DocumentError(ValueError):
    """A document that cannot be read; the message says why in words a user can act on."""


class DocumentTooLarge(DocumentError):
    """A document over the configured size limit (``Settings.max_document_bytes``)."""


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
    if any(unicodedata.category(c) == "Cc" for c in rid):
        raise DocumentError("'id' holds control characters")
    return rid


def parse_record(line: bytes | str) -> tuple[str | None, str, Metadata]:
    """One JSON object ``{"id"?, "text", "title"?, "url"?, "published"?}`` → (id or None, text, metadata)."""
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


def record_doc_id(file_id: str, record_id: str) -> str:
    """The document id of record ``record_id`` of the .jsonl file ``file_id``: never a file's id (file ids
    cannot hold the separator) and never a path (nothing is below a file)."""
    return f"{file_id}{RECORD_SEPARATOR}{record_id}"


def check_file_id(doc_id: str) -> PurePosixPath:
    """A document id that names a file: a relative POSIX path, inside the folder, not hidden, with a
    readable suffix. Refused otherwise, so an id from a request never reaches the file system as given."""
    if not doc_id or len(doc_id) > MAX_ID_CHARS or any(unicodedata.category(c) == "Cc" for c in doc_id):
        raise DocumentError(f"a document id is 1 to {MAX_ID_CHARS} printable characters")
    if "\\" in doc_id or RECORD_SEPARATOR in doc_id:
        raise DocumentError(f"a document id may not hold '\\' or '{RECORD_SEPARATOR}'")
    path = PurePosixPath(doc_id)
    if path.is_absolute() or any(part in ("", ".", "..") or part.startswith(".") for part in doc_id.split("/")):
        raise DocumentError("a document id is a relative path without '.', '..' or hidden parts")
    if path.suffix.lower() not in (*TEXT_SUFFIXES, *HTML_SUFFIXES):
        raise DocumentError(f"a document id ends with one of {', '.join((*TEXT_SUFFIXES, *HTML_SUFFIXES))}")
    return path


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

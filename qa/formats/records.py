"""JSONL corpus files: one document per line, ``{"id", "text", "title"?, "url"?, "published"?, "author"?}``;
the canonical text of a record is its ``text`` field."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterator

from qa.formats.base import BAD_RECORD, EMPTY, DocumentError, Metadata, check_size, decode_text

# Separates a .jsonl file's id from the id of a record inside it. Files whose path holds it are refused,
# so a record's id can never equal a file's.
RECORD_SEPARATOR = "#"
MAX_ID_CHARS = 255
META_FIELDS = ("title", "url", "published", "author")


def check_record_id(value: object) -> str:
    """A JSONL record's id as text: a non-empty string or integer, printable, at most MAX_ID_CHARS."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise DocumentError("'id' must be a string or an integer", BAD_RECORD)
    rid = str(value)
    if not rid.strip() or len(rid) > MAX_ID_CHARS:
        raise DocumentError(f"'id' must be 1 to {MAX_ID_CHARS} characters", BAD_RECORD)
    if any(unicodedata.category(c) == "Cc" for c in rid):
        raise DocumentError("'id' holds control characters", BAD_RECORD)
    return rid


def parse_record(line: bytes | str) -> tuple[str | None, str, Metadata]:
    """One JSON object ``{"id"?, "text", "title"?, "url"?, "published"?, "author"?}`` → (id or None, text,
    metadata)."""
    try:
        item = json.loads(line)
    except ValueError as exc:
        raise DocumentError(f"malformed JSON ({exc})", BAD_RECORD) from None
    if not isinstance(item, dict):
        raise DocumentError("a JSON object is expected", BAD_RECORD)
    text = item.get("text")
    if not isinstance(text, str) or not text.strip():
        raise DocumentError("'text' must be a non-empty string", EMPTY if isinstance(text, str) else BAD_RECORD)
    meta = {}
    for key in META_FIELDS:
        value = item.get(key)
        if value is not None and not isinstance(value, str):
            raise DocumentError(f"'{key}' must be a string", BAD_RECORD)
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
                raise DocumentError("'id' is missing", BAD_RECORD)
            if rid in seen:
                raise DocumentError(f"duplicate id {rid!r}", BAD_RECORD)
        except DocumentError as exc:
            yield number, exc
            continue
        seen.add(rid)
        yield number, (rid, text, meta)


def record_doc_id(file_id: str, record_id: str) -> str:
    """The document id of record ``record_id`` of the .jsonl file ``file_id``: never a file's id (file ids
    cannot hold the separator) and never a path (nothing is below a file)."""
    return f"{file_id}{RECORD_SEPARATOR}{record_id}"



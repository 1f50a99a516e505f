"""JSONL corpus files: one document per line, ``{"id", "text", "title"?, "url"?, "published"?, "author"?}``;
the canonical text of a record is its ``text`` field."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

from qa.formats.base import BAD_RECORD, EMPTY, DocumentError, Metadata, check_size, decode_text
from qa.formats.ids import check_record_id

MAX_JSON_DEPTH = 64  # nesting of a JSON upload or .jsonl line; a record needs 1
META_FIELDS = ("title", "url", "published", "author")


class JsonTooDeep(DocumentError):
    """JSON nested deeper than :data:`MAX_JSON_DEPTH`: refused before parsing (a parser recurses per level)."""

    def __init__(self, message: str):
        super().__init__(message, BAD_RECORD)


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
    """One JSON object ``{"id"?, "text", "title"?, "url"?, "published"?, "author"?}`` → (id or None, text,
    metadata)."""
    check_json_depth(line)
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

"""What every format reader shares: the error a user reads, the metadata, and the text-and-blocks builder.

A reader turns one file's bytes into an :class:`Extracted`: the canonical text (what citations point
into), its metadata, and, when the format has structure (HTML, Word, OpenDocument, EPUB), the blocks of
that text (:class:`qa.types.Block`: paragraphs, headings, code, list items, table rows) so that sentence
splitting follows the document's structure instead of guessing it from line breaks.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from qa.types import Block

# Why a file of the corpus folder is not indexed (``Skipped.reason``, ``GET /documents/skipped``).
UNSUPPORTED = "unsupported type"
NOT_UTF8 = "not UTF-8"
BINARY = "binary"
EMPTY = "empty"
TOO_BIG = "too big"
NO_TEXT_LAYER = "no text layer"
ENCRYPTED = "encrypted"
DAMAGED = "damaged"
UNREADABLE = "unreadable"
OUTSIDE = "link out of the folder"
LINKED_FOLDER = "link to a folder"
HIDDEN = "hidden"
NAME_NOT_ALLOWED = "name not allowed"
BAD_RECORD = "bad record"
REASONS = (UNSUPPORTED, NOT_UTF8, BINARY, EMPTY, TOO_BIG, NO_TEXT_LAYER, ENCRYPTED, DAMAGED, UNREADABLE, OUTSIDE,
           LINKED_FOLDER, HIDDEN, NAME_NOT_ALLOWED, BAD_RECORD)


class DocumentError(ValueError):
    """A document that cannot be read; the message says why in words a user can act on (never a server
    path), ``reason`` is one of :data:`REASONS`."""

    def __init__(self, message: str, reason: str = DAMAGED):
        super().__init__(message)
        self.reason = reason


class DocumentTooLarge(DocumentError):
    """A document over the configured size limit (``Settings.max_document_bytes``)."""

    def __init__(self, message: str):
        super().__init__(message, TOO_BIG)


@dataclass(frozen=True, slots=True)
class Metadata:
    title: str | None = None
    url: str | None = None
    published: str | None = None  # as the source gives it, ISO 8601 where the format has a typed date
    author: str | None = None  # author or sender


@dataclass(frozen=True, slots=True)
class Extracted:
    """One document as a format reader gives it."""

    text: str
    meta: Metadata = field(default_factory=Metadata)
    blocks: tuple[Block, ...] | None = None  # the text's structure; None: read from its lines
    pages: tuple[int, ...] | None = None  # start offset of each page in ``text`` (PDF)


def decode_text(data: bytes) -> str:
    """UTF-8 text exactly as stored (no newline translation, so offsets stay exact); binary or other
    encodings are refused rather than guessed."""
    if b"\x00" in data:
        raise DocumentError("binary content (NUL bytes)", BINARY)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DocumentError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", NOT_UTF8) from None
    if not text.strip():
        raise DocumentError("no text", EMPTY)
    return text


def check_size(size: int, limit: int) -> None:
    if size > limit:
        raise DocumentTooLarge(f"{size:,} bytes is over the limit of {limit:,} bytes")


def clean_field(value: object) -> str | None:
    """A metadata value as one line of text, or None when it is empty."""
    if value is None:
        return None
    text = " ".join(str(value).split())
    text = "".join(c for c in text if unicodedata.category(c) not in ("Cc", "Cf"))
    return text or None


_CODE_MARK = re.compile(r"[^\w\s]")
_SPACE = re.compile(r"[ \t\r\n\f\v\u00a0\u2000-\u200a\u202f\u205f\u3000]+")


def inline_text(text: str) -> str:
    """Text as a browser lays out inline content: every run of white space is one space."""
    return _SPACE.sub(" ", text)


class TextBuilder:
    """Builds a canonical text block by block, recording each block's offsets.

    Blocks are separated by a blank line; ``line`` blocks (list items, table rows, lines broken by ``<br>``)
    by a single line break, so the text reads as the document looks. ``nobreak`` spans (inline code) are
    recorded inside the block they belong to; no sentence ends inside one.
    """

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._length = 0
        self.blocks: list[Block] = []
        self._separator = ""

    def add(self, text: str, kind: str = "body", *, nobreak: tuple[tuple[int, int], ...] = (),
            line: bool = False) -> None:
        """Append one block (``kind``: "title", "heading", "body" or "code"), stripped of outer white space;
        ``nobreak`` are (start, end) offsets within ``text``. A ``line`` block (list item, table row, a line
        broken by ``<br>``) of body text is an "item"."""
        if line and kind == "body":
            kind = "item"
        lead = len(text) - len(text.lstrip()) if kind != "code" else len(text) - len(text.lstrip("\r\n"))
        body = text.strip() if kind != "code" else text.strip("\r\n").rstrip()
        if not body.strip():
            return
        if self._parts:
            sep = "\n" if line and self._separator == "\n" else "\n\n"
            self._parts.append(sep)
            self._length += len(sep)
        start = self._length
        self._parts.append(body)
        self._length += len(body)
        self.blocks.append(Block(start, self._length, kind))
        for s, e in nobreak:
            s, e = max(s - lead, 0), min(e - lead, len(body))
            if e > s and _CODE_MARK.search(body, s, e):  # an identifier alone ("csv") cannot hold a boundary
                self.blocks.append(Block(start + s, start + e, "nobreak"))
        self._separator = "\n" if line else "\n\n"

    def end_lines(self) -> None:
        """The next block starts a new paragraph (a blank line), even after a ``line`` block."""
        self._separator = "\n\n"

    @property
    def text(self) -> str:
        return "".join(self._parts)

    def extracted(self, meta: Metadata, empty_message: str) -> Extracted:
        if not self.blocks:
            raise DocumentError(empty_message, EMPTY)
        return Extracted(self.text, meta, tuple(self.blocks))

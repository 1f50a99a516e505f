"""Reading a corpus folder into documents and sentences with exact character offsets.

Scraped pages carry furniture ("Published", "MOST READ", a section label) that is not content; it is
recognised per line and never becomes a sentence. Offsets are into the decoded file text exactly as
read (no newline translation), so ``doc.raw[s.start:s.end] == s.text`` holds for every sentence.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from qa.types import Document, Sentence, SentenceKind

log = logging.getLogger(__name__)

# Lines that scraped news pages repeat around the article body. Compared case-insensitively.
FURNITURE_LINES = frozenset(
    {
        "published",
        "on",
        "by",
        "most read",
        "exit mobile version",
        "advertisement",
        "share",
        "share this",
        "tweet",
        "print",
        "email",
        "related",
        "read more",
        "read next",
        "comments",
        "leave a comment",
        "skip to content",
        "subscribe",
    }
)
_SECTION_LABEL = re.compile(r"^[A-Z][A-Z&\- ]{1,30}$")  # "ASIA", "MIDDLE EAST": a label before the headline
_FINAL_PUNCT = ".!?…:;\"'”’)"
_LINE = re.compile(r"[^\r\n]+")


@dataclass(frozen=True, slots=True)
class Block:
    """One line of the raw text, stripped, with its offsets."""

    start: int
    end: int
    text: str


def read_document(path: Path) -> Document | None:
    """Read one file; ``None`` (with a warning naming the file) when it cannot be a document."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        log.warning("skipping %s: cannot read (%s)", path.name, exc)
        return None
    if b"\x00" in data:
        log.warning("skipping %s: binary file", path.name)
        return None
    try:
        raw = data.decode("utf-8")  # bytes → str without newline translation: offsets stay exact
    except UnicodeDecodeError as exc:
        log.warning("skipping %s: not UTF-8 (%s)", path.name, exc.reason)
        return None
    blocks = content_blocks(raw)
    if not blocks:
        log.warning("skipping %s: no text", path.name)
        return None
    return Document(doc_id=path.name, title=blocks[0].text, raw=raw)


def load_corpus(folder: Path) -> list[Document]:
    """Every readable ``.txt`` file of ``folder``, sorted by name; bad files are skipped, never fatal."""
    if not folder.is_dir():
        raise FileNotFoundError(f"corpus folder not found: {folder}")
    docs = [read_document(p) for p in sorted(folder.glob("*.txt")) if p.is_file()]
    return [d for d in docs if d is not None]


def _lines(raw: str) -> Iterator[Block]:
    for m in _LINE.finditer(raw):
        line = m.group()
        stripped = line.strip()
        if not stripped:
            continue
        lead = len(line) - len(line.lstrip())
        start = m.start() + lead
        yield Block(start, start + len(stripped), stripped)


def is_furniture(text: str, *, before_title: bool) -> bool:
    if text.casefold() in FURNITURE_LINES:
        return True
    return before_title and len(text.split()) <= 3 and bool(_SECTION_LABEL.match(text))


def content_blocks(raw: str) -> list[Block]:
    """The lines that are article content; the first one is the headline."""
    blocks: list[Block] = []
    for block in _lines(raw):
        if not is_furniture(block.text, before_title=not blocks):
            blocks.append(block)
    return blocks


def is_heading(text: str) -> bool:
    """A line that introduces a section rather than states something: short, or with no final stop."""
    words = len(text.split())
    if text[-1] not in _FINAL_PUNCT:
        return words <= 14
    return words <= 4 and len(split_block(text)) == 1  # "Open, closed, reopened!"


@lru_cache(maxsize=1)
def _segmenter():
    import pysbd

    return pysbd.Segmenter(language="en", clean=False)


def split_block(text: str) -> list[tuple[int, int]]:
    """Sentence spans ``(start, end)`` within ``text``, found by pysbd and re-anchored in the text.

    pysbd returns strings, not offsets; each is located from a moving cursor so the spans are exact
    even when the segmenter normalises whitespace. Anything it cannot anchor stays in one span.
    """
    spans: list[tuple[int, int]] = []
    cursor = 0
    for piece in _segmenter().segment(text):
        piece = piece.strip()
        if not piece:
            continue
        at = text.find(piece, cursor)
        if at < 0:
            break
        spans.append((at, at + len(piece)))
        cursor = at + len(piece)
    rest = text[cursor:]
    if rest.strip():
        lead = len(rest) - len(rest.lstrip())
        start = cursor + lead
        spans.append((start, start + len(rest.strip())))
    return spans


def split_sentences(doc: Document, *, layout: bool = True) -> list[Sentence]:
    """The document's sentences in order.

    With ``layout`` the first content line is the title and short unpunctuated lines are headings, as in
    a scraped article; without it (e.g. a SQuAD paragraph) every line is body text.
    """
    blocks = content_blocks(doc.raw) if layout else list(_lines(doc.raw))
    sentences: list[Sentence] = []
    for i, block in enumerate(blocks):
        kind: SentenceKind = "body"
        if layout and i == 0:
            kind = "title"
        elif layout and is_heading(block.text):
            kind = "heading"
        spans = [(0, len(block.text))] if kind != "body" else split_block(block.text)
        for s, e in spans:
            start, end = block.start + s, block.start + e
            sentences.append(Sentence(doc.doc_id, len(sentences), start, end, doc.raw[start:end], kind))
    return sentences

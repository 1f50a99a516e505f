"""Reading a corpus folder into documents, and documents into sentences with exact character offsets.

A folder (and its subfolders) may hold ``.txt``, ``.md``, ``.html``/``.htm`` and ``.jsonl`` files; each
format's canonical text is described in :mod:`qa.formats`. Offsets are into that text exactly as read (no
newline translation), so ``doc.raw[s.start:s.end] == s.text`` holds for every sentence.

The layout rule: a document's lines are blocks; lines that scraped pages repeat around an article
("Published", "MOST READ", a section label) are furniture and never become sentences. The first line is the
title only when it looks like a headline (a Markdown ``#`` heading, or short, one sentence, no final stop)
or is the title the metadata gives; chapter lines, Markdown ``##`` headings, capitalised lines and short
unpunctuated lines are headings; everything else is body text split into sentences, none longer than
``Settings.max_sentence_chars``.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from qa import formats
from qa.formats import DocumentError, Metadata
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
_CLOSERS = "\"'”’)]»"
_LINE = re.compile(r"[^\r\n]+")
_MARKDOWN_HEADING = re.compile(r"^(#{1,6})[ \t]+(?=\S)")
_CHAPTER = re.compile(r"^(?:(?:CHAPTER|Chapter)\s+(?:[0-9]+|[IVXLCDM]+|[A-Z][a-z]+)\b"  # "Chapter Sixteen"
                      r"|(?:BOOK|Book|PART|Part|VOLUME|Volume)\s+(?:[0-9]+|[IVXLCDM]+)\b"
                      r"|(?:[0-9]+|[IVXLCDM]+)\.?$)")  # a chapter number alone: "VII", "12."
HEADING_MAX_WORDS = 14
HEADLINE_MAX_WORDS = 20

# pysbd's time grows faster than a block's length (about 25k characters 0.6 s, 200k 23 s); no paragraph a
# person writes is this long (SQuAD's longest is 4,063 characters, CoQA's 3,559), so a longer block is cut
# at safe boundaries (:func:`safe_spans`) in time linear in its length instead.
SEGMENTER_MAX_CHARS = 10_000
# A full stop after one of these (or after a single capital, an initial) does not end a sentence.
_ABBREVIATIONS = ("Mr Mrs Ms Dr Prof St Jr Sr Gen Col Lt Sgt Capt Rev Gov Sen Rep Inc Ltd Co Corp vs etc No "
                  "Vol Fig Jan Feb Mar Apr Jun Jul Aug Sep Sept Oct Nov Dec").split()
_NOT_AN_END = re.compile(r"(?:\b(?:" + "|".join(_ABBREVIATIONS) + r")|\b[A-Z]|\b(?:[A-Za-z]\.)+[A-Za-z])$")
_BOUNDARY = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s+[\"“‘(\[]?[A-Z0-9])")
_CUT_MARKS = ("; ", ": ", ", ")  # where an over-long sentence is best cut, in order of preference


@dataclass(frozen=True, slots=True)
class IngestLimits:
    """The ``Settings`` that reading and splitting obey."""

    max_sentence_chars: int
    max_document_bytes: int

    @classmethod
    def from_settings(cls, settings) -> IngestLimits:
        return cls(settings.max_sentence_chars, settings.max_document_bytes)


@lru_cache(maxsize=1)
def default_limits() -> IngestLimits:
    """The limits of the process's ``Settings`` (environment, ``.env``), read once."""
    from qa.config import Settings

    return IngestLimits.from_settings(Settings())


@dataclass(frozen=True, slots=True)
class Block:
    """One line of the raw text, stripped, with its offsets."""

    start: int
    end: int
    text: str


# Reading documents.


def load_corpus(folder: Path, limits: IngestLimits | None = None) -> list[Document]:
    """Every readable document under ``folder``, sorted by id; bad files and lines are skipped with a
    warning naming them, never fatal. File ids are relative POSIX paths; a .jsonl record's id is
    ``<file>#<id>`` (:func:`qa.formats.record_doc_id`)."""
    if not folder.is_dir():
        raise FileNotFoundError(f"corpus folder not found: {folder}")
    limits = limits or default_limits()
    docs = [doc for path, file_id in corpus_files(folder) for doc in read_corpus_file(path, file_id, limits)]
    return sorted(docs, key=lambda d: d.doc_id)


def corpus_files(folder: Path) -> Iterator[tuple[Path, str]]:
    """``(path, file id)`` of every file of a readable format under ``folder``, in sorted order. Hidden files
    and folders are left out; links are followed only to files inside the folder."""
    root = folder.resolve()
    for here, dirs, files in os.walk(folder, followlinks=False):
        base = Path(here)
        for name in list(dirs):
            if name.startswith(".") or (base / name).is_symlink():
                if not name.startswith("."):
                    log.warning("skipping %s: a link to a folder is not followed", _rel(base / name, folder))
                dirs.remove(name)
        dirs.sort()
        for name in sorted(files):
            path = base / name
            if name.startswith(".") or not name.lower().endswith(formats.SUFFIXES):
                continue
            file_id = _rel(path, folder)
            try:
                formats.check_file_name(file_id)  # the id rule of every route: each id can be opened and changed
            except DocumentError as exc:
                log.warning("skipping %r: %s", file_id, exc)
                continue
            try:
                target = path.resolve(strict=True)
            except OSError as exc:
                log.warning("skipping %s: cannot resolve (%s)", file_id, exc.strerror or exc)
                continue
            if not target.is_relative_to(root):
                log.warning("skipping %s: it resolves outside the corpus folder", file_id)
                continue
            if target.is_file():
                yield path, file_id


def _rel(path: Path, folder: Path) -> str:
    return path.relative_to(folder).as_posix()


def read_corpus_file(path: Path, file_id: str, limits: IngestLimits) -> list[Document]:
    """The documents of one corpus file (one, or a .jsonl file's records); [] with a warning when bad."""
    suffix = path.suffix.lower()
    try:
        if suffix == formats.JSONL_SUFFIX:
            return _read_jsonl(path, file_id, limits)
        formats.check_size(path.stat().st_size, limits.max_document_bytes)
        text, meta = formats.read_file_bytes(path.read_bytes(), suffix)
        return [make_document(file_id, text, meta, source=file_id)]
    except OSError as exc:
        log.warning("skipping %s: cannot read (%s)", file_id, exc.strerror or exc)
    except DocumentError as exc:
        log.warning("skipping %s: %s", file_id, exc)
    return []


def _read_jsonl(path: Path, file_id: str, limits: IngestLimits) -> list[Document]:
    docs = []
    with path.open("rb") as fh:
        for number, record in formats.read_jsonl(fh, limits.max_document_bytes):
            try:
                if isinstance(record, DocumentError):
                    raise record
                rid, text, meta = record
                docs.append(make_document(formats.record_doc_id(file_id, rid), text, meta, source=file_id,
                                          fallback_title=rid))
            except DocumentError as exc:
                log.warning("skipping %s line %d: %s", file_id, number, exc)
    return docs


def make_document(doc_id: str, text: str, meta: Metadata, *, source: str | None = None,
                  fallback_title: str | None = None) -> Document:
    """A document of canonical ``text``; its title is the metadata's, else a headline first line, else
    ``fallback_title`` or one made from the file name."""
    blocks = content_blocks(text)
    if not blocks:
        raise DocumentError("no text")
    title = meta.title or _headline_of(blocks) or fallback_title or formats.title_from_name(doc_id)
    return Document(doc_id, title, text, url=meta.url, published=meta.published, source=source)


def document_from_upload(doc_id: str, body: bytes, content_type: str,
                         limits: IngestLimits | None = None) -> Document:
    """Validate and read ONE uploaded document (the body of ``PUT /documents/{doc_id}``) exactly as the same
    file would be read from the corpus folder.

    ``doc_id`` must name a file (:func:`qa.formats.check_file_id`: a relative path such as
    ``"news/2024/story.txt"``, no ``..``, hidden parts or ``#``). ``content_type`` is ``text/plain`` or
    ``text/markdown`` (UTF-8, for a ``.txt``/``.md`` id), ``text/html`` (for a ``.html``/``.htm`` id), or
    ``application/json`` with a body ``{"text", "title"?, "url"?, "published"?}`` whose ``text`` is the
    canonical text. Raises :class:`qa.formats.DocumentTooLarge` over ``max_document_bytes`` and
    :class:`qa.formats.DocumentError` for anything else wrong; both are ``ValueError`` subclasses whose
    message is fit to return to the client.
    """
    limits = limits or default_limits()
    suffix = formats.check_file_id(doc_id).suffix.lower()
    formats.check_size(len(body), limits.max_document_bytes)
    media = formats.media_suffix(content_type)
    if media == ".json":
        _, text, meta = formats.parse_record(formats.decode_text(body))
    elif (media in formats.HTML_SUFFIXES) != (suffix in formats.HTML_SUFFIXES):
        raise DocumentError(f"content type {content_type.split(';')[0].strip()} does not fit a document "
                            f"named *{suffix}")
    else:
        text, meta = formats.read_file_bytes(body, suffix)
    return make_document(doc_id, text, meta, source=doc_id)


# Lines, titles and headings.


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
    """A line that is not content: a known page label, a separator ("***", "-- -") or a section label
    before the headline."""
    if text.casefold() in FURNITURE_LINES or not any(c.isalnum() for c in text):
        return True
    return before_title and len(text.split()) <= 3 and bool(_SECTION_LABEL.match(text)) and not _CHAPTER.match(text)


def content_blocks(raw: str) -> list[Block]:
    """The lines that are article content (page furniture left out)."""
    blocks: list[Block] = []
    for block in _lines(raw):
        if not is_furniture(block.text, before_title=not blocks):
            blocks.append(block)
    return blocks


def _markdown_level(text: str) -> int:
    m = _MARKDOWN_HEADING.match(text)
    return len(m.group(1)) if m else 0


def _without_marker(block: Block) -> Block:
    """The block without a leading Markdown heading marker (``## ``), offsets moved to match."""
    m = _MARKDOWN_HEADING.match(block.text)
    return block if m is None else Block(block.start + m.end(), block.end, block.text[m.end():])


def is_section_heading(text: str) -> bool:
    """A line that is a heading wherever it stands: a chapter line ("CHAPTER VII", "Chapter 19: …"), a
    Markdown heading below the top level, or a short line in capitals ("SLUICE BOXES AND …")."""
    if _markdown_level(text) >= 2:
        return True
    short = len(text.split()) <= HEADING_MAX_WORDS
    letters = [c for c in text if c.isalpha()]
    return short and (bool(_CHAPTER.match(text)) or (len(letters) >= 2 and all(c.isupper() for c in letters)))


def is_heading(text: str) -> bool:
    """A line after the first that introduces a section rather than states something: one short sentence with
    no final stop, or a section heading (:func:`is_section_heading`)."""
    words = len(text.split())
    if _markdown_level(text) or is_section_heading(text):
        return True
    if text[-1] not in _FINAL_PUNCT:
        return words <= HEADING_MAX_WORDS and len(split_block(text)) == 1
    return words <= 4 and text[-1] in "!?" and len(split_block(text)) == 1  # "Open, closed, reopened!"


def looks_like_headline(text: str) -> bool:
    """A first line that is a headline: a top-level Markdown heading, or short, one sentence and without a
    final stop (a question or an exclamation is a headline; a line ending in '.', ',', ':' or ';' is not)."""
    level = _markdown_level(text)
    if level == 1:
        return True
    if level or is_section_heading(text):
        return False
    if len(text.split()) > HEADLINE_MAX_WORDS:
        return False
    last = text.rstrip(_CLOSERS)[-1:]
    return last not in ".,;:…" and len(split_block(text)) == 1


def _headline_of(blocks: list[Block]) -> str | None:
    """The first block's text (without a Markdown marker) when it is a headline over more content."""
    if len(blocks) > 1 and looks_like_headline(blocks[0].text):
        return _without_marker(blocks[0]).text
    return None


def block_kinds(blocks: list[Block], title: str | None = None) -> list[SentenceKind]:
    """Each block's kind: the first is the title when it is ``title`` (the document's, from its metadata) or
    looks like a headline; then headings; the rest is body text."""
    kinds: list[SentenceKind] = []
    for i, block in enumerate(blocks):
        if i == 0 and (_without_marker(block).text == title or _headline_of(blocks) is not None):
            kinds.append("title")
        elif is_section_heading(block.text) or (i > 0 and is_heading(block.text)):
            kinds.append("heading")
        else:
            kinds.append("body")
    return kinds


# Sentences.


@lru_cache(maxsize=1)
def _segmenter():
    import pysbd

    return pysbd.Segmenter(language="en", clean=False)


def segment(text: str) -> list[tuple[int, int]]:
    """Sentence spans ``(start, end)`` of a block of at most ``SEGMENTER_MAX_CHARS``, found by pysbd and
    re-anchored in the text.

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


def safe_spans(text: str) -> list[tuple[int, int]]:
    """Sentence spans of an over-long block, cut where a sentence surely ends: final punctuation (and any
    closing quotes) before whitespace and a capital, digit or opening quote, unless the full stop follows an
    abbreviation or an initial. One pass over the text."""
    spans: list[tuple[int, int]] = []
    start = _skip_space(text, 0)
    for m in _BOUNDARY.finditer(text):
        if m.end() <= start:
            continue
        if text[m.start()] == "." and _NOT_AN_END.search(text, max(start, m.start() - 12), m.start()):
            continue
        spans.append((start, m.end()))
        start = _skip_space(text, m.end())
    end = len(text.rstrip())
    if end > start:
        spans.append((start, end))
    return spans


def _skip_space(text: str, at: int) -> int:
    while at < len(text) and text[at].isspace():
        at += 1
    return at


def cap_span(text: str, start: int, end: int, max_chars: int) -> Iterator[tuple[int, int]]:
    """``text[start:end]`` in pieces of at most ``max_chars``, each cut at the best place in its second
    half: after the last '; ', else ': ', else ', ', else at the last whitespace, else anywhere."""
    while end - start > max_chars:
        low, limit = start + max_chars // 2, start + max_chars
        window = text[low:limit]
        cut = next((low + at + 1 for mark in _CUT_MARKS if (at := window.rfind(mark)) >= 0), -1)
        if cut < 0:
            space = next((i for i in range(len(window) - 1, 0, -1) if window[i].isspace()), -1)
            cut = low + space if space > 0 else limit
        piece_end = cut
        while text[piece_end - 1].isspace():
            piece_end -= 1
        yield start, piece_end
        start = _skip_space(text, cut)
    if end > start:
        yield start, end


def split_block(text: str, max_chars: int | None = None) -> list[tuple[int, int]]:
    """Sentence spans of one block, none longer than ``max_chars`` (default: the Settings'), in time linear
    in the block's length."""
    max_chars = max_chars or default_limits().max_sentence_chars
    spans = segment(text) if len(text) <= SEGMENTER_MAX_CHARS else safe_spans(text)
    return [piece for s, e in spans for piece in cap_span(text, s, e, max_chars)]


def split_sentences(doc: Document, *, layout: bool = True, limits: IngestLimits | None = None) -> list[Sentence]:
    """The document's sentences in order.

    ``layout`` reads titles, headings and page furniture by the rule of this module; without it every line
    is body text.
    """
    max_chars = (limits or default_limits()).max_sentence_chars
    blocks = content_blocks(doc.raw) if layout else list(_lines(doc.raw))
    kinds = block_kinds(blocks, doc.title) if layout else ["body"] * len(blocks)
    sentences: list[Sentence] = []
    for block, kind in zip(blocks, kinds):
        block = _without_marker(block)
        if kind == "body":
            spans = split_block(block.text, max_chars)
        else:
            spans = list(cap_span(block.text, 0, len(block.text), max_chars))
        for s, e in spans:
            start, end = block.start + s, block.start + e
            sentences.append(Sentence(doc.doc_id, len(sentences), start, end, doc.raw[start:end], kind))
    return sentences

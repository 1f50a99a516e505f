"""A document's layout: its canonical text → units (paragraphs, headings, list items, lines of verse, code
blocks), each of a kind, → sentences with exact offsets.

Units come from the document's structure when its format has one (``Document.blocks``: HTML, Word, …),
else from its lines by the paragraph rule:

* a blank line ends a paragraph; inside one, a line break is either a **wrap** (the paragraph goes on: a
  space to the sentence splitter, while the sentence's text keeps the line break as written) or **line
  structure** (the next line is a unit of its own: a list item, a heading, a table row, a line of verse or
  of an address, preformatted text);
* a break is structure when the next line starts a list item (``-``, ``*``, ``•``, ``1.``, ``a)``), either
  line is a Markdown heading, a table row (``|``) or a section heading (a chapter line, capitals), or the
  next line is indented deeper, or both are indented as preformatted text;
* otherwise, in Markdown (``.md``) every break is a wrap (CommonMark's soft line break) unless the line
  ends with two spaces or a backslash; in plain text a break is a wrap when the next line's first word
  would not have fitted on the line (the line's length + 1 + that word's length exceeds the document's wrap
  width, the 99th percentile of the lengths of its lines, when that is at most :data:`MAX_WRAP_WIDTH` and
  at least :data:`MIN_FULL_LINES` lines come within a tenth of it: a short poem or an address alone is not
  evidence of wrapping), or when the next line starts in lower case after a line without a final stop (a
  sentence that goes on). Anything else keeps its line structure.
* fenced code (```` ``` ```` or ``~~~``) and, in Markdown, indented paragraphs are code units.

Each unit then gets a kind: page furniture ("Published", "MOST READ", separators, a section label before
the headline) is left out; the first unit is the title when it is the title the metadata gives or looks
like a headline; chapter lines, Markdown ``##`` headings, capitalised lines and short unpunctuated lines are
headings; code is code; everything else is body text split into sentences (qa/segment.py).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass

from qa.segment import cap_span, code_spans, split_block
from qa.types import Document, Sentence, SentenceKind

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
_MARKDOWN_HEADING = re.compile(r"^(#{1,6})[ \t]+(?=\S)")
_CHAPTER = re.compile(r"^(?:(?:CHAPTER|Chapter)\s+(?:[0-9]+|[IVXLCDM]+|[A-Z][a-z]+)\b"  # "Chapter Sixteen"
                      r"|(?:BOOK|Book|PART|Part|VOLUME|Volume)\s+(?:[0-9]+|[IVXLCDM]+)\b"
                      r"|(?:[0-9]+|[IVXLCDM]+)\.?$)")  # a chapter number alone: "VII", "12."
_TABLE_ROW = re.compile(r"^\|.*\||^[^|]*\|[^|]*\|")
_RULE = re.compile(r"^(?:[-*_=~]\s*){3,}$")
_FENCE = re.compile(r"^[ \t]{0,3}(`{3,}|~{3,})")
HEADING_MAX_WORDS = 14
HEADLINE_MAX_WORDS = 20
MAX_WRAP_WIDTH = 160  # lines longer than this are not hard-wrapped text (PDF lines run to about 130)
PREFORMATTED_INDENT = 4
MIN_FULL_LINES = 3  # lines within a tenth of the wrap width that show a text was wrapped at all
FULL_LINE = 0.9
_LINE = re.compile(r"([^\r\n]*)(\r\n|\r|\n|$)")
_MARKER = re.compile(r"^(?:[-*+•‣◦▪–]|\d{1,3}[.)]|[a-z][.)]|\(\w{1,3}\))\s+(?=\S)")  # a list item's
_WORD = re.compile(r"[^ \t\r\n]*")
_BULLET = re.compile(r"^[*•‣◦▪]\s+(?=\S)")  # a bullet never starts a wrapped line (unlike "-", "+", "12.")


@dataclass(frozen=True, slots=True)
class Unit:
    """One unit of a document's layout: ``raw[start:end]`` (stripped; it may span several lines), the kind
    its structure or markup gives (None: read from its text), and its ``nobreak`` spans (absolute offsets)."""

    start: int
    end: int
    text: str
    hint: str | None = None  # "title", "heading", "item", "code" or "body" from the format; None: plain text
    nobreak: tuple[tuple[int, int], ...] = ()


# Lines and the paragraph rule.


@dataclass(frozen=True, slots=True)
class _Line:
    start: int  # first non-blank character
    end: int  # after the last non-blank character
    indent: int  # leading white space
    width: int  # indentation + text: the line's length as a wrap width counts it


def _lines(raw: str) -> Iterator[_Line | None]:
    """Every line of ``raw`` in order, None for a blank one."""
    for m in _LINE.finditer(raw):
        if m.start() == len(raw):
            break
        line = m.group(1)
        stripped = line.strip()
        if not stripped:
            yield None
            continue
        indent = len(line) - len(line.lstrip())
        start = m.start() + indent
        yield _Line(start, start + len(stripped), indent, indent + len(stripped))


def _paragraphs(raw: str) -> list[list[_Line]]:
    paragraphs: list[list[_Line]] = [[]]
    for line in _lines(raw):
        if line is None:
            if paragraphs[-1]:
                paragraphs.append([])
        else:
            paragraphs[-1].append(line)
    return [p for p in paragraphs if p]


def wrap_width(paragraphs: list[list[_Line]]) -> int | None:
    """The width a plain text is wrapped at: the 99th percentile of the widths of its lines; None when no
    paragraph has two lines or the lines are too long to have been wrapped."""
    if all(len(p) < 2 for p in paragraphs):
        return None
    widths = sorted(line.width for p in paragraphs for line in p)
    width = widths[min(len(widths) - 1, int(0.99 * len(widths)))]
    full = sum(w >= FULL_LINE * width for w in widths)
    return width if width <= MAX_WRAP_WIDTH and full >= MIN_FULL_LINES else None


def is_structure(a: str, b: str, a_line: _Line, b_line: _Line, base_indent: int) -> bool:
    """Whether the break between lines ``a`` and ``b`` of one paragraph is line structure whatever the
    lines' lengths: either is a Markdown heading, a table row or a rule, ``b`` starts a bulleted item, ``b``
    is indented deeper than ``a`` (but for the hanging indent of a list item), or both are preformatted."""
    if any(_MARKDOWN_HEADING.match(t) or _TABLE_ROW.match(t) or _RULE.match(t) for t in (a, b)):
        return True
    if _BULLET.match(b):
        return True
    if b_line.indent >= a_line.indent + 2:
        marker = _MARKER.match(a)
        hanging = a_line.indent + marker.end() if marker else -1  # "1. An item\n   that goes on"
        if abs(b_line.indent - hanging) > 1:
            return True
    return min(a_line.indent, b_line.indent) >= base_indent + PREFORMATTED_INDENT


def looks_like_structure(a: str, b: str) -> bool:
    """Whether the break between ``a`` and ``b`` looks like line structure unless ``a`` was wrapped: ``b``
    starts a numbered (or dashed) item after a final stop or another item, or either line is a section
    heading (a chapter line, capitals). A wrap can put "1968." or "II." first on a line, and a long heading
    in capitals can be wrapped, so these give way to the fit test (:func:`fits`)."""
    if _MARKER.match(b) and (_MARKER.match(a) or a[-1] in ".!?:;…"):
        return True
    return is_section_heading(a) or is_section_heading(b) or bool(_MARKER.match(b) and len(a.split()) <= 3)


def fits(a_line: _Line, b: str, width: int | None) -> bool:
    """Whether ``b``'s first word would have fitted on the line before it: when it would not, the line was
    wrapped there (``width`` is the document's wrap width, :func:`wrap_width`)."""
    first_word = _WORD.match(b).group()  # a no-break space does not end the word
    return not (width and a_line.width >= width / 2 and a_line.width + 1 + len(first_word) > width)


def is_wrap(a: str, b: str, a_line: _Line, width: int | None) -> bool:
    """Whether a plain-text line ``a`` was wrapped before ``b`` (its structure aside): ``b``'s first word would
    not have fitted within ``width``, or ``b`` goes on in lower case after a line without a final stop and
    neither line looks like structure."""
    if not fits(a_line, b, width):
        return True
    return not looks_like_structure(a, b) and not _MARKER.match(b) and b[0].islower() and a[-1] not in ".!?:;…"


def text_units(raw: str, *, markdown: bool = False) -> list[Unit]:
    """The units of a plain text (or Markdown) by the paragraph rule (module docstring)."""
    paragraphs = _paragraphs(raw)
    paragraphs, code = _code_units(raw, paragraphs, markdown)
    width = None if markdown else wrap_width(paragraphs)
    indents = sorted(line.indent for p in paragraphs for line in p)
    base = indents[len(indents) // 2] if indents else 0
    units = list(code)
    for para in paragraphs:
        first = para[0]
        for prev, line in zip(para, para[1:]):
            a, b = raw[prev.start:prev.end], raw[line.start:line.end]
            if is_structure(a, b, prev, line, base):
                wrapped = False
            elif markdown:
                wrapped = not (_MARKER.match(b) or raw[prev.end:prev.end + 2] == "  " or a.endswith("\\"))
            else:
                wrapped = is_wrap(a, b, prev, width)
            if not wrapped:
                units.append(Unit(first.start, prev.end, raw[first.start:prev.end]))
                first = line
        units.append(Unit(first.start, para[-1].end, raw[first.start:para[-1].end]))
    return sorted(units, key=lambda u: u.start)


def _code_units(raw: str, paragraphs: list[list[_Line]], markdown: bool) -> tuple[list[list[_Line]], list[Unit]]:
    """Fenced code blocks (and, in Markdown, paragraphs indented as code) as code units; the other paragraphs.
    Fence lines are markup, not units."""
    lines = [line for p in paragraphs for line in p]
    code: list[Unit] = []
    inside: set[int] = set()  # start offsets of lines that are fences or fenced code
    i = 0
    while i < len(lines):
        m = _FENCE.match(raw[lines[i].start - lines[i].indent:lines[i].end])
        if not m:
            i += 1
            continue
        close = next((j for j in range(i + 1, len(lines))
                      if raw[lines[j].start:lines[j].end].startswith(m.group(1)[0] * len(m.group(1)))), None)
        if close is None:
            i += 1
            continue
        inside.update(line.start for line in lines[i:close + 1])
        if close > i + 1:
            body = lines[i + 1:close]
            code.append(Unit(body[0].start, body[-1].end, raw[body[0].start:body[-1].end], "code"))
        i = close + 1
    kept: list[list[_Line]] = []
    for para in paragraphs:
        runs: list[list[_Line]] = [[]]  # the paragraph's lines outside fences, cut where a fence was
        for line in para:
            if line.start in inside:
                runs.append([])
            else:
                runs[-1].append(line)
        for rest in filter(None, runs):
            if markdown and all(line.indent >= PREFORMATTED_INDENT for line in rest) and not _MARKER.match(
                    raw[rest[0].start:rest[0].end]):
                code.append(Unit(rest[0].start, rest[-1].end, raw[rest[0].start:rest[-1].end], "code"))
            else:
                kept.append(rest)
    return kept, code


def block_units(doc: Document) -> list[Unit]:
    """The units a structured document's blocks give, each with its ``nobreak`` spans."""
    blocks = sorted(doc.blocks or (), key=lambda b: (b.start, -b.end))
    units: list[Unit] = []
    nobreak: list[list[tuple[int, int]]] = []
    for b in blocks:
        if b.kind == "nobreak":
            if units and units[-1].start <= b.start and b.end <= units[-1].end:
                nobreak[-1].append((b.start, b.end))
            continue
        units.append(Unit(b.start, b.end, doc.raw[b.start:b.end], b.kind))
        nobreak.append([])
    return [Unit(u.start, u.end, u.text, u.hint, tuple(n)) for u, n in zip(units, nobreak)]


def _is_markdown(doc: Document) -> bool:
    return (doc.source or doc.doc_id).lower().endswith((".md", ".markdown"))


def units_of(doc: Document) -> list[Unit]:
    """A document's units: from its blocks, else from its text (Markdown for a ``.md`` file)."""
    if doc.blocks is not None:
        return block_units(doc)
    return text_units(doc.raw, markdown=_is_markdown(doc))


def layout_key(doc: Document) -> str:
    """What, besides its text, decides how a document is split: "" for plain text, "md" for Markdown, a
    digest of its blocks for a structured document. A build reuses a document's sentences only when both
    agree."""
    if doc.blocks is None:
        return "md" if _is_markdown(doc) else ""
    digest = hashlib.sha256(";".join(f"{b.start},{b.end},{b.kind}" for b in doc.blocks).encode()).hexdigest()
    return f"blocks:{digest[:16]}"


# Titles, headings and furniture.


def is_furniture(text: str, *, before_title: bool) -> bool:
    """A line that is not content: a known page label, a separator ("***", "-- -") or a section label
    before the headline."""
    if text.casefold() in FURNITURE_LINES or not any(c.isalnum() for c in text):
        return True
    return before_title and len(text.split()) <= 3 and bool(_SECTION_LABEL.match(text)) and not _CHAPTER.match(text)


def content_units(doc: Document) -> list[Unit]:
    """The units that are content (page furniture left out; code and headings the format marks are kept)."""
    units: list[Unit] = []
    for unit in units_of(doc):
        if unit.hint in ("code", "title") or not is_furniture(unit.text, before_title=not units and unit.hint != "heading"):
            units.append(unit)
    return units


def _markdown_level(text: str) -> int:
    m = _MARKDOWN_HEADING.match(text)
    return len(m.group(1)) if m else 0


def without_marker(unit: Unit) -> Unit:
    """The unit without a leading Markdown heading marker (``## ``), offsets moved to match."""
    m = _MARKDOWN_HEADING.match(unit.text)
    if m is None or unit.hint == "code":
        return unit
    return Unit(unit.start + m.end(), unit.end, unit.text[m.end():], unit.hint, unit.nobreak)


def _one_sentence(text: str) -> bool:
    return len(split_block(text, max(len(text), 1))) == 1


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
    if _MARKER.match(text):
        return False
    if text[-1] not in _FINAL_PUNCT:
        return words <= HEADING_MAX_WORDS and _one_sentence(text)
    return words <= 4 and text[-1] in "!?" and _one_sentence(text)  # "Open, closed, reopened!"


def looks_like_headline(text: str) -> bool:
    """A first line that is a headline: a top-level Markdown heading, or short, one sentence and without a
    final stop (a question or an exclamation is a headline; a line ending in '.', ',', ':' or ';' is not)."""
    level = _markdown_level(text)
    if level == 1:
        return True
    if level or is_section_heading(text) or _MARKER.match(text):
        return False
    if len(text.split()) > HEADLINE_MAX_WORDS:
        return False
    last = text.rstrip(_CLOSERS)[-1:]
    return last not in ".,;:…" and _one_sentence(text)


def headline_of(units: list[Unit]) -> str | None:
    """The first unit's text (without a Markdown marker) when it is a headline over more content."""
    if len(units) > 1 and units[0].hint in (None, "title") and looks_like_headline(units[0].text):
        return " ".join(without_marker(units[0]).text.split())
    return None


def unit_kinds(units: list[Unit], title: str | None = None) -> list[SentenceKind]:
    """Each unit's kind: the first is the title when it is ``title`` (the document's, from its metadata),
    marked as the title, or looks like a headline; then headings; code; the rest is body text. A unit the
    format marks as a heading or code is one; an "item" (list item, table row) is body text."""
    kinds: list[SentenceKind] = []
    for i, unit in enumerate(units):
        text = " ".join(without_marker(unit).text.split())
        if i == 0 and unit.hint != "code" and (unit.hint == "title" or text == title
                                               or (unit.hint is None and headline_of(units) is not None)):
            kinds.append("title")
        elif unit.hint == "code":
            kinds.append("code")
        elif unit.hint in ("heading", "title"):
            kinds.append("heading")
        elif unit.hint == "item":
            kinds.append("body")
        elif is_section_heading(unit.text) or (i > 0 and is_heading(unit.text)):
            kinds.append("heading")
        else:
            kinds.append("body")
    return kinds


# Sentences.


def split_sentences(doc: Document, max_chars: int, *, layout: bool = True) -> list[Sentence]:
    """The document's sentences in order, none longer than ``max_chars``.

    ``layout`` reads titles, headings and page furniture by the rule of this module; without it every unit
    is body text (code stays code).
    """
    units = content_units(doc) if layout else units_of(doc)
    kinds = unit_kinds(units, doc.title) if layout else ["code" if u.hint == "code" else "body" for u in units]
    sentences: list[Sentence] = []
    for unit, kind in zip(units, kinds):
        unit = without_marker(unit)
        if kind == "body":
            nobreak = [(s - unit.start, e - unit.start) for s, e in unit.nobreak]
            spans = split_block(unit.text, max_chars, nobreak)
        elif kind == "code":
            spans = code_spans(unit.text, max_chars)
        else:
            spans = list(cap_span(unit.text, 0, len(unit.text), max_chars))
        for s, e in spans:
            if kind == "body" and not any(c.isalnum() for c in unit.text[s:e]):
                continue  # "." or ". . ." alone is no sentence
            start, end = unit.start + s, unit.start + e
            sentences.append(Sentence(doc.doc_id, len(sentences), start, end, doc.raw[start:end], kind))
    return sentences

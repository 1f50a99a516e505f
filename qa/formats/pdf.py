"""PDF files: the text layer, page by page, read with pypdfium2 (PDFium, BSD/Apache; chosen by measurement,
docs/INGESTION.md: about 20 times faster than pypdf and 40 times faster than pdfminer.six on the same
manuals, with line-end hyphens marked and ligatures decomposed).

PDFium gives each page's text in the order it is drawn, which is the reading order of the documents
measured, two-column papers included (a column is drawn before the next). Here:

* a word hyphenated at a line end (PDFium marks the hyphen as U+0002 or U+FFFE) is joined, and the line break
  moved after it: ``inde-`` / ``pendent, you`` → ``independent,`` / ``you``;
* ligatures (ﬁ, ﬂ, ﬀ, …) become their letters; control and private-use characters and dot leaders (the
  ". . . ." of a table of contents) are dropped;
* running headers and footers (a line among the first or last two of a page that recurs, digits aside, on
  a fifth of the pages and at least :data:`RUNNING_MIN_PAGES` of them, or every page of a shorter
  document; on 3 pages suffice when it holds a page number) and page numbers ("12", "xii", "Page 3",
  "3 / 92") are removed;
* without a Title in the PDF's info dictionary, the title is the first page's line in the largest type;
* pages follow each other after a blank line, or after a line break when the sentence goes on (the page's
  last line has no final stop and the next page starts in lower case); ``Extracted.pages`` holds where each
  page starts, so every sentence knows its page.

Line breaks inside a paragraph are left to the paragraph rule of qa/layout.py, as in any plain text.
A PDF that needs a password is ``encrypted``, one PDFium cannot parse is ``damaged``, and one where most
pages have no text (scanned images, fonts without a text mapping) has ``no text layer``.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter

from qa.formats.base import DAMAGED, ENCRYPTED, NO_TEXT_LAYER, DocumentError, Extracted, Metadata, clean_field

EDGE_LINES = 2  # lines at the top and at the bottom of a page that may be a running header or footer
RUNNING_MIN_PAGES = 3
RUNNING_SHARE = 0.2
MIN_PAGE_CHARS = 20  # a page with fewer non-space characters has no text
MAX_EMPTY_SHARE = 0.5  # more pages without text than this: the PDF has no text layer
MAX_TITLE_WORDS = 20
_LIGATURES = {c: unicodedata.normalize("NFKC", c) for c in "\ufb00\ufb01\ufb02\ufb03\ufb04\ufb05\ufb06"}
_DROP = re.compile(r"[\x00-\x01\x03-\x08\x0b\x0c\x0e-\x1f\x7f\ue000-\uf8ff\ufffe\uffff]")
_HYPHENATED = re.compile(r"[\x02\ufffe]\n?(\S*)[ \t]?")  # PDFium's mark of a hyphen at a line end
_PAGE_NUMBER = re.compile(r"^(?:(?:page|p\.)\s*)?(?:\d{1,5}|[ivxlcdm]{1,7})(?:\s*(?:/|of)\s*\d{1,5})?$|^[-–—]\s*\d{1,5}\s*[-–—]$",
                          re.I)
_DIGITS = re.compile(r"\d+")
_LEADER = re.compile(r"(?:[ \t]*\.){4,}[ \t]*")  # the dots that lead a table of contents' entry to its page
_DATE = re.compile(r"^D?:?(\d{4})(\d{2})?(\d{2})?")


def read_pdf(data: bytes) -> Extracted:
    """The text of a PDF's pages, where each page starts, and its title, author and date."""
    import pypdfium2 as pdfium

    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        if "password" in str(exc).lower():
            raise DocumentError("encrypted: it needs a password to be opened", ENCRYPTED) from None
        raise DocumentError(f"damaged or not a PDF ({_pdfium_reason(exc)})", DAMAGED) from None
    try:
        pages = [_page_lines(pdf[i]) for i in range(len(pdf))]
        info = pdf.get_metadata_dict(skip_empty=True)
        title = info_title(info.get("Title"))
        heading = None if title else first_heading(pdf)
    except pdfium.PdfiumError as exc:
        raise DocumentError(f"damaged ({_pdfium_reason(exc)})", DAMAGED) from None
    finally:
        pdf.close()
    empty = sum(1 for lines in pages if sum(len(line.strip()) for line in lines) < MIN_PAGE_CHARS)
    if not pages or empty > MAX_EMPTY_SHARE * len(pages):
        raise DocumentError(f"no text layer: {empty} of {len(pages)} pages have no text (a scan, or fonts "
                            "without a text mapping)", NO_TEXT_LAYER)
    text, starts = join_pages(without_running_lines(pages))
    meta = Metadata(title=title or heading, author=clean_field(info.get("Author")),
                    published=pdf_date(info.get("CreationDate")))
    return Extracted(text, meta, None, starts)


def info_title(value: object) -> str | None:
    """The info dictionary's Title, unless it is a placeholder ("untitled"); without the "Microsoft Word - "
    that Word's PDF printer puts before the file name."""
    title = clean_field(value)
    if title is None or title.casefold() in ("untitled", "untitled document", "title"):
        return None
    return re.sub(r"^Microsoft (?:Word|PowerPoint|Excel) - ", "", title) or None


def _pdfium_reason(exc: Exception) -> str:
    m = re.search(r"PDFium: ([^)]*)", str(exc))
    return m.group(1) if m else str(exc)


def first_heading(pdf) -> str | None:
    """The line set in the largest type on the first page with text (a title page's title), when it is a
    title's length; the title of a PDF whose info dictionary has none."""
    import pypdfium2.raw as pdfium_c

    for i in range(min(len(pdf), 3)):
        page = pdf[i]
        textpage = page.get_textpage()
        try:
            count = textpage.count_chars()
            text = textpage.get_text_range()
            lines: list[tuple[str, float]] = []
            chars: list[str] = []
            size = 0.0
            for at, char in enumerate(text[:count] + "\n"):
                if char in "\r\n":
                    if "".join(chars).strip():
                        lines.append(("".join(chars), size))
                    chars, size = [], 0.0
                    continue
                chars.append(char)
                if not char.isspace():
                    size = max(size, pdfium_c.FPDFText_GetFontSize(textpage.raw, at))
        finally:
            textpage.close()
            page.close()
        if lines:
            top = max(size for _, size in lines)
            title = " ".join(" ".join(line for line, size in lines if size == top).split())
            title = "".join(c for c in title if unicodedata.category(c)[0] != "C")
            return title if 0 < len(title.split()) <= MAX_TITLE_WORDS else None
    return None


def _page_lines(page) -> list[str]:
    textpage = page.get_textpage()
    try:
        raw = textpage.get_text_range()
    finally:
        textpage.close()
        page.close()
    return clean_lines(raw)


def clean_lines(raw: str) -> list[str]:
    """A page's text as PDFium gives it → its lines: hyphenated words joined (the break moved after the
    word), ligatures spelt out, control and private-use characters dropped, trailing spaces trimmed."""
    text = raw.replace("\r\n", "\n").replace("\r", "\n")
    text = _HYPHENATED.sub(lambda m: m.group(1) + "\n", text)
    text = _DROP.sub("", text.translate(str.maketrans(_LIGATURES)))
    return [_LEADER.sub(" ", line).rstrip() for line in text.split("\n")]


def without_running_lines(pages: list[list[str]]) -> list[list[str]]:
    """The pages without running headers, footers and page numbers (module docstring)."""
    def edges(lines: list[str]) -> list[int]:
        filled = [i for i, line in enumerate(lines) if line.strip()]
        return sorted(set(filled[:EDGE_LINES] + filled[-EDGE_LINES:]))

    counts: Counter = Counter()
    for lines in pages:
        counts.update({_DIGITS.sub("#", " ".join(lines[i].split())) for i in edges(lines)})
    min_pages = max(min(RUNNING_MIN_PAGES, len(pages)), RUNNING_SHARE * len(pages))

    def running(line: str) -> bool:
        flat = " ".join(line.split())
        if _PAGE_NUMBER.match(flat):
            return True
        key = _DIGITS.sub("#", flat)
        return len(flat) <= 120 and (counts[key] >= min_pages or ("#" in key and counts[key] >= RUNNING_MIN_PAGES))

    out = []
    for lines in pages:
        drop = {i for i in edges(lines) if running(lines[i])} if len(pages) > 1 else \
            {i for i in edges(lines) if _PAGE_NUMBER.match(" ".join(lines[i].split()))}
        out.append([line for i, line in enumerate(lines) if i not in drop])
    return out


def join_pages(pages: list[list[str]]) -> tuple[str, tuple[int, ...]]:
    """The pages' lines as one text and the offset where each page starts: a blank line between pages, a
    line break where a sentence goes on from one page to the next."""
    parts: list[str] = []
    starts: list[int] = []
    length = 0
    for lines in pages:
        body = "\n".join(lines).strip("\n")
        if parts and body:
            previous = parts[-1].rstrip()
            goes_on = previous[-1:] not in ".!?:;…\"”" and body.lstrip()[:1].islower()
            sep = "\n" if goes_on else "\n\n"
            parts.append(sep)
            length += len(sep)
        starts.append(length)
        if body:
            parts.append(body)
            length += len(body)
    return "".join(parts), tuple(starts)


def pdf_date(value: object) -> str | None:
    """A PDF date (``D:20230206120000+01'00'``) as an ISO date: ``2023-02-06`` (or the year and month)."""
    m = _DATE.match(str(value or "").strip())
    if not m:
        return None
    return "-".join(part for part in m.groups() if part)

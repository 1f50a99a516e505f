"""HTML pages: the article's text, read from the page's structure.

trafilatura decides what the article is (it leaves navigation, share buttons, footers and "most read" boxes
out, not by patterns over tags); the blocks are then read from the page itself with lxml, because the
extractor's own output flattens code and drops parts of documentation pages (admonitions, "Changed in
version" notes, definition lists: about 8 % of the paragraphs of Python's library reference):

1. the page is cleaned: scripts, styles, forms' controls, hidden elements and heading anchors (``¶``, ``#``,
   "permalink", Sphinx's ``headerlink``) are removed, so they never reach the text or the title;
2. the article's root is the deepest element holding 90 % of the text trafilatura kept;
3. every block under it is read in order: headings, paragraphs, list items, definition terms (API
   signatures) and descriptions, table rows (cells joined by `` | ``), notes and warnings, and ``pre``
   blocks as code, kept exactly as written. A block trafilatura left out is dropped only when it is page
   furniture: link lists, or inside an element whose tag, class or id says so (``nav``, ``share``,
   ``byline``, ``breadcrumb``, …).

Inline code (``<code>``) is a ``nobreak`` span: no sentence ends inside ``date(2002, 12, 4).weekday()``.
"""

from __future__ import annotations

import copy
import re

from qa.formats.base import DocumentError, Extracted, Metadata, TextBuilder, clean_field, inline_text

SKIP_TAGS = frozenset({"script", "style", "noscript", "template", "svg", "math", "iframe", "object", "embed",
                       "canvas", "button", "select", "input", "textarea", "img", "video", "audio", "map"})
HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
CONTAINERS = frozenset({"div", "section", "article", "main", "body", "ul", "ol", "dl", "dd", "li", "blockquote",
                        "figure", "details", "form", "fieldset", "aside", "header", "footer", "nav", "center",
                        "table", "thead", "tbody", "tfoot", "tr", "td", "th", "caption", "figcaption", "address",
                        "summary", "menu", "hgroup", "search"})
BLOCK_TAGS = CONTAINERS | frozenset({"p", "pre", "dt", "hr", "h1", "h2", "h3", "h4", "h5", "h6"})
LINE_TAGS = frozenset({"li", "dt", "tr"})  # separated from the next block by a line break, not a blank line
INLINE_CODE = frozenset({"code", "tt", "kbd", "samp"})
FURNITURE_TAGS = frozenset({"nav", "footer", "header", "form"})  # not aside: documentation puts footnotes there
_FURNITURE_NAME = re.compile(
    r"(?:share|sharing|social|byline|author|dateline|breadcrumbs?|related|newsletter|subscribe|promo|ads?|advert"
    r"|advertisement|sponsor|cookies?|consent|comments?|footer|header|masthead|nav|navbar|navigation|menu"
    r"|toolbar|banner|popup|modal|skip|tags|pagination|pager)(?:[-_].*)?")
_ANCHOR_TEXT = frozenset({"¶", "#", "§", "🔗", "⚓", "link", "permalink", "¶ link"})
_ANCHOR_TITLE = re.compile(r"permalink|link to this|permanent link|anchor", re.I)
ROOT_SHARE = 0.9  # the article root holds this share of the text trafilatura kept
MAX_CELL_BLOCKS = 3  # a table whose cells hold more blocks lays out a page


def read_html(data: bytes | str, *, article: bool = True) -> Extracted:
    """The article of an HTML page as text and blocks, with its title, author, date and canonical URL
    (``article=False``: the whole body, for an e-mail). Nothing is fetched: the page is parsed as given."""
    tree = parse(data)
    meta, kept = _trafilatura(tree) if article else (Metadata(), "")
    builder = TextBuilder()
    append_body(builder, tree, kept if article else None)
    return builder.extracted(meta, "no article text found in the HTML")


def parse(data: bytes | str):
    """The page's element tree, cleaned (:func:`clean`)."""
    import lxml.etree
    import lxml.html

    if (b"\x00" if isinstance(data, bytes) else "\x00") in data:
        raise DocumentError("binary content (NUL bytes)", "binary")
    if isinstance(data, str):
        data = re.sub(r"^\s*<\?xml[^>]*>", "", data)  # lxml refuses a str that declares an encoding
    try:
        tree = lxml.html.document_fromstring(data)
    except (ValueError, lxml.etree.ParserError) as exc:
        raise DocumentError(f"not an HTML page ({exc})", "damaged") from None
    clean(tree)
    return tree


def append_body(builder: TextBuilder, tree, kept: str | None) -> None:
    """Add the blocks of a parsed page to ``builder``: those of its article when ``kept`` is the text
    trafilatura kept, else of its whole body (an e-book's chapter, an e-mail)."""
    body = tree.find("body") if tree.find("body") is not None else tree
    root = article_root(body, kept) if kept is not None else body
    _Walker(builder, kept or "").walk(root)


def clean(tree) -> None:
    """Remove what is never text: scripts, styles, controls, hidden elements and heading anchors."""
    for el in list(tree.iter()):
        if not isinstance(el.tag, str):  # comments, processing instructions
            _drop(el)
        elif el.tag in SKIP_TAGS or _hidden(el) or _is_anchor(el):
            _drop(el)


def _drop(el) -> None:
    """Remove ``el`` but keep the text that follows it (its tail)."""
    parent = el.getparent()
    if parent is None:
        return
    tail = el.tail
    prev = el.getprevious()
    if tail:
        if prev is not None:
            prev.tail = (prev.tail or "") + tail
        else:
            parent.text = (parent.text or "") + tail
    parent.remove(el)


def _hidden(el) -> bool:
    style = (el.get("style") or "").replace(" ", "").lower()
    return el.get("hidden") is not None or el.get("aria-hidden") == "true" or "display:none" in style \
        or "visibility:hidden" in style


def _is_anchor(el) -> bool:
    """A heading's self-link: Sphinx's ``a.headerlink`` (¶), MkDocs' permalink (¶ or #), GitHub's anchor."""
    if el.tag != "a":
        return False
    classes = (el.get("class") or "").split()
    if any(c in ("headerlink", "anchor", "anchorjs-link", "heading-anchor", "header-anchor", "permalink")
           for c in classes):
        return True
    text = " ".join((el.text_content() or "").split()).lower()
    href = el.get("href") or ""
    return href.startswith("#") and (text in _ANCHOR_TEXT or (not text and bool(_ANCHOR_TITLE.search(
        el.get("title") or el.get("aria-label") or ""))) or bool(_ANCHOR_TITLE.search(el.get("title") or "")))


def _trafilatura(tree) -> tuple[Metadata, str]:
    """The page's metadata and the article text trafilatura keeps (main extractor only: its fallbacks return
    navigation links of a page without an article; the date only from the page's own markup)."""
    import trafilatura

    found = trafilatura.bare_extraction(
        copy.deepcopy(tree), fast=True, with_metadata=True, include_comments=False, include_tables=True,
        favor_precision=True, date_extraction_params={"extensive_search": False, "original_date": True})
    if found is None:
        return Metadata(), ""
    meta = Metadata(title=clean_field(found.title), url=clean_field(found.url), published=clean_field(found.date),
                    author=clean_field(found.author))
    return meta, " ".join((found.text or "").split())


def article_root(body, kept: str):
    """The deepest element whose blocks hold :data:`ROOT_SHARE` of the text trafilatura kept; the page's
    ``main`` (or body) when trafilatura kept nothing."""
    if not kept:
        for path in ('.//*[@role="main"]', ".//main", ".//article"):
            found = body.xpath(path)
            if len(found) == 1:
                return found[0]
        return body
    weight: dict = {}
    total = 0
    for el in body.iter("p", "pre", "li", "dt", "dd", "td", "th", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote"):
        text = " ".join(el.text_content().split())
        if len(text) >= 20 and text in kept:
            total += len(text)
            for anc in el.iterancestors():
                weight[anc] = weight.get(anc, 0) + len(text)
    if not total:
        return body
    best, depth = body, -1
    for el, w in weight.items():
        if w >= ROOT_SHARE * total:
            d = sum(1 for _ in el.iterancestors())
            if d > depth:
                best, depth = el, d
    return best


def _furniture(el) -> bool:
    if el.tag in FURNITURE_TAGS or el.get("role") in ("navigation", "banner", "contentinfo"):
        return True
    names = (el.get("class") or "").split() + (el.get("id") or "").split()
    return any(_FURNITURE_NAME.fullmatch(n.lower()) for n in names)


class _Walker:
    """Reads the blocks under an element in document order into a :class:`TextBuilder`."""

    def __init__(self, builder: TextBuilder, kept: str):
        self.out = builder
        self.kept = kept

    def walk(self, root) -> None:
        self._container(root, strict=_furniture(root) and root.tag != "body")

    def _keeps(self, text: str, links: int, strict: bool) -> bool:
        """Whether a block of ``text`` (``links`` of its characters inside links) is article content."""
        norm = " ".join(text.split())
        if norm and self.kept and (norm in self.kept if len(norm) >= 20 else f" {norm} " in f" {self.kept} "):
            return True
        return not strict and not (len(norm) and links >= 0.5 * len(norm))

    def _container(self, el, strict: bool) -> None:
        run: list = []  # inline content between block children: strings and inline elements
        for item in _run_of(el):
            if not isinstance(item, str) and (item.tag in BLOCK_TAGS or _has_block(item)):
                self._inline(run, strict)
                run = []
                self._block(item, strict or _furniture(item))
            else:
                run.append(item)
        self._inline(run, strict)

    def _block(self, el, strict: bool) -> None:
        tag = el.tag
        if tag == "pre":
            text = el.text_content()
            if self._keeps(text, 0, strict):
                self.out.end_lines()
                self.out.add(text, "code")
        elif tag in HEADINGS:
            text, spans, links = _inline_text([el])
            if self._keeps(text, links, strict):
                self.out.end_lines()
                self.out.add(text, "heading", nobreak=spans)
        elif tag == "table" and _is_data_table(el):
            self.out.end_lines()
            for row in el.iter("tr"):
                cells = [_inline_text([c]) for c in row if isinstance(c.tag, str) and c.tag in ("td", "th")]
                text, spans = _row(cells)
                if text and self._keeps(text, sum(n for _, _, n in cells), strict):
                    self.out.add(text, "body", nobreak=spans, line=True)
            self.out.end_lines()
        elif tag == "hr":
            self.out.end_lines()
        elif tag in CONTAINERS and _has_block(el):
            self._container(el, strict)
        elif tag == "dt":
            self._inline([el], strict, line=True, kind="heading")
        else:
            self._inline(_run_of(el), strict, line=tag in LINE_TAGS)

    def _inline(self, run: list, strict: bool, *, line: bool = False, kind: str = "body") -> None:
        """A paragraph of inline content; lines broken by ``<br>`` become blocks of their own, one line break
        apart."""
        pieces = _split_at_breaks(run)
        for piece in pieces:
            text, spans, linked = _inline_text(piece)
            if text.strip() and self._keeps(text, linked, strict):
                self.out.add(text, kind, nobreak=spans, line=line or len(pieces) > 1)


def _has_block(el) -> bool:
    return any(isinstance(c.tag, str) and (c.tag in BLOCK_TAGS or _has_block(c)) for c in el)


def _is_data_table(table) -> bool:
    """A table of data (rows of cells), not one that lays out a page: no cell holds a table, a heading or
    more than :data:`MAX_CELL_BLOCKS` blocks."""
    for cell in table.iter("td", "th"):
        blocks = [el for el in cell.iterdescendants() if isinstance(el.tag, str) and el.tag in BLOCK_TAGS]
        if len(blocks) > MAX_CELL_BLOCKS or any(el.tag == "table" or el.tag in HEADINGS for el in blocks):
            return False
    return True


def _row(cells: list[tuple[str, tuple[tuple[int, int], ...], int]]) -> tuple[str, tuple[tuple[int, int], ...]]:
    """A table row's text (its cells joined by `` | ``) and the inline code spans of its cells."""
    parts: list[str] = []
    spans: list[tuple[int, int]] = []
    at = 0
    for text, cell_spans, _ in cells:
        lead = len(text) - len(text.lstrip())
        text = text.strip()
        if not text:
            continue
        if parts:
            parts.append(" | ")
            at += 3
        spans.extend((at + s - lead, at + e - lead) for s, e in cell_spans)
        parts.append(text)
        at += len(text)
    return "".join(parts), tuple(spans)


def _run_of(el) -> list:
    """The content of ``el`` in order: its text, each child element and the text after it."""
    run: list = [el.text] if el.text else []
    for child in el:
        if isinstance(child.tag, str):
            run.append(child)
        if child.tail:
            run.append(child.tail)
    return run


def _split_at_breaks(run: list) -> list[list]:
    """Inline content split at top-level ``<br>`` elements (blank pieces left out)."""
    pieces: list[list] = [[]]
    for item in run:
        if not isinstance(item, str) and item.tag == "br":
            pieces.append([])
        else:
            pieces[-1].append(item)
    return [p for p in pieces if any(not isinstance(i, str) or i.strip() for i in p)]


def _inline_text(run: list) -> tuple[str, tuple[tuple[int, int], ...], int]:
    """The laid-out text of inline content (white space collapsed), the spans of its inline code, and how
    many of its characters are inside links."""
    parts: list[str] = []
    spans: list[tuple[int, int]] = []
    links = [0]
    length = [0]

    def emit(text: str) -> None:
        text = inline_text(text)
        if parts and parts[-1].endswith(" ") and text.startswith(" "):
            text = text[1:]
        if not parts and text.startswith(" "):
            text = text[1:]
        parts.append(text)
        length[0] += len(text)

    def visit(el, in_link: bool) -> None:
        if el.tag == "br":
            emit(" ")
            return
        start = length[0]
        link = in_link or el.tag == "a"
        if el.text:
            before = length[0]
            emit(el.text)
            if link:
                links[0] += length[0] - before
        for child in el:
            if isinstance(child.tag, str):
                if child.tag in BLOCK_TAGS:
                    emit(" ")
                visit(child, link)
                if child.tag in BLOCK_TAGS:
                    emit(" ")
            if child.tail:
                before = length[0]
                emit(child.tail)
                if link:
                    links[0] += length[0] - before
        if el.tag in INLINE_CODE and length[0] > start:
            spans.append((start, length[0]))

    for item in run:
        if isinstance(item, str):
            emit(item)
        else:
            visit(item, False)
    return "".join(parts), tuple(spans), links[0]

"""Word (``.docx``, python-docx), OpenDocument text (``.odt``), EPUB (``.epub``) and RTF (``.rtf``,
striprtf) files: their paragraphs, headings, list items and table rows, one block each, in document order.

``.odt`` and ``.epub`` are zip files of XML, read with lxml (an OpenDocument's ``content.xml``; an e-book's
chapters in the order of its spine, each read as HTML by :mod:`qa.formats.html`).
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Callable
from posixpath import dirname, join, normpath

from qa.formats.base import (DAMAGED, ENCRYPTED, DocumentError, Extracted, Metadata, TextBuilder, clean_field,
                             inline_text)

_HEADING_STYLE = re.compile(r"^(?:heading|überschrift|titre|título|titolo)\s*\d", re.I)
_CODE_STYLE = re.compile(r"code|source|preformatted|verbatim|macro text", re.I)
_LIST_STYLE = re.compile(r"list", re.I)
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # an encrypted Office file (or a legacy .doc) is an OLE file
ODF = {"text": "urn:oasis:names:tc:opendocument:xmlns:text:1.0",
       "table": "urn:oasis:names:tc:opendocument:xmlns:table:1.0",
       "office": "urn:oasis:names:tc:opendocument:xmlns:office:1.0",
       "dc": "http://purl.org/dc/elements/1.1/",
       "meta": "urn:oasis:names:tc:opendocument:xmlns:meta:1.0",
       "manifest": "urn:oasis:names:tc:opendocument:xmlns:manifest:1.0"}


def _open_zip(data: bytes, what: str) -> zipfile.ZipFile:
    if data.startswith(_OLE_MAGIC):
        if "EncryptedPackage".encode("utf-16-le") in data:
            raise DocumentError("encrypted: it needs a password to be opened", ENCRYPTED)
        raise DocumentError(f"not a {what} file (an older binary format)", DAMAGED)
    try:
        return zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError) as exc:
        raise DocumentError(f"damaged or not a {what} file ({exc})", DAMAGED) from None


def read_docx(data: bytes) -> Extracted:
    """A Word document: paragraphs ("Title" style: the title; "Heading N": headings; list paragraphs:
    items; code styles: code; a line break inside a paragraph: lines), tables row by row (cells joined by
    `` | ``); title, author and creation date from its core properties."""
    import docx
    from docx.opc.exceptions import PackageNotFoundError
    from docx.table import Table

    _open_zip(data, "Word").close()
    try:
        document = docx.Document(io.BytesIO(data))
        builder = TextBuilder()
        for item in document.iter_inner_content():
            if isinstance(item, Table):
                _docx_table(builder, item)
            else:
                _docx_paragraph(builder, item)
        props = document.core_properties
        meta = Metadata(title=clean_field(props.title), author=clean_field(props.author),
                        published=props.created.date().isoformat() if props.created else None)
    except (PackageNotFoundError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise DocumentError(f"damaged Word file ({exc})", DAMAGED) from None
    return builder.extracted(meta, "no text")


def _docx_paragraph(builder: TextBuilder, paragraph) -> None:
    style = (paragraph.style.name if paragraph.style is not None else "") or ""
    text = paragraph.text
    if style == "Title":
        builder.add(inline_text(text), "title")
    elif _HEADING_STYLE.match(style):
        builder.add(inline_text(text), "heading")
    elif _CODE_STYLE.search(style):
        builder.add(text.replace("\t", "    "), "code")
    else:
        is_item = bool(_LIST_STYLE.search(style))
        lines = [line for line in text.split("\n") if line.strip()]
        for line in lines:
            builder.add(inline_text(line), "body", line=is_item or len(lines) > 1)
        if not is_item:
            builder.end_lines()


def _docx_table(builder: TextBuilder, table) -> None:
    builder.end_lines()
    for row in table.rows:
        cells: list[str] = []
        for cell in row.cells:
            text = inline_text(cell.text).strip()
            if text and (not cells or cells[-1] != text):  # a merged cell comes once per grid column it spans
                cells.append(text)
        builder.add(" | ".join(cells), "body", line=True)
    builder.end_lines()


def read_odt(data: bytes) -> Extracted:
    """An OpenDocument text: headings, paragraphs, list items and table rows of ``content.xml``; title,
    author and date from ``meta.xml``."""
    from lxml import etree

    archive = _open_zip(data, "OpenDocument")
    with archive:
        names = set(archive.namelist())
        if "META-INF/manifest.xml" in names and b"encryption-data" in archive.read("META-INF/manifest.xml"):
            raise DocumentError("encrypted: it needs a password to be opened", ENCRYPTED)
        try:
            content = etree.fromstring(archive.read("content.xml"))
            meta_xml = etree.fromstring(archive.read("meta.xml")) if "meta.xml" in names else None
        except (KeyError, etree.XMLSyntaxError) as exc:
            raise DocumentError(f"damaged OpenDocument file ({exc})", DAMAGED) from None
    builder = TextBuilder()
    for body in content.iterfind(".//office:text", ODF):
        _odf_blocks(builder, body)
    meta = Metadata()
    if meta_xml is not None:
        def first(path: str) -> str | None:
            found = meta_xml.find(path, ODF)
            return clean_field(found.text) if found is not None else None

        meta = Metadata(title=first(".//dc:title"), author=first(".//meta:initial-creator") or first(".//dc:creator"),
                        published=(first(".//meta:creation-date") or "")[:10] or None)
    return builder.extracted(meta, "no text")


def _odf_blocks(builder: TextBuilder, el, item: bool = False) -> None:
    for child in el:
        tag = child.tag.split("}")[-1] if isinstance(child.tag, str) else ""
        if tag == "h":
            builder.end_lines()
            builder.add(inline_text(_odf_text(child)), "heading")
        elif tag == "p":
            builder.add(inline_text(_odf_text(child)), "body", line=item)
        elif tag in ("list", "list-item", "list-header"):
            _odf_blocks(builder, child, item=True)
            if tag == "list":
                builder.end_lines()
        elif tag == "table":
            builder.end_lines()
            for row in child.iterfind(".//table:table-row", ODF):
                cells = [inline_text(_odf_text(c)).strip() for c in row.iterfind("table:table-cell", ODF)]
                builder.add(" | ".join(c for c in cells if c), "body", line=True)
            builder.end_lines()
        elif tag in ("section", "index-body", "table-of-content"):
            _odf_blocks(builder, child, item)


def _odf_text(el) -> str:
    """The text of an ODF paragraph: ``text:s`` as spaces, tabs and line breaks as spaces, notes left out."""
    parts: list[str] = [el.text or ""]
    for child in el:
        tag = child.tag.split("}")[-1] if isinstance(child.tag, str) else ""
        if tag == "s":
            parts.append(" " * int(child.get(f"{{{ODF['text']}}}c", "1")))
        elif tag in ("tab", "line-break"):
            parts.append(" ")
        elif tag not in ("note", "annotation", "bookmark", "soft-page-break"):
            parts.append(_odf_text(child))
        parts.append(child.tail or "")
    return "".join(parts)


def read_epub(data: bytes) -> Extracted:
    """An e-book: its chapters in the order of the spine (``container.xml`` → the package document), each
    read as HTML; title, author and date from the package's Dublin Core metadata."""
    from lxml import etree

    from qa.formats.html import append_body, parse

    archive = _open_zip(data, "EPUB")
    builder = TextBuilder()
    with archive:
        names = set(archive.namelist())
        if "META-INF/encryption.xml" in names:
            raise DocumentError("encrypted (DRM): its chapters cannot be read", ENCRYPTED)
        try:
            container = etree.fromstring(archive.read("META-INF/container.xml"))
            opf_path = container.find(".//{*}rootfile").get("full-path")
            opf = etree.fromstring(archive.read(opf_path))
            items = {i.get("id"): i.get("href") for i in opf.iterfind(".//{*}manifest/{*}item")}
            spine = [items[r.get("idref")] for r in opf.iterfind(".//{*}spine/{*}itemref") if r.get("idref") in items]
            for href in spine:
                name = normpath(join(dirname(opf_path), href.split("#")[0]))
                if name in names:
                    append_body(builder, parse(archive.read(name)), None)
                    builder.end_lines()
        except (KeyError, AttributeError, etree.XMLSyntaxError) as exc:
            raise DocumentError(f"damaged EPUB file ({exc})", DAMAGED) from None

    def first(tag: str) -> str | None:
        found = opf.find(f".//{{http://purl.org/dc/elements/1.1/}}{tag}")
        return clean_field(found.text) if found is not None else None

    meta = Metadata(title=first("title"), author=first("creator"), published=first("date"))
    return builder.extracted(meta, "no text")


def read_rtf(data: bytes) -> Extracted:
    """An RTF document's paragraphs (striprtf), one block each; RTF has no reliable metadata here."""
    from striprtf.striprtf import rtf_to_text

    if not data.lstrip().startswith(b"{\\rtf"):
        raise DocumentError("damaged or not an RTF file (it does not start with {\\rtf)", DAMAGED)
    try:
        text = rtf_to_text(data.decode("latin-1"), errors="ignore")
    except (ValueError, IndexError) as exc:
        raise DocumentError(f"damaged RTF file ({exc})", DAMAGED) from None
    builder = TextBuilder()
    for paragraph in text.split("\n"):
        builder.add(inline_text(paragraph), "body")
    return builder.extracted(Metadata(), "no text")


READERS: dict[str, Callable[[bytes], Extracted]] = {".docx": read_docx, ".odt": read_odt, ".epub": read_epub,
                                                    ".rtf": read_rtf}

"""Small real documents made at test time: PDFs (reportlab), Word files (python-docx), OpenDocument texts and
EPUB books (zip files of XML, as their specifications lay them out), RTF and e-mail messages."""

from __future__ import annotations

import io
import zipfile
from email.message import EmailMessage

PARAGRAPH_LINES = [  # one paragraph, wrapped as a PDF sets it; "unani-" / "mous" is hyphenated
    "The council met on Tuesday to discuss the library budget for the",
    "coming year, and after a long debate it approved an increase of twelve",
    "percent for the public library. The chair said the money would pay for",
    "longer opening hours and new books. The vote was unani-",
    "mous.",
]


def pdf(pages: list[list[str]], *, title: str | None = "Library Report", header: str | None = "City Council Minutes",
        footer: bool = True, encrypt: str | None = None, columns: list[list[list[str]]] | None = None,
        big_title: str | None = None) -> bytes:
    """A PDF with one page per list of lines (Helvetica 11, 14 points apart), a running header and a "Page n"
    footer on every page; ``columns``: pages of two columns (left, right), drawn left column first;
    ``big_title``: a line in 24-point type at the top of the first page."""
    from reportlab.lib import pdfencrypt
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=A4, encrypt=pdfencrypt.StandardEncryption(encrypt) if encrypt else None)
    if title:
        c.setTitle(title)
    c.setAuthor("Jane Clerk")
    for number, lines in enumerate(columns or pages, start=1):
        if header:
            c.setFont("Helvetica", 9)
            c.drawString(72, 800, header)
        y = 760
        if big_title and number == 1:
            c.setFont("Helvetica-Bold", 24)
            c.drawString(72, y, big_title)
            y -= 40
        c.setFont("Helvetica", 11)
        if columns:
            for x, column in zip((72, 320), lines):
                for i, line in enumerate(column):
                    c.drawString(x, y - 14 * i, line)
        else:
            for i, line in enumerate(lines):
                c.drawString(72, y - 14 * i, line)
        if footer:
            c.setFont("Helvetica", 9)
            c.drawString(290, 40, f"Page {number}")
        c.showPage()
    c.save()
    return buf.getvalue()


def image_only_pdf(pages: int = 2) -> bytes:
    """A PDF whose pages hold drawings and no text (as a scan would)."""
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    c = canvas.Canvas(buf)
    for _ in range(pages):
        c.rect(72, 400, 300, 200, fill=1)
        c.showPage()
    c.save()
    return buf.getvalue()


def docx() -> bytes:
    """A Word document: title, heading, two paragraphs (one with a line break), a bulleted list, a table, and
    core properties."""
    import datetime

    import docx as python_docx

    document = python_docx.Document()
    document.core_properties.title = "Harbour Report"
    document.core_properties.author = "Port Authority"
    document.core_properties.created = datetime.datetime(2024, 5, 1, 9, 30)
    document.add_paragraph("Harbour Report", style="Title")
    document.add_heading("Traffic", level=1)
    document.add_paragraph("Ships came back on Monday. The storm had closed the port for a week.")
    document.add_paragraph("Harbour Office\n1 Quay Street\nPortsmouth")
    document.add_paragraph("Cranes were repaired", style="List Bullet")
    document.add_paragraph("The pier reopened", style="List Bullet")
    table = document.add_table(rows=2, cols=2)
    for row, (name, value) in zip(table.rows, [("Ships", "42"), ("Containers", "1,200")]):
        row.cells[0].text, row.cells[1].text = name, value
    buf = io.BytesIO()
    document.save(buf)
    return buf.getvalue()


ODF_NS = ('xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
          'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
          'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
          'xmlns:meta="urn:oasis:names:tc:opendocument:xmlns:meta:1.0" xmlns:dc="http://purl.org/dc/elements/1.1/"')


def odt() -> bytes:
    content = f"""<?xml version="1.0" encoding="UTF-8"?>
<office:document-content {ODF_NS}><office:body><office:text>
<text:h text:outline-level="1">Flood warning</text:h>
<text:p>The river rose<text:s text:c="2"/>two metres overnight. Roads were closed.</text:p>
<text:list><text:list-item><text:p>Bring sandbags</text:p></text:list-item>
<text:list-item><text:p>Move cars to high ground</text:p></text:list-item></text:list>
<table:table><table:table-row><table:table-cell><text:p>Level</text:p></table:table-cell>
<table:table-cell><text:p>4.2 m</text:p></table:table-cell></table:table-row></table:table>
</office:text></office:body></office:document-content>"""
    meta = f"""<?xml version="1.0" encoding="UTF-8"?>
<office:document-meta {ODF_NS}><office:meta><dc:title>River levels</dc:title>
<meta:initial-creator>Water Board</meta:initial-creator><meta:creation-date>2024-03-02T08:00:00</meta:creation-date>
</office:meta></office:document-meta>"""
    return _zip({"mimetype": "application/vnd.oasis.opendocument.text", "content.xml": content, "meta.xml": meta})


def epub() -> bytes:
    container = """<?xml version="1.0"?><container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">
<rootfiles><rootfile full-path="OEBPS/book.opf" media-type="application/oebps-package+xml"/></rootfiles></container>"""
    opf = """<?xml version="1.0"?><package xmlns="http://www.idpf.org/2007/opf" version="3.0">
<metadata xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>The Lighthouse</dc:title>
<dc:creator>A. Keeper</dc:creator><dc:date>1901</dc:date></metadata>
<manifest><item id="c1" href="one.xhtml" media-type="application/xhtml+xml"/>
<item id="c2" href="two.xhtml" media-type="application/xhtml+xml"/></manifest>
<spine><itemref idref="c1"/><itemref idref="c2"/></spine></package>"""
    page = '<?xml version="1.0" encoding="utf-8"?><html xmlns="http://www.w3.org/1999/xhtml"><body>{}</body></html>'
    return _zip({"mimetype": "application/epub+zip", "META-INF/container.xml": container, "OEBPS/book.opf": opf,
                 "OEBPS/one.xhtml": page.format("<h1>Chapter One</h1><p>The lamp was lit at dusk. It burned all night.</p>"),
                 "OEBPS/two.xhtml": page.format("<h1>Chapter Two</h1><p>A ship passed the rocks safely.</p>")})


RTF = (rb"{\rtf1\ansi\deff0 {\fonttbl {\f0 Times;}}"
       rb"\f0 The bridge opened in 1932.\par It carries trains and cars.\par Caf\'e9 owners welcomed it.\par}")


def eml(body: str, *, html: str | None = None, subject: str = "Budget vote tonight") -> bytes:
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = "Ann Clerk <ann@example.org>"
    message["To"] = "council@example.org"
    message["Date"] = "Wed, 01 May 2024 09:30:00 +0200"
    if body:
        message.set_content(body)
    if html is not None:
        if body:
            message.add_alternative(html, subtype="html")
        else:
            message.set_content(html, subtype="html")
    return bytes(message)


def _zip(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buf.getvalue()

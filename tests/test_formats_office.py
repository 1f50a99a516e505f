"""Word, OpenDocument, EPUB and RTF files (qa/formats/office.py), made at test time."""

from __future__ import annotations

import pytest

from qa.formats import DocumentError, read_file_bytes
from qa.ingest import make_document, split_sentences
from tests import makers


def read(data: bytes, suffix: str):
    found = read_file_bytes(data, suffix)
    name = f"doc{suffix}"
    doc = make_document(name, found.text, found.meta, source=name, blocks=found.blocks)
    sents = split_sentences(doc)
    assert all(doc.raw[s.start:s.end] == s.text for s in sents)
    return doc, [(s.kind, s.text) for s in sents]


def test_a_word_document_reads_as_paragraphs_headings_items_and_table_rows():
    doc, got = read(makers.docx(), ".docx")
    assert (doc.title, doc.author, doc.published) == ("Harbour Report", "Port Authority", "2024-05-01")
    assert got == [("title", "Harbour Report"), ("heading", "Traffic"), ("body", "Ships came back on Monday."),
                   ("body", "The storm had closed the port for a week."), ("body", "Harbour Office"),
                   ("body", "1 Quay Street"), ("body", "Portsmouth"), ("body", "Cranes were repaired"),
                   ("body", "The pier reopened"), ("body", "Ships | 42"), ("body", "Containers | 1,200")]


def test_an_opendocument_text():
    doc, got = read(makers.odt(), ".odt")
    assert (doc.title, doc.author, doc.published) == ("River levels", "Water Board", "2024-03-02")
    assert got == [("heading", "Flood warning"), ("body", "The river rose two metres overnight."),
                   ("body", "Roads were closed."), ("body", "Bring sandbags"), ("body", "Move cars to high ground"),
                   ("body", "Level | 4.2 m")]


def test_an_epub_book_reads_its_chapters_in_spine_order():
    doc, got = read(makers.epub(), ".epub")
    assert (doc.title, doc.author, doc.published) == ("The Lighthouse", "A. Keeper", "1901")
    assert got == [("heading", "Chapter One"), ("body", "The lamp was lit at dusk."), ("body", "It burned all night."),
                   ("heading", "Chapter Two"), ("body", "A ship passed the rocks safely.")]


def test_an_rtf_document():
    doc, got = read(makers.RTF, ".rtf")
    assert got == [("body", "The bridge opened in 1932."), ("body", "It carries trains and cars."),
                   ("body", "Café owners welcomed it.")]


@pytest.mark.parametrize("data, suffix, reason", [
    (b"PK\x03\x04 broken zip", ".docx", "damaged"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + "EncryptedPackage".encode("utf-16-le"), ".docx", "encrypted"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1 a Word 97 file", ".docx", "damaged"),
    (b"not a zip at all", ".odt", "damaged"),
    (b"plain text", ".rtf", "damaged"),
    (b"not a zip at all", ".epub", "damaged"),
])
def test_office_files_that_cannot_be_read_say_why(data, suffix, reason):
    with pytest.raises(DocumentError) as info:
        read_file_bytes(data, suffix)
    assert info.value.reason == reason

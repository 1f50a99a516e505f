"""PDF files (qa/formats/pdf.py), made at test time with reportlab: text, pages, hyphens, running headers and
footers, two columns, titles, and the PDFs that cannot be read."""

from __future__ import annotations

import pytest

from qa.formats import DocumentError, Metadata, read_file_bytes
from qa.formats.pdf import clean_lines, join_pages, pdf_date, read_pdf, without_running_lines
from qa.ingest import make_document, split_sentences
from tests import makers


def sentences_of(data: bytes, name: str = "report.pdf"):
    found = read_pdf(data)
    doc = make_document(name, found.text, found.meta, source=name, pages=found.pages)
    return doc, split_sentences(doc)


def test_a_wrapped_paragraph_reads_as_sentences_with_the_hyphenated_word_joined():
    doc, sents = sentences_of(makers.pdf([makers.PARAGRAPH_LINES], header=None))
    texts = [" ".join(s.text.split()) for s in sents]
    assert texts == [
        "The council met on Tuesday to discuss the library budget for the coming year, and after a long debate it "
        "approved an increase of twelve percent for the public library.",
        "The chair said the money would pay for longer opening hours and new books.",
        "The vote was unanimous.",
    ]
    assert all(doc.raw[s.start:s.end] == s.text for s in sents)
    assert "\n" in sents[0].text  # the sentence keeps the line breaks of the page


def test_running_headers_footers_and_page_numbers_are_removed_and_pages_are_known():
    pages = [["The first page says the harbour reopened."], ["The second page lists the ships."],
             ["The third page thanks the crews."]]
    doc, sents = sentences_of(makers.pdf(pages))
    assert "City Council Minutes" not in doc.raw and "Page" not in doc.raw
    assert [s.text for s in sents] == [lines[0] for lines in pages]
    assert len(doc.pages) == 3 and doc.pages[0] == 0
    assert [doc.page_of(s.start) for s in sents] == [1, 2, 3]


def test_a_sentence_that_goes_on_over_a_page_break_is_one_sentence_on_the_page_it_starts():
    doc, sents = sentences_of(makers.pdf([["The committee agreed that the new bridge"],
                                          ["would open in May. Traffic will be diverted."]]))
    assert [" ".join(s.text.split()) for s in sents] == [
        "The committee agreed that the new bridge would open in May.", "Traffic will be diverted."]
    assert [doc.page_of(s.start) for s in sents] == [1, 2]


def test_two_columns_are_read_one_after_the_other():
    left = ["The left column starts the story of", "the storm that hit the coast."]
    right = ["The right column tells how the", "town was rebuilt afterwards."]
    doc, sents = sentences_of(makers.pdf([], columns=[[left, right]], header=None))
    assert [" ".join(s.text.split()) for s in sents] == [
        "The left column starts the story of the storm that hit the coast.",
        "The right column tells how the town was rebuilt afterwards."]


def test_metadata_and_a_title_from_the_largest_type():
    found = read_pdf(makers.pdf([["A line of text."]]))
    assert (found.meta.title, found.meta.author) == ("Library Report", "Jane Clerk")
    assert found.meta.published and len(found.meta.published) == 10  # an ISO date
    found = read_pdf(makers.pdf([["Minutes of the meeting follow here."]], title=None, big_title="Annual Harbour Review"))
    assert found.meta.title == "Annual Harbour Review"


@pytest.mark.parametrize("data, reason", [
    (makers.image_only_pdf(), "no text layer"),
    (makers.pdf([["Secret minutes."]], encrypt="hunter2"), "encrypted"),
    (makers.pdf([["Cut short."]])[:300], "damaged"),
    (b"%PDF-1.4\nnot really a PDF", "damaged"),
])
def test_pdfs_that_cannot_be_read_say_why(data, reason):
    with pytest.raises(DocumentError) as info:
        read_file_bytes(data, ".pdf")
    assert info.value.reason == reason


def test_clean_lines_joins_marked_hyphens_and_spells_out_ligatures():
    raw = "a \ufb01nal inde\x02pendent, you see\r\nthe end of a para\ufffe\ngraph here\r\n\x0fx. . . . . 12"
    assert clean_lines(raw) == ["a final independent,", "you see", "the end of a paragraph", "here", "x 12"]


def test_running_lines_recur_at_the_page_edges():
    pages = [["Annual Report 2026", "Body of page one."], ["Annual Report 2026", "Body of page two."],
             ["Annual Report 2026", "Body of page three.", "iii"]]
    assert without_running_lines(pages) == [["Body of page one."], ["Body of page two."], ["Body of page three."]]
    text, starts = join_pages([["One."], [], ["Two."]])
    assert text == "One.\n\nTwo." and starts == (0, 4, 6)


def test_pdf_dates():
    assert pdf_date("D:20221106153606-08'00'") == "2022-11-06"
    assert pdf_date("D:2015") == "2015" and pdf_date(None) is None and pdf_date("yesterday") is None


def test_a_document_without_pages_has_no_page():
    doc = make_document("a.txt", "Plain text.", Metadata())
    assert doc.pages is None and doc.page_of(0) is None

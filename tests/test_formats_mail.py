"""E-mail messages (qa/formats/mail.py): subject, sender and date as metadata, the text part as the article."""

from __future__ import annotations

import textwrap

import pytest

from qa.formats import DocumentError, read_file_bytes
from qa.ingest import make_document, split_sentences
from tests import makers

BODY = ("Dear colleagues, the council met on Tuesday to discuss the library budget for the coming year, and after "
        "a long debate it approved an increase of twelve percent for the public library. The chair said the money "
        "would pay for longer opening hours and new books. The vote is tonight at seven in the town hall, and the "
        "members of the public who wish to speak must register at the front desk before the meeting starts.")


def read(data: bytes):
    found = read_file_bytes(data, ".eml")
    doc = make_document("mail.eml", found.text, found.meta, source="mail.eml", blocks=found.blocks)
    sents = split_sentences(doc)
    assert all(doc.raw[s.start:s.end] == s.text for s in sents)
    return doc, [" ".join(s.text.split()) for s in sents]


def test_a_plain_text_mail_wrapped_at_72_columns_reads_as_sentences():
    doc, got = read(makers.eml(textwrap.fill(BODY, 72) + "\n\nAnn\n"))
    assert (doc.title, doc.author, doc.published) == ("Budget vote tonight", "Ann Clerk <ann@example.org>",
                                                      "2024-05-01T09:30:00+02:00")
    assert got[:2] == ["Dear colleagues, the council met on Tuesday to discuss the library budget for the coming "
                       "year, and after a long debate it approved an increase of twelve percent for the public "
                       "library.", "The chair said the money would pay for longer opening hours and new books."]
    assert got[-1] == "Ann"


def test_an_html_only_mail_reads_its_html_part():
    doc, got = read(makers.eml("", html="<html><body><p>The bridge reopens on <b>Friday</b>.</p>"
                                        "<p>Trucks may cross again.</p></body></html>"))
    assert got == ["The bridge reopens on Friday.", "Trucks may cross again."]
    assert doc.title == "Budget vote tonight"


def test_a_mail_without_text_is_empty():
    with pytest.raises(DocumentError) as info:
        read_file_bytes(makers.eml(""), ".eml")
    assert info.value.reason == "empty"

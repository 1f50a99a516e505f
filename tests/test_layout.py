"""The paragraph rule (qa/layout.py): wrapped lines are one paragraph, line structure stays, code is code."""

from __future__ import annotations

import textwrap

from hypothesis import given, settings
from hypothesis import strategies as st

from qa.ingest import split_sentences
from qa.layout import _paragraphs, layout_key, text_units, wrap_width
from qa.types import Block, Document

BUDGET = ("The council met on Tuesday to discuss the library budget for the coming year, and after a long debate "
          "it approved an increase of twelve percent for the public library. The chair said the money would pay "
          "for longer opening hours and new books.")


def sentences(raw: str, name: str = "doc.txt") -> list[tuple[str, str]]:
    doc = Document(name, "", raw)
    out = split_sentences(doc)
    assert all(raw[s.start:s.end] == s.text for s in out)
    return [(s.kind, " ".join(s.text.split())) for s in out]


def test_a_paragraph_wrapped_at_72_columns_reads_as_sentences_not_lines():
    raw = textwrap.fill(BUDGET, 72) + "\n\nThe vote was close.\n"
    assert sentences(raw) == [
        ("body", "The council met on Tuesday to discuss the library budget for the coming year, and after a long "
                 "debate it approved an increase of twelve percent for the public library."),
        ("body", "The chair said the money would pay for longer opening hours and new books."),
        ("body", "The vote was close.")]
    doc = Document("doc.txt", "", raw)
    first = split_sentences(doc)[0]
    assert "\n" in first.text  # the canonical text is the file: a cited sentence may hold a line break


def test_the_wrap_width_is_measured_from_the_lines():
    raw = "\n\n".join(textwrap.fill(BUDGET * 2, width) for width in (60, 60))
    assert wrap_width(_paragraphs(raw)) == 60
    assert wrap_width(_paragraphs("One line.\n\nAnother line.\n")) is None


def test_a_number_or_a_capital_that_a_wrap_puts_first_on_a_line_does_not_cut_the_sentence():
    raw = textwrap.fill("Nauru gained its independence in the year after the long negotiations of the trust "
                        "council, on 31 January 1968. It is a small island.", 54)
    raw = textwrap.fill(BUDGET, 54) + "\n\n" + raw  # enough full lines to show the text is wrapped at 54
    assert raw.splitlines()[-1].startswith("1968.")
    assert [t for _, t in sentences(raw)][-2:] == [
        "Nauru gained its independence in the year after the long negotiations of the trust council, on 31 January "
        "1968.", "It is a small island."]


def test_verse_addresses_and_lists_keep_their_lines():
    verse = "Shall I compare thee to a summer's day?\nThou art more lovely and more temperate:\n" \
            "Rough winds do shake the darling buds of May,\nAnd summer's lease hath all too short a date;\n"
    assert len(sentences(verse)) == 4
    address = "Harbour Office\n1 Quay Street\nPortsmouth PO1 3LJ\n"
    assert [t for _, t in sentences(address)] == ["Harbour Office", "1 Quay Street", "Portsmouth PO1 3LJ"]
    items = "What to bring:\n- a torch\n- warm clothes\n1. Register at the desk\n2. Collect your badge\n"
    assert [t for _, t in sentences(items)] == ["What to bring:", "- a torch", "- warm clothes",
                                                "1. Register at the desk", "2. Collect your badge"]
    assert [k for k, _ in sentences(items)][1:] == ["body"] * 4  # items are not headings


def test_a_list_item_wrapped_with_a_hanging_indent_is_one_item():
    raw = ("Steps:\n1. Open the valve slowly until the gauge shows a steady\n   pressure, then close it again.\n"
           "2. Write down the reading.\n")
    assert [t for _, t in sentences(raw)][1:] == [
        "1. Open the valve slowly until the gauge shows a steady pressure, then close it again.",
        "2. Write down the reading."]


def test_a_heading_above_a_paragraph_is_not_joined_to_it():
    raw = "Budget\nThe council met on Tuesday to discuss the library budget for the coming year.\n"
    assert sentences(raw)[0] == ("title", "Budget")
    raw = "Intro text here.\n\nCHAPTER IV\nThe night was cold. Snow fell on the roofs of the village.\n"
    assert ("heading", "CHAPTER IV") in sentences(raw)


def test_markdown_soft_breaks_are_spaces_and_code_is_code():
    raw = ("# Install\n\nRun the installer and\nfollow the steps.  \nThen restart.\n\n```\npip install qa\n"
           "qa index --corpus docs\n```\n\n    indented = code(1.5)\n    print(indented)\n")
    got = sentences(raw, "guide.md")
    assert got == [("title", "Install"), ("body", "Run the installer and follow the steps."),
                   ("body", "Then restart."), ("code", "pip install qa qa index --corpus docs"),
                   ("code", "indented = code(1.5) print(indented)")]
    doc = Document("guide.md", "", raw)
    code = [s for s in split_sentences(doc) if s.kind == "code"][0]
    assert code.text == "pip install qa\nqa index --corpus docs"  # a code unit keeps its lines


def test_structured_blocks_are_units_and_their_inline_code_is_never_cut():
    raw = "Dates\n\nUse date(2002, 12, 4).weekday() for the weekday. It returns 2.\n\nx = 1\ny = 2"
    inline, body, code = raw.index("date("), raw.index("Use"), raw.index("x = 1")
    blocks = (Block(0, 5, "heading"), Block(body, code - 2, "body"), Block(inline, inline + 28, "nobreak"),
              Block(code, len(raw), "code"))
    doc = Document("page.html", "Dates", raw, blocks=blocks)
    assert [(s.kind, s.text) for s in split_sentences(doc)] == [
        ("title", "Dates"), ("body", "Use date(2002, 12, 4).weekday() for the weekday."), ("body", "It returns 2."),
        ("code", "x = 1\ny = 2")]
    assert layout_key(doc).startswith("blocks:") and layout_key(Document("a.md", "", raw)) == "md"


def test_text_units_of_a_plain_file_without_wraps_are_its_lines():
    raw = "First paragraph is one line.\nSecond paragraph is another line.\n"
    assert [u.text for u in text_units(raw)] == ["First paragraph is one line.", "Second paragraph is another line."]


_word = st.text(alphabet=st.characters(codec="utf-8", categories=("L", "N", "P")), min_size=1, max_size=10)
_paragraph = st.lists(_word, min_size=1, max_size=40).map(" ".join)


@settings(max_examples=200, deadline=None)
@given(st.lists(_paragraph, min_size=1, max_size=5), st.integers(min_value=20, max_value=90),
       st.sampled_from(["doc.txt", "doc.md"]))
def test_wrapped_text_keeps_exact_offsets(paragraphs, width, name):
    raw = "\n\n".join(textwrap.fill(p, width) for p in paragraphs)
    doc = Document(name, "", raw)
    for s in split_sentences(doc):
        assert raw[s.start:s.end] == s.text and s.text == s.text.strip() and s.text

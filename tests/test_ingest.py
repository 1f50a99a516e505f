from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from qa.ingest import content_blocks, load_corpus, read_document, split_block, split_sentences
from qa.types import Document

SEEDS = Path(__file__).resolve().parent.parent / "seeds"


def test_seed_documents_keep_raw_text_and_find_titles():
    docs = load_corpus(SEEDS)
    assert [d.doc_id for d in docs] == ["000_f45c79c16f6a0511.txt", "004_efe84b1d27e376f8.txt"]
    for d in docs:
        assert d.raw == (SEEDS / d.doc_id).read_bytes().decode("utf-8")
    assert docs[0].title == "Islamabad requests Taliban to clamp down on TTP"  # not the "ASIA" label
    assert docs[1].title == "Will the Taliban crack down on TTP as per Islamabad’s request?"


def test_page_furniture_never_becomes_a_sentence():
    for doc in load_corpus(SEEDS):
        texts = {s.text for s in split_sentences(doc)}
        assert not texts & {"ASIA", "Published", "on", "MOST READ", "Exit mobile version"}


def test_offsets_slice_the_raw_file_exactly():
    for doc in load_corpus(SEEDS):
        sents = split_sentences(doc)
        assert len(sents) > 30
        for i, s in enumerate(sents):
            assert s.index == i
            assert doc.raw[s.start:s.end] == s.text
            assert s.text == s.text.strip() and s.text


def test_curly_quotes_quotations_and_headings():
    doc = load_corpus(SEEDS)[0]
    sents = split_sentences(doc)
    by_text = {s.text: s for s in sents}
    # A quotation of two sentences followed by its attribution stays one sentence.
    quote = next(s for s in sents if s.text.startswith("“The Afghans are known"))
    assert quote.text.endswith("a Taliban official said.")
    # A heading without a final stop is its own sentence, not glued to the next paragraph.
    assert by_text["TTP is internal issue of Pakistan"].kind == "heading"
    assert sents[0].kind == "title"


def test_abbreviations_do_not_split():
    text = "Mr. Khan met Dr. Ali at 5 p.m. in Kabul. They spoke for an hour."
    spans = split_block(text)
    assert [text[s:e] for s, e in spans] == ["Mr. Khan met Dr. Ali at 5 p.m. in Kabul.", "They spoke for an hour."]


def test_bad_files_are_skipped_with_a_warning(tmp_path, caplog):
    (tmp_path / "good.txt").write_text("Headline\n\nA sentence here. Another one.\n", encoding="utf-8")
    (tmp_path / "latin1.txt").write_bytes("Caf\xe9 au lait.".encode("latin-1"))
    (tmp_path / "empty.txt").write_text("  \n\n", encoding="utf-8")
    (tmp_path / "binary.txt").write_bytes(b"\x89PNG\x00\x01\x02")
    (tmp_path / "notes.md").write_text("ignored: not .txt", encoding="utf-8")
    with caplog.at_level("WARNING"):
        docs = load_corpus(tmp_path)
    assert [d.doc_id for d in docs] == ["good.txt"]
    for name in ("latin1.txt", "empty.txt", "binary.txt"):
        assert name in caplog.text


def test_read_document_does_not_translate_newlines(tmp_path):
    p = tmp_path / "crlf.txt"
    p.write_bytes(b"Title line\r\n\r\nFirst sentence. Second sentence.\r\n")
    doc = read_document(p)
    sents = split_sentences(doc)
    assert [s.text for s in sents] == ["Title line", "First sentence.", "Second sentence."]
    assert all(doc.raw[s.start:s.end] == s.text for s in sents)


_words = st.text(alphabet=st.characters(codec="utf-8", categories=("L", "N", "P", "Zs")), min_size=1, max_size=12)
_line = st.lists(_words, min_size=1, max_size=12).map(" ".join)
_doc = st.lists(st.one_of(_line, st.sampled_from(["", "Published", "on", "MOST READ", "  ", "“Quoted.” he said."])),
                min_size=1, max_size=12)
_sep = st.sampled_from(["\n", "\n\n", "\r\n", "\n \n", "\u00a0\n"])


@settings(max_examples=300, deadline=None)
@given(_doc, _sep, st.booleans())
def test_offsets_property(lines, sep, layout):
    raw = sep.join(lines)
    doc = Document("gen.txt", "", raw)
    for s in split_sentences(doc, layout=layout):
        assert raw[s.start:s.end] == s.text
        assert s.text.strip() == s.text and s.text


def test_content_blocks_skip_furniture_before_and_after():
    raw = "WORLD\n\nA headline here\n\nPublished\n\non\n\nBody text.\n\nMOST READ\n\nExit mobile version"
    assert [b.text for b in content_blocks(raw)] == ["A headline here", "Body text."]

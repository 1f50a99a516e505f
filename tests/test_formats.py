import html
import json
from pathlib import Path

import pytest

from qa.formats import (MAX_JSON_DEPTH, DocumentError, DocumentTooLarge, JsonTooDeep, check_document_id, check_file_id,
                        check_file_name, check_json_depth, parse_record, title_from_name)
from qa.ingest import IngestLimits, document_from_upload, load_corpus, split_sentences
from qa.layout import content_units, is_heading
from qa.types import Document

SEEDS = Path(__file__).resolve().parent.parent / "seeds"
SEED = "000_f45c79c16f6a0511.txt"
LIMITS = IngestLimits(max_sentence_chars=1500, max_document_bytes=1_000_000)


def seed_page(raw: str) -> str:
    """A news page around a seed's text: header, navigation, breadcrumb, byline, share buttons, a
    "MOST READ" box and a footer, with the seed's headline as <h1> and its headings as <h2>."""
    blocks = content_units(Document("seed.txt", "", raw))
    body = "\n".join(f"<h2>{html.escape(b.text)}</h2>" if is_heading(b.text) else f"<p>{html.escape(b.text)}</p>"
                     for b in blocks[1:])
    title = html.escape(blocks[0].text)
    return f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>{title} | Example News</title></head><body>
<header><a href="/">Example News</a><nav><ul><li><a href="/world">World</a></li><li><a href="/asia">Asia</a></li>
<li><a href="/sport">Sport</a></li></ul></nav></header>
<main><article><div class="breadcrumb"><a href="/asia">ASIA</a></div><h1>{title}</h1>
<div class="byline">Published <time datetime="2023-02-24">on February 24, 2023</time></div>
<div class="share"><a href="#">Share on Facebook</a> <a href="#">Tweet</a> <a href="#">Email</a></div>
{body}
<div class="share"><a href="#">Share</a> <a href="#">Print</a></div></article>
<aside><h3>MOST READ</h3><ul><li><a href="/a">Floods hit the coast</a></li>
<li><a href="/b">Election results are in</a></li></ul></aside></main>
<footer><p>© 2023 Example News. All rights reserved.</p><a href="/privacy">Privacy policy</a></footer>
</body></html>"""


def test_an_html_page_gives_the_sentences_of_its_text_file(tmp_path):
    raw = (SEEDS / SEED).read_bytes().decode("utf-8")
    (tmp_path / "page.html").write_text(seed_page(raw), encoding="utf-8")
    (tmp_path / SEED).write_bytes(raw.encode("utf-8"))
    text, page = load_corpus(tmp_path, LIMITS)
    assert (page.doc_id, page.source, page.published) == ("page.html", "page.html", "2023-02-24")
    assert page.title == text.title == "Islamabad requests Taliban to clamp down on TTP"
    from_page = [(s.kind, s.text) for s in split_sentences(page)]
    assert from_page == [(s.kind, s.text) for s in split_sentences(text)]
    assert all(page.raw[s.start:s.end] == s.text for s in split_sentences(page))
    for furniture in ("Share on Facebook", "MOST READ", "Floods hit the coast", "Privacy policy", "Example News"):
        assert furniture not in page.raw


def test_text_and_markdown_are_read_byte_for_byte(tmp_path):
    md = "# Port reopens\r\n\r\nShips came back on *Monday*.\r\n"
    (tmp_path / "port.md").write_bytes(md.encode("utf-8"))
    [doc] = load_corpus(tmp_path, LIMITS)
    assert doc.raw == md and doc.title == "Port reopens"
    assert [(s.kind, s.text) for s in split_sentences(doc)] == [("title", "Port reopens"),
                                                                ("body", "Ships came back on *Monday*.")]


def test_jsonl_records_are_documents_with_metadata(tmp_path, caplog):
    lines = [
        {"id": "a1", "text": "Storm hits coast\n\nWinds reached 120 km/h. Power failed.", "title": "Storm",
         "url": "https://example.org/a1", "published": "2024-05-01"},
        {"id": 7, "text": "The council met on Tuesday. It approved the budget."},
        {"id": "../../etc/passwd", "text": "An id that looks like a path stays an id."},
    ]
    body = "\n".join(json.dumps(x) for x in lines)
    body += '\n\n{"id": "bad", "text": \n{"text": "no id"}\n{"id": "a1", "text": "duplicate."}\n[1, 2]\n'
    (tmp_path / "news.jsonl").write_text(body, encoding="utf-8")
    with caplog.at_level("WARNING"):
        docs = load_corpus(tmp_path, LIMITS)
    by_id = {d.doc_id: d for d in docs}
    assert sorted(by_id) == ["news.jsonl#../../etc/passwd", "news.jsonl#7", "news.jsonl#a1"]
    a1 = by_id["news.jsonl#a1"]
    assert (a1.title, a1.url, a1.published, a1.source) == ("Storm", "https://example.org/a1", "2024-05-01",
                                                           "news.jsonl")
    assert [(s.kind, s.text) for s in split_sentences(a1)] == [
        ("title", "Storm hits coast"), ("body", "Winds reached 120 km/h."), ("body", "Power failed.")]
    assert by_id["news.jsonl#7"].title == "7"
    for line, why in [(5, "malformed JSON"), (6, "'id' is missing"), (7, "duplicate id"), (8, "a JSON object is expected")]:
        assert f"news.jsonl: line {line}: {why}" in caplog.text


def test_a_jsonl_line_over_the_size_limit_is_skipped(tmp_path, caplog):
    (tmp_path / "n.jsonl").write_text(json.dumps({"id": "big", "text": "x " * 200}) + "\n"
                                      + json.dumps({"id": "ok", "text": "Fine."}) + "\n", encoding="utf-8")
    with caplog.at_level("WARNING"):
        docs = load_corpus(tmp_path, IngestLimits(max_sentence_chars=1500, max_document_bytes=100))
    assert [d.doc_id for d in docs] == ["n.jsonl#ok"]
    assert "n.jsonl: line 1" in caplog.text and "over the limit" in caplog.text


def test_an_html_file_without_article_text_is_skipped(tmp_path, caplog):
    (tmp_path / "empty.html").write_text("<html><body><nav><a href='/'>Home</a></nav></body></html>", encoding="utf-8")
    with caplog.at_level("WARNING"):
        assert load_corpus(tmp_path, LIMITS) == []
    assert "empty.html" in caplog.text


def test_titles_from_file_names():
    assert title_from_name("2024/may/storm_hits-the_coast.txt") == "storm hits the coast"
    assert title_from_name("notes.md") == "notes"


def test_upload_reads_a_document_as_its_file_would_be_read():
    doc = document_from_upload("news/storm.txt", b"Storm hits coast\n\nWinds rose. Power failed.\n",
                               "text/plain; charset=utf-8", LIMITS)
    assert (doc.doc_id, doc.title, doc.source) == ("news/storm.txt", "Storm hits coast", "news/storm.txt")
    record = json.dumps({"text": "The council met. It agreed.", "title": "Council", "url": "https://x.org/c"})
    doc = document_from_upload("council.txt", record.encode(), "application/json", LIMITS)
    assert (doc.raw, doc.title, doc.url) == ("The council met. It agreed.", "Council", "https://x.org/c")
    page = seed_page((SEEDS / SEED).read_text(encoding="utf-8")).encode("utf-8")
    doc = document_from_upload("seed.html", page, "text/html", LIMITS)
    assert doc.title == "Islamabad requests Taliban to clamp down on TTP"


@pytest.mark.parametrize("doc_id", ["../x.txt", "/etc/x.txt", "a/../../x.txt", ".hidden.txt", "a/.git/x.txt",
                                    "a#b.txt", "x.pdf", "x", "", "a\\b.txt", "a\nb.txt", "a//b.txt", "x" * 300 + ".txt"])
def test_upload_refuses_ids_that_are_not_safe_file_names(doc_id):
    with pytest.raises(DocumentError):
        check_file_id(doc_id)
    with pytest.raises(DocumentError):
        document_from_upload(doc_id, b"Text.", "text/plain", LIMITS)


@pytest.mark.parametrize("body, content_type, reason", [
    (b"", "text/plain", "no text"),
    (b"   \n", "text/plain", "no text"),
    (b"\x89PNG\x00\x01", "text/plain", "binary"),
    ("Café".encode("latin-1"), "text/plain", "not UTF-8"),
    (b"Text.", "application/pdf", "unsupported content type"),
    (b"<p>Text.</p>", "text/html", "does not fit"),
    (b'{"text": 3}', "application/json", "'text' must be"),
    (b'{"text": "x", "title": 5}', "application/json", "'title' must be"),
    (b"not json", "application/json", "malformed JSON"),
])
def test_upload_refuses_bad_bodies_with_a_reason(body, content_type, reason):
    with pytest.raises(DocumentError, match=reason) as info:
        document_from_upload("doc.txt", body, content_type, LIMITS)
    assert "/" not in str(info.value).replace("application/", "").replace("text/", "")


def test_upload_over_the_size_limit():
    with pytest.raises(DocumentTooLarge, match="over the limit"):
        document_from_upload("doc.txt", b"x" * 101, "text/plain",
                             IngestLimits(max_sentence_chars=1500, max_document_bytes=100))
    assert issubclass(DocumentTooLarge, ValueError)


def test_parse_record_metadata_types():
    assert parse_record('{"id": 3, "text": "x"}')[0] == "3"
    with pytest.raises(DocumentError, match="'id'"):
        parse_record('{"id": true, "text": "x"}')
    with pytest.raises(DocumentError, match="control"):
        parse_record('{"id": "a\\u0000b", "text": "x"}')


@pytest.mark.parametrize("doc_id", [
    "a\u202eb.txt", "a\u2066b.txt", "a\u200eb.txt", "a\u2028b.txt", "a\u2029b.txt", "a\x00b.txt", "a\x85b.txt",
    "a\ufeffb.txt", "a\u200bb.txt", "a\ud800b.txt", " a.txt", "a.txt ", "news /a.txt", "\u00a0a.txt",
    "\u00e9" * 130 + ".txt", "/".join(["d"] * 40) + ".txt", "a.jsonl#1", "C:\\x.txt"])
def test_the_id_rule_refuses_invisible_layout_and_over_long_names(doc_id):
    with pytest.raises(DocumentError):
        check_file_name(doc_id)


@pytest.mark.parametrize("doc_id", ["news/2026/storm.txt", "U.S./report.txt", "a" * 251 + ".txt", "CON.txt", "x.TXT",
                                    "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645.txt", "\u00e9" * 120 + ".md"])
def test_the_id_rule_takes_names_of_every_script(doc_id):
    assert check_file_id(doc_id).as_posix() == doc_id


def test_a_documents_id_is_a_files_or_a_jsonl_records():
    assert check_document_id("a/b.jsonl#r-1#2") == "a/b.jsonl#r-1#2"  # the record part may hold '#'
    for bad in ("a/b.jsonl#", "a/b.jsonl#\u202e1", "..#1", "a/b.jsonl#" + "r" * 256):
        with pytest.raises(DocumentError):
            check_document_id(bad)


def test_json_nesting_is_bounded_before_parsing():
    check_json_depth(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH)
    check_json_depth(b'{"text": "' + b"[" * 5000 + b'"}')  # brackets inside a string do not nest
    check_json_depth(b'["\\", "\\\"[[[[", ' + b"[" * 10 + b"]" * 10 + b"]")  # nor behind escaped quotes
    for deep in (b"[" * 1000 + b"]" * 1000, b'{"text": ' + b'{"a": ' * 100 + b"1" + b"}" * 101, b"{" * 100_000):
        with pytest.raises(JsonTooDeep):
            check_json_depth(deep)
        with pytest.raises(JsonTooDeep):  # a .jsonl line or a JSON upload: refused, never a RecursionError
            parse_record(deep)

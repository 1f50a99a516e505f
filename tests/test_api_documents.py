"""The document routes and citations over a folder of several formats (a PDF, Markdown, files that cannot be
read), on the stand-in encoder of tests/fakes.py: pages in answers and in ``GET /documents/{id}``, titles and
dates in ``GET /documents``, ``GET /documents/skipped`` and the count in ``/health``. No model is loaded."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from qa import index as index_mod
from qa.api import create_app
from qa.config import Settings
from qa.engine import Engine, build_spec
from qa.ingest import read_corpus
from tests import makers
from tests.fakes import HashedEncoder

PAGES = [["The harbour office opened a new ferry terminal in the north basin."],
         ["The ferry terminal handles four hundred passengers an hour."],
         ["Cranes in the south basin were repaired after the winter storm."]]


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> Engine:
    base = tmp_path_factory.mktemp("formats")
    corpus = base / "corpus"
    corpus.mkdir()
    (corpus / "harbour.pdf").write_bytes(makers.pdf(PAGES, title="Harbour Annual Report"))
    (corpus / "notes.md").write_text("# Rail notes\n\nThe new railway line between Multan and\nFaisalabad "
                                     "opened this week.\n", encoding="utf-8")
    (corpus / "photo.jpg").write_bytes(b"\xff\xd8\xff")
    (corpus / "scan.pdf").write_bytes(makers.image_only_pdf())
    settings = Settings(corpus_dir=corpus, index_root=base / "index", data_dir=base / "var", onnx_queries=False)
    read = read_corpus(corpus)
    index_mod.build(read.documents, HashedEncoder(), build_spec(settings), settings.index_dir(), skipped=read.skipped)
    return Engine(settings, index_mod.load(settings.index_dir(), nprobe=settings.ann_nprobe), HashedEncoder())


@pytest.fixture(scope="module")
def client(engine):
    with TestClient(create_app(engine)) as c:
        yield c


def test_an_answer_from_a_pdf_cites_its_page(client, engine):
    r = client.post("/ask", json={"question": "How many passengers does the ferry terminal handle an hour?",
                                  "abstain": False})
    assert r.status_code == 200, r.text
    first = r.json()["sentences"][0]
    assert first["doc_id"] == "harbour.pdf" and first["page"] == 2 and first["kind"] == "body"
    assert first["published"] == engine.index.documents["harbour.pdf"].published
    assert engine.index.documents["harbour.pdf"].raw[first["start"]:first["end"]] == first["text"]
    r = client.post("/ask", json={"question": "When did the railway line open?", "abstain": False})
    rail = next(s for s in r.json()["sentences"] if s["doc_id"] == "notes.md")
    assert rail["page"] is None and "\n" in rail["text"]  # a wrapped line inside one sentence


def test_documents_list_their_format_title_date_and_pages(client):
    listing = {d["doc_id"]: d for d in client.get("/documents").json()["documents"]}
    pdf = listing["harbour.pdf"]
    assert (pdf["format"], pdf["title"], pdf["pages"], pdf["author"]) == ("pdf", "Harbour Annual Report", 3,
                                                                          "Jane Clerk")
    assert pdf["published"] and listing["notes.md"]["format"] == "md" and listing["notes.md"]["pages"] is None
    doc = client.get("/documents/harbour.pdf").json()
    assert len(doc["pages"]) == 3 and doc["pages"][0] == 0
    for n, start in enumerate(doc["pages"], start=1):
        assert doc["text"][start:].startswith(PAGES[n - 1][0][:20])


def test_skipped_files_are_listed_with_their_reasons(client):
    r = client.get("/documents/skipped")
    assert r.status_code == 200
    assert {(s["path"], s["reason"]) for s in r.json()} == {("photo.jpg", "unsupported type"),
                                                            ("scan.pdf", "no text layer")}
    assert client.get("/health").json()["skipped"] == 2
    assert "SkippedFile" in client.get("/openapi.json").json()["components"]["schemas"]


def test_the_skipped_list_is_kept_with_the_build(engine):
    reloaded = index_mod.load(engine.settings.index_dir())
    assert [(s.path, s.reason) for s in reloaded.skipped] == [("photo.jpg", "unsupported type"),
                                                             ("scan.pdf", "no text layer")]
    assert reloaded.documents["harbour.pdf"].pages == engine.index.documents["harbour.pdf"].pages

"""Incremental index updates and document updates while serving (qa/updates.py, qa/api/routes/documents.py,
``qa.updates.refreshed``), over a copy of the seed corpus with a few small documents made here."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from qa import index as index_mod
from qa.index import reuse
from qa.api import create_app
from qa.engine import Engine, build_spec
from qa.ingest import IngestLimits, load_corpus
from qa import updates
from qa.updates import (BadDocument, SettledChanges, Updater, UploadTooLarge, corpus_signature, refreshed,
                        settled_documents, upload_file_bytes, validate_doc_id, watch_folder)
from tests.conftest import SEEDS

TOKEN = "s3cret-admin-token"
EXTRA = {
    "harbour.txt": "Harbour reopens\n\nThe Kestrel harbour reopened on Tuesday after a storm. "
                   "Fishing boats returned within hours. The mayor thanked the crews.\n",
    "library.txt": "Library expands\n\nThe city library added a west wing in 2024. It holds 40,000 books. "
                   "Readers can borrow them for three weeks.\n",
    "bridge.txt": "Bridge closed\n\nThe Aldgate bridge was closed for repairs in March. Engineers found cracks "
                  "in two pillars. Traffic was sent through the tunnel.\n",
}
NEW = ("The Zorvane observatory was opened by astronomer Ilse Varga in Quenton. "
       "Its telescope has a mirror of eight metres.")


def make_corpus(folder):
    folder.mkdir(parents=True)
    for p in SEEDS.glob("*.txt"):
        shutil.copy(p, folder / p.name)
    for name, text in EXTRA.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def settings_for(seed_settings, corpus, **extra):
    # The seed settings' index root: its exported ONNX model is reused, not made again.
    return seed_settings.model_copy(update={"corpus_dir": corpus, "data_dir": corpus.parent / "var", **extra})


def content_of(sentences):
    return [(s.doc_id, s.index, s.start, s.end, s.text, s.kind) for s in sentences]


def test_incremental_add_change_remove_equal_a_full_rebuild(tmp_path, seed_engine, seed_settings, monkeypatch):
    corpus = make_corpus(tmp_path / "corpus")
    settings = settings_for(seed_settings, corpus)
    first = Engine.open(settings)
    (corpus / "observatory.txt").write_text("Observatory opens\n\n" + NEW + "\n", encoding="utf-8")
    (corpus / "library.txt").write_text(EXTRA["library.txt"] + "A cafe opened beside the reading room.\n",
                                        encoding="utf-8")
    (corpus / "bridge.txt").unlink()

    split: list[str] = []
    original_split = reuse.split_sentences
    monkeypatch.setattr(reuse, "split_sentences", lambda d, **kw: split.append(d.doc_id) or original_split(d, **kw))
    updated = refreshed(first)
    assert updated is not first and sorted(split) == ["library.txt", "observatory.txt"]  # the rest is reused
    inc = updated.index  # the build in service, and one segment of the changed documents
    assert [e["deleted"] for e in inc.manifest["segments"]] == [["bridge.txt", "library.txt"], []]
    assert sorted(inc.segments[1].documents) == ["library.txt", "observatory.txt"]
    assert inc.segments[0] is first.index  # shared, not read again

    docs = load_corpus(corpus)
    full_dir = index_mod.build(docs, first.query_encoder, build_spec(settings), tmp_path / "full", reuse=False)
    full = index_mod.load(tmp_path / "full")
    assert full.path == full_dir and inc.fingerprint == full.fingerprint
    live = [inc.sentences[i] for i in np.flatnonzero(inc.live_sentences).tolist()]
    assert sorted(content_of(live)) == sorted(content_of(full.sentences))
    assert inc.lexical_sentences.vocab == full.lexical_sentences.vocab
    assert np.allclose(inc.lexical_sentences.idf, full.lexical_sentences.idf)
    assert inc.lexical_passages.n_docs == full.lexical_passages.n_docs and inc.faiss_index.ntotal == len(full.passages)
    assert np.allclose(inc.tokens.weights, full.tokens.weights)
    from_full = updated.with_index(full)
    for question in ("Who opened the Zorvane observatory?", "What did the library add?",
                     "Why was the Torkham crossing closed?", "When was the Aldgate bridge closed?"):
        x, y = updated.ask(question), from_full.ask(question)
        assert x.answered == y.answered
        assert [(s.citation.doc_id, s.citation.sentence_index) for s in x.sentences] == \
               [(s.citation.doc_id, s.citation.sentence_index) for s in y.sentences]
    assert updated.ask("Who opened the Zorvane observatory?").sentences[0].citation.doc_id == "observatory.txt"
    assert refreshed(updated) is updated  # nothing changed since


@pytest.fixture(scope="module")
def served(tmp_path_factory, seed_settings):
    """An app with document updates enabled over its own corpus folder (a copy of the seeds and EXTRA)."""
    root = tmp_path_factory.mktemp("updates")
    corpus = make_corpus(root / "corpus")
    settings = settings_for(seed_settings, corpus, admin_token=SecretStr(TOKEN))
    engine = Engine.open(settings)
    app = create_app(engine, settings)
    with TestClient(app) as client:
        yield client, corpus, app


AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_updates_are_refused_without_the_right_token(served):
    client, corpus, _ = served
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        r = client.put("/documents/x.txt", content=NEW, headers={**headers, "Content-Type": "text/plain"})
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert client.delete("/documents/harbour.txt", headers=headers).status_code == 401
    assert not (corpus / "x.txt").exists() and (corpus / "harbour.txt").exists()


def test_updates_are_forbidden_when_no_admin_token_is_configured(seed_engine):
    with TestClient(create_app(seed_engine)) as client:
        r = client.put("/documents/x.txt", content=NEW, headers={**AUTH, "Content-Type": "text/plain"})
        assert r.status_code == 403 and "disabled" in r.json()["detail"]
        assert client.delete("/documents/x.txt", headers=AUTH).status_code == 403


def test_put_writes_the_file_and_answers_from_it_then_delete_removes_it(served):
    client, corpus, _ = served
    before = client.get("/health").json()
    r = client.put("/documents/observatory.txt", json={"title": "Observatory opens", "text": NEW}, headers=AUTH)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["created"] and body["documents"] == before["documents"] + 1
    assert (corpus / "observatory.txt").read_text(encoding="utf-8") == "Observatory opens\n\n" + NEW  # durable
    assert not list(corpus.glob(".*.part"))
    answer = client.post("/ask", json={"question": "Who opened the Zorvane observatory?"}).json()
    assert answer["answered"] and answer["sentences"][0]["doc_id"] == "observatory.txt"
    doc = client.get("/documents/observatory.txt").json()
    assert doc["title"] == "Observatory opens" and doc["text"] == "Observatory opens\n\n" + NEW

    replaced = "Observatory closes\n\nThe Zorvane observatory closed for good in 2031.\n"
    r = client.put("/documents/observatory.txt", content=replaced.encode(), headers={**AUTH, "Content-Type": "text/plain; charset=utf-8"})
    assert r.status_code == 200 and not r.json()["created"]
    assert client.get("/documents/observatory.txt").json()["text"] == replaced

    r = client.delete("/documents/observatory.txt", headers=AUTH)
    assert r.status_code == 200 and r.json()["documents"] == before["documents"]
    assert not (corpus / "observatory.txt").exists()
    assert client.get("/documents/observatory.txt").status_code == 404
    assert client.delete("/documents/observatory.txt", headers=AUTH).status_code == 404
    assert client.get("/health").json()["updating"] is False


def test_uploads_become_segments_that_are_merged_in_the_background(served):
    from qa.api.state import updater_of_app

    client, corpus, app = served
    updater = updater_of_app(app)
    names = [f"notice-{k:02d}.txt" for k in range(11)]  # the default policy merges 10 small segments
    for k, name in enumerate(names):
        text = f"Notice {k}\n\nThe ferry to Islet {k} leaves at {k + 6} in the morning from pier {k + 20}.\n"
        assert client.put(f"/documents/{name}", content=text.encode(), headers={**AUTH, "Content-Type": "text/plain"}
                          ).status_code == 201
    deadline = time.monotonic() + 120
    while updater.merges.merged == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert updater.merges.merged >= 1
    while len(index_mod.segments_of(app.state.qa.engine.index)) > 3 and time.monotonic() < deadline:
        time.sleep(0.1)  # the service loads the merged generation
    index = app.state.qa.engine.index
    assert len(index_mod.segments_of(index)) <= 3 and set(names) <= set(index.documents)
    answer = client.post("/ask", json={"question": "From which pier does the ferry to Islet 7 leave?"}).json()
    assert answer["sentences"][0]["doc_id"] == "notice-07.txt"
    for name in names:
        assert client.delete(f"/documents/{name}", headers=AUTH).status_code == 200


def test_an_upload_after_a_merge_published_elsewhere_still_reads_only_its_file(served, monkeypatch):
    from qa.index.merge import MergePolicy

    client, corpus, app = served
    for name in ("merge-a.txt", "merge-b.txt"):
        text = f"{name}\n\nThe {name[6]} quay in Dunmarrow reopened in May.\n"
        assert client.put(f"/documents/{name}", content=text.encode(), headers={**AUTH, "Content-Type": "text/plain"}
                          ).status_code == 201
    engine = app.state.qa.engine
    deadline, merged = time.monotonic() + 60, 0
    while not merged and time.monotonic() < deadline:  # the service's own merger may hold the merge lock a moment
        merged = index_mod.merge_due(engine.settings.index_dir(), engine.index, build_spec(engine.settings),
                                     policy=MergePolicy(per_tier=2, floor=1))
        time.sleep(0.05)
    assert merged >= 1
    assert index_mod.published_build(engine.settings.index_dir()) != engine.index.path.name  # not served yet

    def whole_folder(*args, **kwargs):
        raise AssertionError("the whole folder was read for one upload")

    monkeypatch.setattr(updates, "refreshed", whole_folder)
    r = client.put("/documents/merge-c.txt", content=b"Quay\n\nThe c quay in Dunmarrow closed in June.\n",
                   headers={**AUTH, "Content-Type": "text/plain"})
    assert r.status_code == 201, r.text
    answer = client.post("/ask", json={"question": "When did the c quay in Dunmarrow close?"}).json()
    assert answer["sentences"][0]["doc_id"] == "merge-c.txt"
    monkeypatch.undo()
    for name in ("merge-a.txt", "merge-b.txt", "merge-c.txt"):
        assert client.delete(f"/documents/{name}", headers=AUTH).status_code == 200


def test_a_page_put_into_a_subfolder_is_read_as_html_and_cited_by_its_path(served):
    client, corpus, _ = served
    page = (b"<html><head><title>Observatory opens</title></head><body><nav>Home | World</nav>"
            b"<article><h1>Observatory opens</h1><p>" + NEW.encode() + b"</p></article></body></html>")
    r = client.put("/documents/science/2026/observatory.html", content=page,
                   headers={**AUTH, "Content-Type": "text/html"})
    assert r.status_code == 201, r.text
    assert (corpus / "science" / "2026" / "observatory.html").read_bytes() == page
    answer = client.post("/ask", json={"question": "Who opened the Zorvane observatory?"}).json()
    assert answer["sentences"][0]["doc_id"] == "science/2026/observatory.html"
    doc = client.get("/documents/science/2026/observatory.html").json()
    assert "Home | World" not in doc["text"] and "Ilse Varga" in doc["text"]
    assert client.delete("/documents/science/2026/observatory.html", headers=AUTH).status_code == 200
    assert client.get("/documents/science/2026/observatory.html").status_code == 404


@pytest.mark.parametrize("body,content_type", [
    (b"", "text/plain"), (b"  \n\n ", "text/plain"), (b"abc\x00def", "text/plain"),
    ("caf\u00e9 au lait".encode("latin-1"), "text/plain"), (b"<p>hi</p>", "application/pdf"),
    (b'{"title": "x"}', "application/json"), (b'{"text": "x", "url": "http://e"}', "application/json"),
    (b"{not json", "application/json"),
])
def test_a_bad_upload_is_refused_and_nothing_indexed_is_lost(served, body, content_type):
    client, corpus, _ = served
    before = client.get("/health").json()
    r = client.put("/documents/harbour.txt", content=body, headers={**AUTH, "Content-Type": content_type})
    assert r.status_code == 422 and r.json()["detail"]
    assert (corpus / "harbour.txt").read_text(encoding="utf-8") == EXTRA["harbour.txt"]
    after = client.get("/health").json()
    assert after["corpus_fingerprint"] == before["corpus_fingerprint"]
    answer = client.post("/ask", json={"question": "When did the Kestrel harbour reopen?"}).json()
    assert answer["sentences"][0]["doc_id"] == "harbour.txt"


@pytest.mark.parametrize("doc_id", ["..", "../x.txt", "a/../../x.txt", "/etc/x.txt", "..txt", ".hidden.txt",
                                    "a/.git/x.txt", "a\\b.txt", "c.jsonl#1", "x.pdf", "x" * 256 + ".txt", "x.txt/"])
def test_ids_that_could_leave_the_folder_are_refused(doc_id):
    with pytest.raises(BadDocument):
        validate_doc_id(doc_id)


@pytest.mark.parametrize("doc_id", ["a/b.txt", "x.md", "page.html", "\u00e9t\u00e9.txt", "news/2026/x..txt"])
def test_ids_of_files_inside_the_folder_are_taken_as_given(doc_id):
    assert validate_doc_id(doc_id) == doc_id


def test_a_json_upload_becomes_a_text_file_with_its_title_first(tmp_path):
    limits = IngestLimits(max_sentence_chars=1500, max_document_bytes=10_000)
    body = json.dumps({"title": "Harbour reopens", "text": "The harbour reopened on Monday."}).encode()
    assert upload_file_bytes("a.txt", body, "application/json", limits) == \
        b"Harbour reopens\n\nThe harbour reopened on Monday."
    with pytest.raises(BadDocument, match="jsonl"):
        upload_file_bytes("a.txt", json.dumps({"text": "x", "url": "https://example.org"}).encode(),
                          "application/json", limits)
    with pytest.raises(UploadTooLarge):
        upload_file_bytes("a.txt", b"word " * 3000, "text/plain", limits)
    with pytest.raises(BadDocument):
        upload_file_bytes("a.txt", b"\xff\xfe binary", "text/plain", limits)


@pytest.mark.parametrize("path", ["/documents/..%2Fescape.txt", "/documents/a%5Cb.txt", "/documents/..txt",
                                  "/documents/%2E%2E%2Fescape.txt"])
def test_path_ids_over_http_get_a_4xx_and_write_nothing(served, path):
    client, corpus, _ = served
    r = client.put(path, content=NEW, headers={**AUTH, "Content-Type": "text/plain"})
    assert 400 <= r.status_code < 500
    assert not (corpus.parent / "escape.txt").exists() and not list(corpus.glob("*escape*"))


def test_deleting_the_last_document_is_refused_and_undone(tmp_path, seed_settings):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "only.txt").write_text(EXTRA["harbour.txt"], encoding="utf-8")
    settings = settings_for(seed_settings, corpus, admin_token=SecretStr(TOKEN))
    with TestClient(create_app(Engine.open(settings), settings)) as client:
        r = client.delete("/documents/only.txt", headers=AUTH)
        assert r.status_code == 409
    assert (corpus / "only.txt").read_text(encoding="utf-8") == EXTRA["harbour.txt"]


def test_the_watcher_updates_the_index_when_a_file_changes(served):
    client, corpus, app = served
    updater = Updater(app.state.qa)
    before = corpus_signature(corpus)
    stop = watch_folder(updater, 0.1)
    try:
        (corpus / "watched.txt").write_text("Ferry news\n\nThe Orlen ferry now sails twice a day to Vesk.\n",
                                            encoding="utf-8")
        assert corpus_signature(corpus) != before
        deadline = time.monotonic() + 60
        while "watched.txt" not in app.state.qa.engine.index.documents and time.monotonic() < deadline:
            time.sleep(0.1)
        answer = client.post("/ask", json={"question": "How often does the Orlen ferry sail to Vesk?"}).json()
        assert answer["sentences"][0]["doc_id"] == "watched.txt"
    finally:
        stop.set()
        (corpus / "watched.txt").unlink()
        updater.refresh()


# -- writes stay inside the corpus folder; every bad name or body is a 4xx ----------------------------------


def test_writes_and_deletes_through_links_are_refused_and_nothing_outside_changes(served):
    client, corpus, _ = served
    outside = corpus.parent / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "target.txt").write_text("outside the corpus\n", encoding="utf-8")
    (corpus / "linkdir").symlink_to(outside)
    (corpus / "linkfile.txt").symlink_to(outside / "target.txt")
    try:
        for method, path in [("PUT", "linkdir/x.txt"), ("PUT", "linkdir/new/x.txt"), ("DELETE", "linkdir/target.txt"),
                             ("PUT", "linkfile.txt"), ("DELETE", "linkfile.txt")]:
            r = client.request(method, f"/documents/{path}", content=NEW if method == "PUT" else None,
                               headers={**AUTH, "Content-Type": "text/plain"})
            assert r.status_code == 409 and "symbolic link" in r.json()["detail"], (path, r.text)
        assert sorted(p.name for p in outside.iterdir()) == ["target.txt"]
        assert (outside / "target.txt").read_text(encoding="utf-8") == "outside the corpus\n"
        assert (corpus / "linkfile.txt").is_symlink()
    finally:
        (corpus / "linkdir").unlink()
        (corpus / "linkfile.txt").unlink()


@pytest.mark.parametrize("doc_id,status", [
    ("a" * 251 + ".txt", 201),  # 255 bytes: its temporary name is short and fixed, whatever the name
    ("dir.txt", 409), ("harbour.txt/x.txt", 409), ("made/" + "\u00e9" * 128 + ".txt", 422),
    ("report\u202etxt.exe.txt", 422), ("line\u2028break.txt", 422), ("zero\u200bwidth.txt", 422),
    ("trailing.txt ", 422), ("space /x.txt", 422), ("/".join(["d"] * 40) + "/x.txt", 422), ("Harbour.txt", 409),
    ("made/deeper/Harbour.txt", 201)])
def test_every_bad_name_is_a_4xx_and_a_refused_write_leaves_nothing_behind(served, doc_id, status):
    client, corpus, _ = served
    (corpus / "dir.txt").mkdir(exist_ok=True)
    before = sorted(p.relative_to(corpus).as_posix() for p in corpus.rglob("*"))
    r = client.put("/documents/" + doc_id.replace("#", "%23"), content=NEW,
                   headers={**AUTH, "Content-Type": "text/plain"})
    assert r.status_code == status, r.text
    if status == 201:  # a name PUT takes can be read back and deleted under the same rule
        assert client.get("/documents/" + doc_id).status_code == 200
        assert client.delete("/documents/" + doc_id, headers=AUTH).status_code == 200
        for made in ("made/deeper", "made"):
            if (corpus / made).is_dir():
                (corpus / made).rmdir()
    else:
        assert r.json()["detail"]
    assert sorted(p.relative_to(corpus).as_posix() for p in corpus.rglob("*")) == before  # no temp file or folder


def test_json_nested_too_deep_is_a_400_before_it_is_parsed(served):
    client, corpus, _ = served
    for body in (b"[" * 1000 + b"]" * 1000, b'{"text": ' + b"[" * 100_000):
        r = client.put("/documents/deep.txt", content=body, headers={**AUTH, "Content-Type": "application/json"})
        assert r.status_code == 400 and "nested deeper" in r.json()["detail"]
    assert not (corpus / "deep.txt").exists()


def test_a_failed_index_update_undoes_the_write_and_the_folders_it_made(served, monkeypatch):
    client, corpus, _ = served

    def cannot_index(self, *args, **kwargs):
        raise ValueError("the corpus cannot be indexed")

    monkeypatch.setattr(updates, "with_files", cannot_index)  # how an upload is indexed
    monkeypatch.setattr(updates, "refreshed", cannot_index)
    r = client.put("/documents/made/here/x.txt", content=NEW, headers={**AUTH, "Content-Type": "text/plain"})
    assert r.status_code == 409
    assert not (corpus / "made").exists()


# -- updates serialised with builds ------------------------------------------------------------------------


def test_a_refresh_reads_the_folder_only_once_it_holds_the_build_lock(tmp_path, seed_settings, monkeypatch):
    """Another process's update (here: this thread) holds the build lock, changes the folder and lets go: the
    refresh that waited for the lock builds the folder with that change, never the folder it saw before."""
    corpus = make_corpus(tmp_path / "corpus")
    settings = settings_for(seed_settings, corpus)
    engine = Engine.open(settings)
    target = settings.index_dir()
    waiting, real_lock = threading.Event(), index_mod.build_lock

    def noting_lock(path):
        waiting.set()
        return real_lock(path)

    result = {}
    with real_lock(target):
        monkeypatch.setattr(index_mod, "build_lock", noting_lock)
        refresher = threading.Thread(target=lambda: result.setdefault("engine", refreshed(engine)))
        refresher.start()
        assert waiting.wait(60)
        (corpus / "late.txt").write_text("Late news\n\n" + NEW + "\n", encoding="utf-8")
    refresher.join(120)
    assert "late.txt" in result["engine"].index.documents


def test_a_slow_load_of_an_older_build_never_replaces_a_newer_one_in_service(served):
    client, corpus, app = served
    state = app.state.qa
    older = state.engine
    r = client.put("/documents/newer.txt", content=NEW, headers={**AUTH, "Content-Type": "text/plain"})
    assert r.status_code == 201
    newer = state.engine
    assert not state.swap_in_if_current(older)  # e.g. a follow that began loading before the update
    assert state.engine is newer and client.get("/documents/newer.txt").status_code == 200
    assert client.delete("/documents/newer.txt", headers=AUTH).status_code == 200


def test_the_watcher_waits_until_the_folder_has_been_quiet():
    indexed = (("a.txt", 10, 1),)
    changes = SettledChanges(indexed, quiet=3.0, now=0.0)
    assert not changes.due(indexed, now=1.0)  # nothing changed
    growing = [(("a.txt", 10, 1), ("b.txt", size, size)) for size in (100, 200, 300)]
    assert not changes.due(growing[0], now=2.0)
    assert not changes.due(growing[1], now=4.0)  # still being written
    assert not changes.due(growing[2], now=6.0)
    assert not changes.due(growing[2], now=8.0)  # the same for 2 s
    assert changes.due(growing[2], now=9.0)  # for 3 s: indexed now
    changes.indexed(growing[2])
    assert not changes.due(growing[2], now=20.0)
    assert SettledChanges(indexed, quiet=0.0, now=0.0).due(growing[0], now=0.0)  # no quiet interval


def test_a_file_still_being_written_is_indexed_as_it_was_until_it_has_been_quiet(tmp_path):
    """Whatever builds the index meanwhile (an upload racing the watcher), a file changed less than `quiet`
    seconds ago keeps the version in service, and a new one waits."""
    from qa.types import Document

    old = {"a.txt": Document("a.txt", "A", "old a"), "c.jsonl#1": Document("c.jsonl#1", "C", "old c1")}
    now = 1_000_000.0
    for name, age in (("a.txt", 1.0), ("b.txt", 1.0), ("c.jsonl", 1.0), ("d.txt", 60.0)):
        (tmp_path / name).write_text("x")
        os.utime(tmp_path / name, (now - age, now - age))
    folder = [Document("a.txt", "A", "half of the new a"), Document("b.txt", "B", "half of b"),
              Document("c.jsonl#1", "C", "new c1"), Document("c.jsonl#2", "C", "half c2"), Document("d.txt", "D", "d")]
    kept = settled_documents(folder, old, tmp_path, quiet=3.0, now=now)
    assert [(d.doc_id, d.raw) for d in kept] == [("a.txt", "old a"), ("c.jsonl#1", "old c1"), ("d.txt", "d")]
    assert settled_documents(folder, old, tmp_path, quiet=0.0, now=now) == folder
    assert settled_documents(folder, old, tmp_path, quiet=3.0, now=now + 5) == folder  # quiet since

"""The HTTP API in process (FastAPI TestClient) over one real Engine on the seed corpus.

Covers every endpoint, every kind of bad input, the error boundary, the not-ready states, concurrent
requests, the index swap on reload, and a bounded schemathesis run over the OpenAPI schema (no 5xx,
responses conform to the documented schemas and status codes).
"""

from __future__ import annotations

import json
import logging
import secrets
import shutil
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings as hypothesis_settings
from pydantic import SecretStr

from qa.api import create_app
from qa.api.middleware import MAX_BODY_BYTES
from qa.api.state import get_engine
from qa.config import PROJECT_ROOT, RETRIEVERS, Settings
from qa.engine import Engine

pytestmark = pytest.mark.model  # one real engine for the module
SEEDS = PROJECT_ROOT / "seeds"
TORKHAM = "Why was the Torkham crossing closed?"
TALIBAN = "When did the Taliban return to power in Afghanistan?"
OFF_TOPIC = "What is the capital of Mongolia?"


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> Engine:
    """One engine for the module (the model loads once), with its own index and conversation store."""
    root = tmp_path_factory.mktemp("api")
    return Engine.open(Settings(corpus_dir=SEEDS, index_root=root / "index", data_dir=root / "data"))


@pytest.fixture(scope="module")
def app(engine):
    return create_app(engine)


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app) as c:
        yield c


def ask(client, **body):
    return client.post("/ask", json=body)


# -- /ask ------------------------------------------------------------------------------------------------


def test_ask_returns_cited_exact_sentences(client, engine):
    r = ask(client, question=TALIBAN)
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["answered"] is True
    assert data["question"] == TALIBAN
    assert data["retriever"] == "hybrid"
    assert isinstance(data["conversation_id"], str) and data["conversation_id"]
    assert data["took_ms"] >= 0
    assert 1 <= len(data["sentences"]) <= 5
    for s in data["sentences"]:
        doc = engine.index.documents[s["doc_id"]]
        assert doc.raw[s["start"]:s["end"]] == s["text"]
        assert s["title"] == doc.title
        for c in s["also_in"]:
            assert set(c) == {"doc_id", "title", "sentence_index", "start", "end", "page"} and c["page"] is None
            assert engine.index.documents[c["doc_id"]].raw[c["start"]:c["end"]]
    assert any("August 2021" in s["text"] for s in data["sentences"])


def test_ask_is_the_cli_answer_object(client, engine):
    """The body is `qa ask --json` (Answer.to_dict) plus conversation_id and took_ms."""
    data = ask(client, question=TALIBAN, top_k=3).json()
    expected = engine.ask(TALIBAN, top_k=3).to_dict()
    assert {k: v for k, v in data.items() if k not in ("conversation_id", "took_ms")} == expected


def test_each_question_without_id_starts_a_conversation(client):
    a = ask(client, question=TALIBAN).json()["conversation_id"]
    b = ask(client, question=TALIBAN).json()["conversation_id"]
    assert a != b
    turns = client.get(f"/conversations/{a}").json()["turns"]
    assert [t["question"] for t in turns] == [TALIBAN]


def test_follow_up_in_a_conversation(client):
    first = ask(client, question=TORKHAM).json()
    cid = first["conversation_id"]
    follow = ask(client, question="When did it reopen?", conversation_id=cid)
    assert follow.status_code == 200, follow.text
    data = follow.json()
    assert data["conversation_id"] == cid
    assert data["understood_as"].startswith("When did it reopen?")
    assert "Torkham" in data["understood_as"]
    assert any("reopened" in s["text"] for s in data["sentences"])
    turns = client.get(f"/conversations/{cid}").json()["turns"]
    assert [t["question"] for t in turns] == [TORKHAM, "When did it reopen?"]
    assert turns[0]["understood_as"] is None
    assert turns[1]["understood_as"] == data["understood_as"]
    keys = ("doc_id", "title", "sentence_index", "start", "end", "page")
    assert {k: turns[1]["citations"][0][k] for k in keys} == {k: data["sentences"][0][k] for k in keys}
    assert turns[1]["asked_at"]


def test_not_found_in_the_corpus(client):
    data = ask(client, question=OFF_TOPIC).json()
    assert data["answered"] is False
    assert data["sentences"] == []
    assert data["message"] == "not found in the corpus"
    assert 0 <= data["confidence"] < 1


@pytest.mark.parametrize("retriever", RETRIEVERS)
def test_every_retriever(client, retriever):
    data = ask(client, question=TORKHAM, retriever=retriever).json()
    assert data["retriever"] == retriever
    assert data["answered"] is True


@pytest.mark.parametrize("top_k", [1, 2, 20])
def test_top_k_bounds_the_sentences(client, top_k):
    data = ask(client, question=TORKHAM, top_k=top_k).json()
    assert 1 <= len(data["sentences"]) <= top_k


def test_defaults_come_from_the_settings(client, engine, monkeypatch):
    """A request without top_k or retriever is answered as the server's Settings say (QA_TOP_K, QA_RETRIEVER)."""
    monkeypatch.setattr(engine, "settings", engine.settings.model_copy(update={"top_k": 3, "retriever": "bm25"}))
    data = ask(client, question=TALIBAN).json()
    assert data["retriever"] == "bm25" and len(data["sentences"]) == 3
    data = ask(client, question=TALIBAN, top_k=2, retriever="dense").json()
    assert data["retriever"] == "dense" and len(data["sentences"]) == 2


def test_question_of_exactly_the_maximum_length(client):
    assert ask(client, question=("Torkham crossing " * 100)[:1000]).status_code == 200


def test_abstain_false_returns_the_ranking_anyway(client):
    """The evaluation mode (qa eval --http): sentences even below the threshold; `answered` still tells."""
    data = ask(client, question=OFF_TOPIC, abstain=False, top_k=10).json()
    assert data["answered"] is False
    assert 1 <= len(data["sentences"]) <= 10
    cid = data["conversation_id"]
    follow = ask(client, question="And what about trucks?", abstain=False, conversation_id=cid)
    assert follow.status_code == 200 and follow.json()["sentences"]
    assert len(client.get(f"/conversations/{cid}").json()["turns"]) == 2
    assert ask(client, question=TORKHAM, abstain=False, conversation_id="nope").status_code == 404


def test_unknown_conversation_is_404(client):
    r = ask(client, question="When did it reopen?", conversation_id="no-such-conversation")
    assert r.status_code == 404
    assert "no-such-conversation" in r.json()["detail"]


# -- bad input -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("body, field", [
    ({"question": ""}, "question"),
    ({"question": "   "}, "question"),
    ({"question": "\n\t \u2003"}, "question"),
    ({"question": "x" * 1001}, "question"),
    ({}, "question"),
    ({"question": 42}, "question"),
    ({"question": None}, "question"),
    ({"question": TORKHAM, "top_k": 0}, "top_k"),
    ({"question": TORKHAM, "top_k": 21}, "top_k"),
    ({"question": TORKHAM, "top_k": -3}, "top_k"),
    ({"question": TORKHAM, "top_k": "five"}, "top_k"),
    ({"question": TORKHAM, "top_k": 2.5}, "top_k"),
    ({"question": TORKHAM, "retriever": "tfidf"}, "retriever"),
    ({"question": TORKHAM, "retriever": ""}, "retriever"),
    ({"question": TORKHAM, "conversation_id": ""}, "conversation_id"),
    ({"question": TORKHAM, "conversation_id": "c" * 500}, "conversation_id"),
    ({"question": TORKHAM, "topk": 3}, "topk"),
])
def test_invalid_ask_is_422_with_a_message(client, body, field):
    r = client.post("/ask", json=body)
    assert r.status_code == 422, r.text
    data = r.json()
    assert isinstance(data["detail"], str) and data["detail"]
    assert field in [e["field"] for e in data["errors"]]


def test_blank_question_message_says_so(client):
    assert ask(client, question="  ").json()["detail"] == "question: the question is empty"
    assert "1000" in ask(client, question="y" * 1001).json()["detail"]


@pytest.mark.parametrize("raw", [b'{"question": ', b"not json", b'{"question": "a",}', b"\xff\xfe", b"[]", b'"text"'])
def test_malformed_json_is_422(client, raw):
    r = client.post("/ask", content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["detail"]


def test_validation_errors_do_not_echo_the_input(client):
    secret = "s3cr3t-" + "z" * 1000
    r = ask(client, question=secret)
    assert r.status_code == 422 and secret not in r.text


def test_body_over_64_kib_is_413(client):
    padded = json.dumps({"question": TORKHAM}).encode() + b" " * MAX_BODY_BYTES
    r = client.post("/ask", content=padded, headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert "65536" in r.json()["detail"]


def test_body_of_exactly_64_kib_is_accepted(client):
    body = json.dumps({"question": TORKHAM}).encode()
    body += b" " * (MAX_BODY_BYTES - len(body))
    assert len(body) == MAX_BODY_BYTES
    r = client.post("/ask", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text


def test_streamed_body_over_the_limit_is_413(client):
    """No Content-Length (chunked): the middleware counts the bytes as they arrive."""
    sent = []

    def chunks():
        for _ in range(20):
            sent.append(1)
            yield b" " * 8192

    r = client.post("/ask", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413


def test_streamed_small_body_is_accepted(client):
    def chunks():
        yield b'{"question": '
        yield json.dumps(TORKHAM).encode()
        yield b"}"

    r = client.post("/ask", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text


# -- conversations ---------------------------------------------------------------------------------------


def test_conversation_lifecycle(client):
    r = client.post("/conversations")
    assert r.status_code == 201
    cid = r.json()["conversation_id"]
    assert client.get(f"/conversations/{cid}").json() == {"conversation_id": cid, "turns": []}
    assert ask(client, question=TORKHAM, conversation_id=cid).status_code == 200
    assert len(client.get(f"/conversations/{cid}").json()["turns"]) == 1
    r = client.delete(f"/conversations/{cid}")
    assert r.status_code == 204 and r.content == b""
    assert client.get(f"/conversations/{cid}").status_code == 404
    assert client.delete(f"/conversations/{cid}").status_code == 404
    assert ask(client, question="And then?", conversation_id=cid).status_code == 404


@pytest.mark.parametrize("cid", ["nope", "%00", "..%2F..%2Fetc", "x" * 128])
def test_unknown_conversation_routes_are_404(client, cid):
    assert client.get(f"/conversations/{cid}").status_code == 404
    assert client.delete(f"/conversations/{cid}").status_code == 404


def test_overlong_conversation_id_is_422(client):
    assert client.get(f"/conversations/{'x' * 129}").status_code == 422


# -- documents -------------------------------------------------------------------------------------------


def test_list_documents(client, engine):
    data = client.get("/documents").json()
    assert data["count"] == len(engine.index.documents) == 2
    assert {d["doc_id"] for d in data["documents"]} == set(engine.index.documents)
    assert sum(d["sentences"] for d in data["documents"]) == len(engine.index.sentences)
    for d in data["documents"]:
        assert d["title"] == engine.index.documents[d["doc_id"]].title


def test_get_document_offsets_slice_the_text(client, engine):
    cited = ask(client, question=TORKHAM).json()["sentences"][0]
    r = client.get(f"/documents/{cited['doc_id']}")
    assert r.status_code == 200
    doc = r.json()
    assert doc["text"] == engine.index.documents[cited["doc_id"]].raw
    assert [s["index"] for s in doc["sentences"]] == list(range(len(doc["sentences"])))
    by_index = {s["index"]: s for s in doc["sentences"]}
    s = by_index[cited["sentence_index"]]
    assert (s["start"], s["end"]) == (cited["start"], cited["end"])
    assert doc["text"][s["start"]:s["end"]] == cited["text"]
    assert {s["kind"] for s in doc["sentences"]} <= {"title", "heading", "body"}
    assert doc["sentences"][0]["kind"] == "title"


@pytest.mark.parametrize("doc_id", ["nope.txt", "000_f45c79c16f6a0511", "000_F45C79C16F6A0511.TXT", "a.jsonl%237",
                                    "x" * 255 + "%23" + "y" * 255])
def test_unknown_document_is_404(client, doc_id):
    r = client.get(f"/documents/{doc_id}")
    assert r.status_code == 404
    assert "text" not in r.json()


@pytest.mark.parametrize("doc_id", ["..%2Fpyproject.toml", "..%2F..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd",
                                    "a%E2%80%AEtxt.exe", "a%E2%80%A8b.txt", "a%00b.txt", ".hidden.txt", "x" * 256,
                                    "a.jsonl%23%E2%80%AE", "%20a.txt"])
def test_an_id_no_document_can_have_is_404_with_the_reason(client, doc_id):
    r = client.get(f"/documents/{doc_id}")
    assert r.status_code == 404 and r.json()["detail"].startswith("no document can have this id: ")
    assert "text" not in r.json()


# -- health, page ----------------------------------------------------------------------------------------


def test_health(client, engine):
    r = client.get("/health")
    assert r.status_code == 200
    h = r.json()
    m = engine.index.manifest
    assert h["status"] == "ready" and h["ready"] is True and h["reloading"] is False
    assert h["corpus_fingerprint"] == engine.index.fingerprint
    assert (h["documents"], h["sentences"], h["passages"]) == (m["documents"], m["sentences"], m["passages"])
    assert h["model"] == m["model"] and h["index_built_at"] == m["built_at"]


def test_chat_page_and_its_files(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert '<script src="/static/app.js"' in r.text and "http" not in r.text.split("<body>")[0].replace("http-equiv", "")
    js = client.get("/static/app.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert "innerHTML" not in js.text and "insertAdjacentHTML" not in js.text  # text is never parsed as HTML
    assert client.get("/static/style.css").status_code == 200


def test_openapi_documents_every_route(client):
    spec = client.get("/openapi.json").json()
    assert {"/ask", "/conversations", "/conversations/{conversation_id}", "/documents", "/documents/{doc_id}",
            "/health"} <= set(spec["paths"])
    assert "/admin/reload" not in spec["paths"]  # only with allow_reload
    ask_op = spec["paths"]["/ask"]["post"]
    assert {"200", "404", "413", "422", "503"} <= set(ask_op["responses"])
    assert client.get("/docs").status_code == 200


# -- errors and states -----------------------------------------------------------------------------------


class _Broken:
    """An engine whose every use fails, as a bug would."""

    settings = Settings()

    def __getattr__(self, name):
        raise RuntimeError("boom: /secret/path/to/something")


def test_unexpected_error_is_json_500_without_traceback(engine, caplog):
    app = create_app(engine)
    app.dependency_overrides[get_engine] = lambda: _Broken()
    with TestClient(app) as c, caplog.at_level(logging.ERROR, logger="qa.api"):
        r = c.post("/ask", json={"question": TORKHAM})
        assert r.status_code == 500
        data = r.json()
        assert data["detail"] == "internal error" and data["error_id"]
        assert "boom" not in r.text and "Traceback" not in r.text and "/secret" not in r.text
        assert c.get("/documents").status_code == 500
    logged = [rec for rec in caplog.records if data["error_id"] in rec.getMessage()]
    assert logged and logged[0].exc_info is not None  # the traceback goes to the log, not the client


def test_not_ready_while_loading(engine):
    app = create_app(settings=engine.settings)  # no engine and no lifespan run: still "loading"
    c = TestClient(app)
    h = c.get("/health")
    assert h.status_code == 503 and h.json()["status"] == "loading" and h.json()["ready"] is False
    r = c.post("/ask", json={"question": TORKHAM})
    assert r.status_code == 503 and r.headers["retry-after"] == "5" and "loading" in r.json()["detail"]
    assert c.get("/documents").status_code == 503
    assert c.get("/").status_code == 200  # the page can say so itself


def test_load_failure_is_reported_not_raised(tmp_path):
    app = create_app(settings=Settings(corpus_dir=tmp_path / "missing", index_root=tmp_path / "index",
                                       data_dir=tmp_path / "data"))
    with TestClient(app) as c:
        state = app.state.qa
        with state._loading:  # waits for the background load to finish
            pass
        h = c.get("/health")
        assert h.status_code == 503
        assert h.json()["status"] == "error" and "missing" in h.json()["error"]
        r = c.post("/ask", json={"question": TORKHAM})
        assert r.status_code == 503 and "could not be loaded" in r.json()["detail"]


def test_lifespan_loads_the_engine(engine):
    app = create_app(settings=engine.settings)
    with TestClient(app) as c:
        with app.state.qa._loading:
            pass
        assert c.get("/health").json()["ready"] is True
        assert ask(c, question=TORKHAM).json()["answered"] is True


def _without_score(sentence: dict) -> dict:
    return {k: v for k, v in sentence.items() if k != "score"}


def test_concurrent_requests(client):
    """Many requests at once through the thread pool: all answered, each as it would be alone."""
    questions = [TORKHAM, TALIBAN, OFF_TOPIC, "Who led the Pakistani delegation that went to Kabul?"]
    alone = {q: ask(client, question=q).json()["sentences"] for q in questions}

    def one(i):
        q = questions[i % len(questions)]
        return q, ask(client, question=q, retriever="hybrid")

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(48)))
    assert all(r.status_code == 200 for _, r in results)
    for q, r in results:
        # The same sentences in the same order; a question encoded in a batch with others may differ
        # from its encoding alone in the last float digits (padding changes the kernels' summation order).
        got = r.json()["sentences"]
        assert [_without_score(s) for s in got] == [_without_score(s) for s in alone[q]]
        assert [s["score"] for s in got] == pytest.approx([s["score"] for s in alone[q]], abs=1e-5)
    assert len({r.json()["conversation_id"] for _, r in results}) == 48


def test_reload_swaps_the_index_and_keeps_answering(tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(SEEDS, corpus)
    settings = Settings(corpus_dir=corpus, index_root=tmp_path / "index", data_dir=tmp_path / "data",
                        admin_token="t0ken")
    app = create_app(Engine.open(settings), allow_reload=True)
    with TestClient(app, headers={"Authorization": "Bearer t0ken"}) as c:
        state = app.state.qa
        old_print = c.get("/health").json()["corpus_fingerprint"]
        cid = ask(c, question=TORKHAM).json()["conversation_id"]
        (corpus / "900_zanzibar.txt").write_text(
            "Zanzibar clove harvest doubles\n\nThe Zanzibar clove harvest reached 9,000 tonnes in 2022, "
            "double the year before. Farmers credited the early rains.\n", encoding="utf-8")

        with state._loading:  # a reload is running: a second one is refused
            assert c.post("/admin/reload", json={}).status_code == 409
        r = c.post("/admin/reload", json={})
        assert r.status_code == 202
        answered_meanwhile = 0
        while state.busy:  # the old engine keeps answering while the new index is built
            assert ask(c, question=TORKHAM).status_code == 200
            answered_meanwhile += 1
        h = c.get("/health").json()
        assert h["ready"] and h["error"] is None and h["documents"] == 3
        assert h["corpus_fingerprint"] != old_print
        assert c.get("/documents").json()["count"] == 3
        data = ask(c, question="How large was the Zanzibar clove harvest?").json()
        assert data["answered"] and data["sentences"][0]["doc_id"] == "900_zanzibar.txt"
        # conversations live in the store, not in the engine: they survive the swap
        assert ask(c, question="When did it reopen?", conversation_id=cid).status_code == 200
        assert len(c.get(f"/conversations/{cid}").json()["turns"]) == 2


def test_a_server_follows_a_build_that_another_process_publishes(tmp_path):
    """A sibling worker's reload or a `qa index` run publishes a new build; a server started with
    follow_index loads it without being asked, and keeps answering meanwhile."""
    corpus = tmp_path / "corpus"
    shutil.copytree(SEEDS, corpus)
    settings = Settings(corpus_dir=corpus, index_root=tmp_path / "index", data_dir=tmp_path / "data",
                        refresh_seconds=0.05)
    app = create_app(Engine.open(settings), follow_index=True)
    with TestClient(app) as c:
        old_print = c.get("/health").json()["corpus_fingerprint"]
        (corpus / "900_zanzibar.txt").write_text(
            "Zanzibar clove harvest doubles\n\nThe Zanzibar clove harvest reached 9,000 tonnes in 2022.\n",
            encoding="utf-8")
        other = Engine.open(settings)  # the other process: it sees the corpus changed and publishes a build
        deadline = time.monotonic() + 120  # a bound for a slow machine, not a measurement
        while (h := c.get("/health").json())["corpus_fingerprint"] == old_print:
            assert ask(c, question=TORKHAM).status_code == 200
            assert time.monotonic() < deadline, "the published build was never loaded"
            time.sleep(0.05)
        assert h["corpus_fingerprint"] == other.index.manifest["corpus_fingerprint"]
        assert h["documents"] == 3 and h["error"] is None
        while c.get("/health").json()["reloading"]:
            time.sleep(0.05)
        data = ask(c, question="How large was the Zanzibar clove harvest?").json()
        assert data["sentences"][0]["doc_id"] == "900_zanzibar.txt"


# -- schemathesis: the OpenAPI schema against the app ----------------------------------------------------
# The schema is read from an app made at import time; the module's engine is put into it by the
# `schema_engine` fixture before any generated request is sent. (schemathesis' lazy `from_fixture`
# loader does not work with pytest 9.2.)

# The app has an admin token that no generated request carries, as a server that takes updates: the admin
# routes are then checked for their 401s, and nothing generated ever reaches the corpus folder.
_schema_app = create_app(settings=Settings(admin_token=SecretStr(secrets.token_urlsafe(32))), load_on_startup=False)
schema = schemathesis.openapi.from_asgi("/openapi.json", _schema_app)


@pytest.fixture(scope="module")
def schema_engine(engine):
    _schema_app.state.qa.engine = engine
    yield engine
    _schema_app.state.qa.engine = None


@schema.parametrize()
@hypothesis_settings(max_examples=30, deadline=None, derandomize=True,
                     suppress_health_check=list(HealthCheck))
def test_openapi_schema_no_server_errors(case, schema_engine):
    """Generated valid and invalid requests: never a 5xx, and every response matches the documented schema."""
    case.call_and_validate()

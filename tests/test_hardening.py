"""Hostile input and process faults: the CLI treats text as text and fails in one line; the server's
workers end with their supervisor; HTTP errors name no server path; stalled bodies, foreign Host headers,
unauthenticated or cross-origin admin requests are refused; /docs works offline; CLI and HTTP conversations
stay apart. Every hostile input is made here."""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import uvicorn
from fastapi.testclient import TestClient
from rich.console import Console
from typer.testing import CliRunner

from qa import cli, console, serve
from qa.api import create_app
from qa.config import PROJECT_ROOT, Settings
from qa.conversation import ConversationStore, Turn
from qa.api.middleware import uvicorn_options
from qa.types import Answer, AnswerSentence, Citation

from tests.processes import alive, children
from tests.test_server import running_server

runner = CliRunner()
LOOPBACK_AND_TEST = ["localhost", "127.0.0.1", "::1", "testserver"]


def invoke(args: list[str], settings: Settings, **kwargs):
    env = {"QA_DATA_DIR": str(settings.data_dir), "QA_INDEX_ROOT": str(settings.index_root)}
    return runner.invoke(cli.app, args, env=env, **kwargs)


def one_error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


# -- the CLI: text is text ---------------------------------------------------------------------------


def test_markup_in_an_option_a_path_or_a_conversation_name_is_printed_as_is(seed_settings, tmp_path):
    r = invoke(["ask", "who", "--retriever", "[/bold]"], seed_settings)
    assert r.exit_code == 2 and "'[/bold]'" in one_error_line(r)
    missing = tmp_path / "news[/x]"
    r = invoke(["ask", "who", "--corpus", str(missing)], seed_settings)
    assert r.exit_code == 2 and str(missing) in one_error_line(r)
    r = invoke(["ask", "-c", "bad\x1bname", "who"], seed_settings)
    assert r.exit_code == 2 and "printable" in one_error_line(r)


def test_a_conversation_named_with_markup_answers(seed_settings, seed_engine):
    r = invoke(["ask", "-c", "w[/x]", "Who is Shinkai Karokhail?"], seed_settings)
    assert r.exit_code == 0, r.output
    assert "former Afghan ambassador" in r.stdout
    assert ConversationStore.from_settings(seed_settings).turns("w[/x]")


def test_a_follow_up_with_markup_survives_chat(seed_settings, seed_engine):
    lines = ["Why was the Torkham crossing closed?", "When did [/] it [bold]reopen?", "/sources", "/[/x]", ""]
    r = invoke(["chat", "-c", "chat[/]"], seed_settings, input="\n".join(lines))
    assert r.exit_code == 0, r.output
    assert "Traceback" not in r.output and "unknown command /[/x]" in r.stdout
    assert "[/]" in r.stdout and "[bold]" in r.stdout  # the follow-up, as it was understood, printed as typed
    turns = ConversationStore.from_settings(seed_settings).turns("chat[/]")
    assert [t.question for t in turns] == lines[:2]


def test_control_characters_in_document_text_are_shown_escaped(monkeypatch):
    buffer = io.StringIO()
    monkeypatch.setattr(console, "out", Console(file=buffer, force_terminal=True, markup=False, emoji=False,
                                            highlight=False, width=200))
    hostile = "Rates rose\x1b[2J\x1b]0;pwned\x07 by \u202etwo\u202c points :fire: [red]x[/red]."
    cite = Citation("evil\x1b[31m.txt", "Title\x9b1m", 0, 0, len(hostile))
    console.print_answer(Answer("q", True, [AnswerSentence(hostile, cite, 1.0)], "hybrid", 0.9,
                            understood_as="q [+ \x1b[5m]"))
    shown = buffer.getvalue()
    assert "\\x1b[2J" in shown and "\\x1b]0;pwned\\x07" in shown and "\\u202e" in shown and "\\x9b" in shown
    assert "\x1b[2J" not in shown and "\x07" not in shown and "\u202e" not in shown and "\x9b" not in shown
    assert ":fire:" in shown and "[red]x[/red]" in shown  # no emoji codes, no markup
    assert console.visible("line one\n\tline two") == "line one\n\tline two"


# -- the CLI: every failure is one line ----------------------------------------------------------------


def test_failures_are_one_line_and_a_non_zero_exit(seed_settings, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder", encoding="utf-8")
    nowhere = str(blocker / "index")  # a folder inside a file: every write there fails
    for args in (["ask", "Who?", "--index-root", nowhere], ["chat", "--index-root", nowhere],
                 ["index", "--index-root", nowhere], ["eval", "--gold", str(tmp_path / "none.jsonl")],
                 ["index", "--corpus", str(tmp_path / "missing")]):
        r = invoke(args, seed_settings, input="")
        assert r.exit_code != 0, (args, r.output)
        one_error_line(r)


def test_unexpected_errors_are_one_line_too(seed_settings, monkeypatch):
    def broken(*args, **kwargs):
        raise KeyError("boom")

    monkeypatch.setattr(cli, "open_engine", broken)
    r = invoke(["ask", "Who?"], seed_settings)
    assert r.exit_code == 1 and "boom" in one_error_line(r) and "KeyError" in r.stderr


def test_serve_with_workers_on_a_busy_port_fails_in_one_line(tmp_path):
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "qa.cli", "serve", "--workers", "2", "--port", str(port),
                            "--index-root", str(tmp_path / "index")], capture_output=True, text=True, timeout=120,
                           cwd=PROJECT_ROOT, env={**os.environ, "QA_DATA_DIR": str(tmp_path / "data")})
    assert r.returncode != 0
    assert r.stderr.strip() == f"error: cannot listen on 127.0.0.1:{port}: Address already in use"


def test_a_wildcard_bind_tells_how_to_allow_hosts_and_an_address_is_allowed(capsys):
    settings = Settings(allowed_hosts=["localhost", "127.0.0.1", "::1"])
    assert serve.bound_to("0.0.0.0", settings).allowed_hosts == settings.allowed_hosts
    assert "QA_ALLOWED_HOSTS" in capsys.readouterr().err
    assert serve.bound_to("192.0.2.7", settings).allowed_hosts[-1] == "192.0.2.7"
    assert Settings.model_fields["allowed_hosts"].default == ["localhost", "127.0.0.1", "::1"]


# -- the server's processes ----------------------------------------------------------------------------


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_a_child_whose_parent_is_already_gone_exits_at_once():
    code = "import os, sys; from qa.serve import end_with_parent; end_with_parent(int(sys.argv[1])); print('alive')"
    for parent, alive in ((os.getpid(), True), (os.getpid() + 1_000_000, False)):  # the second: not its parent
        r = subprocess.run([sys.executable, "-c", code, str(parent)], capture_output=True, text=True, timeout=60,
                           cwd=PROJECT_ROOT)
        assert (r.stdout.strip() == "alive") is alive and (r.returncode == 0) is alive, r.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_workers_die_with_a_killed_supervisor(tmp_path, seed_settings, seed_engine):
    with running_server(tmp_path, "--workers", "2", env={"QA_INDEX_ROOT": str(seed_settings.index_root)}) as server:
        workers = [pid for pid in children(server.process.pid) if alive(pid)]
        assert len(workers) >= 2, server.output()
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(timeout=10)
        deadline = time.monotonic() + 5
        while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(alive(pid) for pid in workers)


# -- HTTP ----------------------------------------------------------------------------------------------


def _settings(tmp_path: Path, **overrides) -> Settings:
    values = {"corpus_dir": tmp_path / "no-such-corpus", "index_root": tmp_path / "index",
              "data_dir": tmp_path / "data", "allowed_hosts": LOOPBACK_AND_TEST, **overrides}
    return Settings(**values)


def test_a_missing_corpus_gives_a_path_free_503(tmp_path):
    app = create_app(settings=_settings(tmp_path))
    with TestClient(app) as c:
        with app.state.qa._loading:  # waits for the background load to fail
            pass
        replies = [c.get("/health"), c.post("/ask", json={"question": "Who?"}), c.get("/documents")]
    for r in replies:
        assert r.status_code == 503
        assert "missing" in r.text and str(tmp_path) not in r.text and "/" not in r.json().get("detail", "")
        assert "Error" not in r.text and "no-such-corpus" not in r.text


def test_a_foreign_host_header_is_refused(tmp_path):
    with TestClient(create_app(settings=_settings(tmp_path), load_on_startup=False)) as c:
        assert c.get("/health", headers={"Host": "rebound.example.com"}).status_code == 400
        assert c.get("/health", headers={"Host": "rebound.example.com:8000"}).status_code == 400
        for host in ("localhost:8000", "127.0.0.1", "[::1]:8000"):
            assert c.get("/health", headers={"Host": host}).status_code == 503  # loading: but answered


def test_admin_routes_need_the_token_and_a_json_body(tmp_path):
    app = create_app(settings=_settings(tmp_path, admin_token="s3cret"), allow_reload=True, load_on_startup=False)
    with TestClient(app) as c:
        assert c.post("/admin/reload", json={}).status_code == 401
        assert c.post("/admin/reload", json={}, headers={"Authorization": "Bearer s3cre"}).status_code == 401
        assert c.post("/admin/reload", json={}, headers={"Authorization": "Basic s3cret"}).status_code == 401
        cross_origin = c.post("/admin/reload", content="{}", headers={"Authorization": "Bearer s3cret",
                                                                      "Content-Type": "text/plain"})
        assert cross_origin.status_code == 415
        assert c.post("/admin/reload", json={}, headers={"Authorization": "Bearer s3cret"}).status_code == 202
    without_token = create_app(settings=_settings(tmp_path), allow_reload=True, load_on_startup=False)
    with TestClient(without_token) as c:
        assert c.post("/admin/reload", json={}, headers={"Authorization": "Bearer x"}).status_code == 403
    with TestClient(create_app(settings=_settings(tmp_path), load_on_startup=False)) as c:
        assert c.post("/admin/reload", json={}).status_code == 404  # not served unless allowed


def test_api_docs_are_served_from_local_assets(tmp_path):
    with TestClient(create_app(settings=_settings(tmp_path), load_on_startup=False)) as c:
        page = c.get("/docs")
        assert page.status_code == 200 and "swagger-ui" in page.text
        assert not re.search(r"(?:src|href)=[\"']?(?:https?:)?//", page.text)
        assets = re.findall(r"(?:src|href)=[\"'](/[^\"']+)[\"']", page.text)
        assert len(assets) >= 2 and any(a.endswith(".js") for a in assets)
        for asset in assets:
            assert c.get(asset).status_code == 200, asset
        assert c.get("/openapi.json").status_code == 200


def test_cli_conversations_are_out_of_reach_over_http(tmp_path, seed_engine, seed_settings):
    settings = _settings(tmp_path, corpus_dir=seed_settings.corpus_dir, index_root=seed_settings.index_root)
    cli_store = ConversationStore.from_settings(settings)
    cli_store.append("work", Turn.from_answer("Who?", Answer("Who?", False, [], "hybrid")), create=True)
    kept = seed_engine._conversations
    try:
        with TestClient(create_app(seed_engine, settings)) as c:
            assert c.get("/conversations/work").status_code == 404
            assert c.delete("/conversations/work").status_code == 404
            r = c.post("/ask", json={"question": "When did it reopen?", "conversation_id": "work"})
            assert r.status_code == 404
            cid = c.post("/ask", json={"question": "Why was the Torkham crossing closed?"}).json()["conversation_id"]
            assert c.get(f"/conversations/{cid}").status_code == 200
    finally:
        seed_engine._conversations = kept
    assert len(cli_store.turns("work")) == 1  # untouched
    assert cli_store.turns(cid) is None  # and an HTTP conversation is not in the CLI's store


# -- HTTP over a real socket: timeouts -------------------------------------------------------------------


@pytest.fixture()
def live_server(tmp_path):
    """uvicorn in a thread on a free loopback port, over an app that needs no engine for these requests."""
    settings = _settings(tmp_path, body_timeout_s=1.0, keep_alive_timeout_s=1.0, body_deadline_s=2.0)
    app = create_app(settings=settings, load_on_startup=False)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", **uvicorn_options(settings)))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive()
        time.sleep(0.02)
    yield sock.getsockname()
    server.should_exit = True
    thread.join(10)


def _read_until_closed(conn: socket.socket, limit_s: float) -> tuple[bytes, float]:
    t0, data = time.monotonic(), b""
    conn.settimeout(limit_s)
    while chunk := conn.recv(4096):
        data += chunk
    return data, time.monotonic() - t0


def test_a_partial_body_is_answered_408_and_its_connection_closed(live_server):
    with socket.create_connection(live_server, timeout=10) as conn:
        conn.sendall(b"POST /ask HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n" + b'{"question"')
        data, waited = _read_until_closed(conn, limit_s=10)  # recv raises on a connection kept open
    assert data.startswith(b"HTTP/1.1 408") and waited < 8


def test_a_body_that_trickles_in_is_answered_408_at_the_deadline(live_server):
    """A byte every 0.3 s never trips the per-read timeout (1 s); the whole body's deadline (2 s) ends it."""
    with socket.create_connection(live_server, timeout=10) as conn:
        conn.sendall(b"POST /ask HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n")
        conn.settimeout(0.3)
        data = b""
        for _ in range(100):  # 30 s at most: a body read for ever fails the test
            try:
                conn.sendall(b" ")
                chunk = conn.recv(4096)
            except TimeoutError:
                continue
            except OSError:  # closed after the answer
                break
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"HTTP/1.1 408") and b"did not arrive within 2 s" in data


def test_an_idle_keep_alive_connection_is_closed(live_server):
    with socket.create_connection(live_server, timeout=10) as conn:
        conn.sendall(b"GET /static/style.css HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        data, _ = _read_until_closed(conn, limit_s=10)
    assert data.startswith(b"HTTP/1.1 200")


def test_a_partial_request_head_or_a_silent_connection_is_closed(live_server):
    for sent in (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a", b""):
        with socket.create_connection(live_server, timeout=10) as conn:
            conn.sendall(sent)
            data, waited = _read_until_closed(conn, limit_s=10)
        assert data == b"" and waited < 8

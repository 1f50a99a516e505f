"""The real server process: `qa serve` (and the uvicorn factory) on a free loopback port, spoken to over HTTP.

`running_server` is also used by tests/test_browser.py. Only 127.0.0.1 is ever used.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from qa.config import PROJECT_ROOT

pytestmark = pytest.mark.model  # every server loads the real model
SEEDS = PROJECT_ROOT / "seeds"
START_TIMEOUT = 240.0  # an upper bound for a slow machine, not a measurement
TORKHAM = "Why was the Torkham crossing closed?"


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log: Path

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


@contextmanager
def running_server(tmp_path: Path, *args: str, corpus: Path = SEEDS, factory: bool = False,
                   env: dict[str, str] | None = None):
    """Start a server on 127.0.0.1 with an OS-chosen port, wait until /health says ready, stop it after."""
    env = {**os.environ, "QA_CORPUS_DIR": str(corpus), "QA_INDEX_ROOT": str(tmp_path / "index"),
           "QA_DATA_DIR": str(tmp_path / "data"), "PYTHONUNBUFFERED": "1", **(env or {})}
    if factory:
        cmd = [sys.executable, "-m", "uvicorn", "--factory", "qa.api:create_app", "--host", "127.0.0.1",
               "--port", "0", *args]
    else:
        cmd = [sys.executable, "-m", "qa.cli", "serve", "--host", "127.0.0.1", "--port", "0", "--corpus", str(corpus),
               *args]
    log = tmp_path / "server.log"
    with open(log, "wb") as fh:
        process = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                   cwd=PROJECT_ROOT)
    server = Server("", process, log)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not server.url:
            if process.poll() is not None:
                pytest.fail(f"the server exited with {process.returncode}:\n{server.output()}")
            if time.monotonic() > deadline:
                pytest.fail(f"the server did not start:\n{server.output()}")
            m = re.search(r"(?:Uvicorn running|listening) on (http://127\.0\.0\.1:\d+)", server.output())
            if m:
                server.url = m.group(1)
            else:
                time.sleep(0.1)
        with httpx.Client(base_url=server.url, timeout=30) as client:
            while True:
                try:
                    r = client.get("/health")
                    if r.status_code == 200 and r.json()["ready"]:
                        break
                    assert r.status_code == 503, r.text  # loading: not ready yet
                except httpx.TransportError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the server never became ready:\n{server.output()}")
                time.sleep(0.1)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("server")) as s:
        yield s


@pytest.fixture()
def client(server):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def test_listens_on_loopback_only(server):
    assert server.url.startswith("http://127.0.0.1:")


def test_ask_and_follow_up_over_http(client):
    r = client.post("/ask", json={"question": TORKHAM})
    assert r.status_code == 200, r.text
    first = r.json()
    assert first["answered"] and first["sentences"]
    s = first["sentences"][0]
    doc = client.get(f"/documents/{s['doc_id']}").json()
    assert doc["text"][s["start"]:s["end"]] == s["text"]

    r = client.post("/ask", json={"question": "When did it reopen?", "conversation_id": first["conversation_id"]})
    assert r.status_code == 200
    assert "Torkham" in r.json()["understood_as"]
    turns = client.get(f"/conversations/{first['conversation_id']}").json()["turns"]
    assert len(turns) == 2
    assert client.delete(f"/conversations/{first['conversation_id']}").status_code == 204


def test_errors_over_http(client):
    assert client.post("/ask", json={"question": " "}).status_code == 422
    assert client.post("/ask", content=b"{oops", headers={"Content-Type": "application/json"}).status_code == 422
    assert client.post("/ask", json={"question": TORKHAM, "conversation_id": "gone"}).status_code == 404
    assert client.get("/documents/..%2F..%2Fpyproject.toml").status_code == 404
    big = b'{"question": "' + b"a" * (70 * 1024) + b'"}'
    r = client.post("/ask", content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413

    def chunked():  # no Content-Length: counted as it streams
        for _ in range(100):
            yield b" " * 1024

    r = client.post("/ask", content=chunked(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413


def test_concurrent_clients(server):
    questions = [TORKHAM, "When did the Taliban return to power in Afghanistan?", "What is the capital of Mongolia?"]
    with httpx.Client(base_url=server.url, timeout=60, limits=httpx.Limits(max_connections=32)) as c:
        with ThreadPoolExecutor(32) as pool:
            responses = list(pool.map(lambda i: c.post("/ask", json={"question": questions[i % 3]}), range(96)))
    assert [r.status_code for r in responses] == [200] * 96
    by_question: dict[str, list] = {}
    for r in responses:
        by_question.setdefault(r.json()["question"], []).append(r.json()["sentences"])
    for answers in by_question.values():
        assert all(a == answers[0] for a in answers)  # the same answer whatever ran beside it


def test_page_is_served(client):
    r = client.get("/")
    assert r.status_code == 200 and "<title>qa" in r.text
    assert client.get("/static/app.js").status_code == 200


def test_stops_cleanly_on_sigterm(tmp_path):
    with running_server(tmp_path) as s:
        s.process.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal it caught (so the exit status says SIGTERM)
        assert s.process.wait(timeout=30) in (0, -signal.SIGTERM)
        out = s.output()
        assert "Application shutdown complete" in out and "Finished server process" in out
        assert "Traceback" not in out


def test_uvicorn_factory_loads_the_engine_in_the_lifespan(tmp_path):
    """`python -m uvicorn --factory qa.api:create_app`: the port opens at once, /health is 503 until the
    engine is loaded in the background, then the service answers."""
    with running_server(tmp_path, factory=True) as s, httpx.Client(base_url=s.url, timeout=30) as c:
        assert c.get("/health").json()["documents"] == 2
        assert c.post("/ask", json={"question": TORKHAM}).json()["answered"] is True


def test_one_process_when_asked(tmp_path):
    with running_server(tmp_path, "--workers", "1") as s, httpx.Client(base_url=s.url, timeout=30) as c:
        assert c.post("/ask", json={"question": TORKHAM}).json()["answered"] is True
        assert c.get("/health").json()["worker_pid"] == s.process.pid  # no supervisor: the server is this process


def test_workers_share_conversations_and_all_take_a_reload(tmp_path):
    """`qa serve --workers 2` (qa.serve): a conversation goes on whichever worker answers, and a reload sent
    to one worker reaches both (the other loads the build the first publishes)."""
    corpus = tmp_path / "corpus"
    shutil.copytree(SEEDS, corpus)
    with running_server(tmp_path, "--workers", "2", "--allow-reload", corpus=corpus,
                        env={"QA_ADMIN_TOKEN": "t0ken"}) as s:

        def fresh(method: str, path: str, headers: dict | None = None, **kwargs) -> httpx.Response:
            # a new connection: any worker may take it
            return httpx.request(method, s.url + path, timeout=30, headers={"Connection": "close", **(headers or {})},
                                 **kwargs)

        cid = fresh("POST", "/ask", json={"question": TORKHAM}).json()["conversation_id"]
        for _ in range(5):
            r = fresh("POST", "/ask", json={"question": "When did it reopen?", "conversation_id": cid})
            assert r.status_code == 200 and "Torkham" in r.json()["understood_as"]
        assert len(fresh("GET", f"/conversations/{cid}").json()["turns"]) == 6

        old_print = fresh("GET", "/health").json()["corpus_fingerprint"]
        (corpus / "900_zanzibar.txt").write_text(
            "Zanzibar clove harvest doubles\n\nThe Zanzibar clove harvest reached 9,000 tonnes in 2022.\n",
            encoding="utf-8")
        assert fresh("POST", "/admin/reload", json={}, headers={"Authorization": "Bearer t0ken"}).status_code == 202
        seen: dict[int, str] = {}
        deadline = time.monotonic() + START_TIMEOUT
        while sum(fp != old_print for fp in seen.values()) < 2:
            assert time.monotonic() < deadline, f"not every worker took the reload: {seen}\n{s.output()}"
            h = fresh("GET", "/health").json()
            seen[h["worker_pid"]] = h["corpus_fingerprint"]
            time.sleep(0.05)
        assert len(seen) == 2 and s.process.pid not in seen  # two workers answered, the supervisor never
        for _ in range(4):
            data = fresh("POST", "/ask", json={"question": "How large was the Zanzibar clove harvest?"}).json()
            assert data["sentences"][0]["doc_id"] == "900_zanzibar.txt"

        os.kill(next(iter(seen)), signal.SIGKILL)  # a worker dies: the supervisor starts another in its place
        while len(seen) < 3:
            assert time.monotonic() < deadline, f"the dead worker was not replaced: {seen}\n{s.output()}"
            try:
                h = fresh("GET", "/health").json()
                seen[h["worker_pid"]] = h["corpus_fingerprint"]
            except httpx.TransportError:  # a connection the dead worker had been given
                pass
            time.sleep(0.05)
        assert all(fp != old_print for fp in seen.values())  # the new worker opened the new build


def _serving_workers(url: str, want: int, deadline: float, without: set[int] = frozenset()) -> set[int]:
    """The pids of ``want`` workers that answer /health ready (none of ``without``), from fresh connections."""
    seen: set[int] = set()
    while len(seen - without) < want:
        assert time.monotonic() < deadline, f"only {seen - without} answered"
        try:
            r = httpx.get(url + "/health", timeout=10, headers={"Connection": "close"})
            if r.status_code == 200:
                seen.add(r.json()["worker_pid"])
        except httpx.TransportError:  # a connection the killed worker had been given
            pass
        time.sleep(0.05)
    return seen - without


def test_a_worker_killed_again_and_again_is_restarted_and_the_server_keeps_serving(tmp_path):
    """Three kills of a serving worker within a minute are crashes, not failed starts (which, with no worker
    serving, would stop the server): each time the worker is replaced, after a back-off."""
    with running_server(tmp_path, "--workers", "2") as s:
        deadline = time.monotonic() + 3 * START_TIMEOUT
        killed: set[int] = set()
        for _ in range(3):
            victim = max(_serving_workers(s.url, 2, deadline, killed))  # the newest: the same slot each time
            os.kill(victim, signal.SIGKILL)
            killed.add(victim)
        _serving_workers(s.url, 2, deadline, killed)  # two new workers serve
        assert s.process.poll() is None
        assert httpx.post(s.url + "/ask", json={"question": TORKHAM}, timeout=30).json()["answered"] is True
        assert "stopping the server" not in s.output() and "while serving" in s.output()

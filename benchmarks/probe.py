"""Reliability probe of `qa serve` on loopback: hostile requests, kill -9 under writers, answers during rebuilds.

    .venv/bin/python benchmarks/probe.py                       # all three phases, about three minutes
    .venv/bin/python benchmarks/probe.py --phase malformed --seconds 30 --out probe.json

Each phase starts its own `qa serve --workers 2` on 127.0.0.1 (an OS-chosen port) over a copy of seeds/ in a
temporary folder (corpus and index shared by the phases, a conversation store of its own each), and stops it:
  1. malformed: a fixed list of broken requests over raw sockets and HTTP (bad request lines and headers,
     foreign Host headers, bad or huge Content-Length, stalled bodies, invalid UTF-8 and JSON, wrong
     types, path tricks, admin requests without a token or as text/plain) → count of 5xx replies, and of
     connections left open;
  2. kill: 8 writer threads continue their own conversations for --seconds, then the supervisor and its
     workers all get SIGKILL at once → acknowledged turns (HTTP 200) missing from the SQLite store, and
     its `PRAGMA integrity_check`;
  3. rebuild: 8 reader threads ask questions while new documents are added and the index is rebuilt and
     swapped in, alternately by POST /admin/reload and by `qa index --rebuild` in another process →
     answers whose citation text differs from the document's text[start:end] ("torn"), and errors.
Prints a JSON report.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.http_bench import process_tree, wait_ready  # noqa: E402
TOKEN = "probe-admin-token"
QUESTIONS = ["Why was the Torkham crossing closed?", "When did the Taliban return to power in Afghanistan?",
             "Who is Shinkai Karokhail?", "How many Taliban members were killed in the clash?"]


@dataclass
class Server:
    process: subprocess.Popen
    url: str
    host: str
    port: int
    root: Path  # the temporary folder: corpus/, index/
    data: Path  # the conversation store's folder

    def env(self) -> dict[str, str]:
        return {**os.environ, "QA_CORPUS_DIR": str(self.root / "corpus"), "QA_INDEX_ROOT": str(self.root / "index"),
                "QA_DATA_DIR": str(self.data), "QA_ADMIN_TOKEN": TOKEN, "QA_MAX_TURNS": "100000"}


@contextmanager
def serve(root: Path, data: Path) -> Iterator[Server]:
    """`qa serve --workers 2 --allow-reload` over root/corpus (a copy of seeds/, made once)."""
    if not (root / "corpus").exists():
        shutil.copytree(ROOT / "seeds", root / "corpus")
    server = Server(None, "", "127.0.0.1", 0, root, data)  # type: ignore[arg-type]
    log = data / "server.log"
    data.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as fh:
        server.process = subprocess.Popen(
            [sys.executable, "-m", "qa.cli", "serve", "--host", "127.0.0.1", "--port", "0", "--workers", "2",
             "--allow-reload", "--no-access-log"], stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=ROOT, env=server.env())
    try:
        deadline = time.monotonic() + 600
        while not (m := re.search(r"listening on http://127\.0\.0\.1:(\d+)", log.read_text(errors="replace"))):
            if server.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the server did not start:\n{log.read_text(errors='replace')}")
            time.sleep(0.2)
        server.port = int(m.group(1))
        server.url = f"http://127.0.0.1:{server.port}"
        wait_ready(server.url)
        yield server
    finally:
        if server.process.poll() is None:
            server.process.terminate()  # the supervisor stops its workers
        server.process.wait(60)


# -- 1. malformed requests ---------------------------------------------------------------------------------

RAW_REQUESTS = [
    b"GARBAGE\r\n\r\n", b"GET\r\n\r\n", b"GET / HTTP/9.9\r\nHost: 127.0.0.1\r\n\r\n",
    b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX: " + b"b" * 70000 + b"\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header\r\n\r\n", b"GET / HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", b"GET /\x00 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    b"POST /ask HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -5\r\n\r\n",
    b"POST /ask HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: abc\r\n\r\n",
    b"POST /ask HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
    b"POST /ask HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"POST /ask HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
    b"POST /ask HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 99999999\r\n\r\n{",
]
STALLED = b"POST /ask HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"q"
BODIES: list[bytes | str] = [
    b"", b"{", b"[]", b"null", b"1", b'"x"', b"{}", b'{"question": null}', b'{"question": 5}', b'{"question": ""}',
    b'{"question": "   "}', b'{"question": "\\u0000"}', b'{"question": "' + b"a" * 5000 + b'"}',
    b'{"question": "who", "top_k": -1}', b'{"question": "who", "top_k": 1e309}', b'{"question": "who", "top_k": "5"}',
    b'{"question": "who", "retriever": "magic"}', b'{"question": "who", "conversation_id": ""}',
    b'{"question": "who", "conversation_id": "' + b"c" * 500 + b'"}', b'{"question": "who", "extra": 1}',
    b'{"question": "who", "conversation_id": "../../etc/passwd"}', b'{"question": ["who"]}',
    b"\xff\xfe\x00q", b'{"question": "\xed\xa0\x80"}', b"[" * 5000 + b"]" * 5000,
    b'{"question": {"$gt": ""}}', b'{"question": "who", "abstain": "no"}', b"{" + b'"a":1,' * 3000 + b'"a":1}',
]
PATHS = ["/documents/..%2F..%2Fpyproject.toml", "/documents/%00", "/documents/" + "d" * 300, "/conversations/%ff",
         "/conversations/" + "x" * 200, "/static/../api/app.py", "/static/%2e%2e/pyproject.toml", "/docs-assets/../x",
         "/nope", "//health", "/health?x=" + "y" * 5000, "/documents/%2e%2e"]


def _raw(host: str, port: int, data: bytes, wait_s: float = 15.0) -> tuple[int | None, bool]:
    """Send ``data`` and read the reply: its status (None when the server just closed) and whether the
    server closed the connection within ``wait_s``."""
    with socket.create_connection((host, port), timeout=wait_s) as conn:
        conn.sendall(data)
        reply = b""
        try:
            while chunk := conn.recv(65536):
                reply += chunk
            closed = True
        except TimeoutError:
            closed = False
        except ConnectionResetError:
            closed = True
    m = re.match(rb"HTTP/1\.[01] (\d{3})", reply)
    return (int(m.group(1)) if m else None), closed


def phase_malformed(server: Server) -> dict:
    statuses: list[int | None] = []
    left_open = 0
    for data in [*RAW_REQUESTS, STALLED]:
        status, closed = _raw(server.host, server.port, data)
        statuses.append(status)
        left_open += not closed
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=server.url, timeout=30) as c:

        def send(method: str, path: str, **kwargs) -> None:
            try:
                statuses.append(c.request(method, path, **kwargs).status_code)
            except httpx.TransportError:  # closed without a reply
                statuses.append(None)

        for body in BODIES:
            for ctype in ("application/json", "text/plain", None):
                for path in ("/ask", "/conversations"):
                    send("POST", path, content=body, headers={"Content-Type": ctype} if ctype else {})
        for path in PATHS:
            for method in ("GET", "DELETE", "PUT"):
                send(method, path, content=b"x" if method == "PUT" else None)
        for host in ("evil.example", "127.0.0.1.evil.example", "localhost:1@evil", ""):
            send("GET", "/health", headers={"Host": host})
        send("POST", "/admin/reload", json={})
        send("POST", "/admin/reload", json={}, headers={"Authorization": "Bearer wrong"})
        send("POST", "/admin/reload", content="{}", headers={**auth, "Content-Type": "text/plain"})
        send("TRACE", "/")
        send("OPTIONS", "/ask")
    codes = [s for s in statuses if s is not None]
    return {"requests": len(statuses), "replies_5xx": sum(s >= 500 for s in codes),
            "closed_without_reply": len(statuses) - len(codes), "connections_left_open": left_open,
            "status_counts": {str(k): codes.count(k) for k in sorted(set(codes))},
            "health_after": httpx.get(server.url + "/health", timeout=30).status_code}


# -- 2. kill -9 during conversation writers ----------------------------------------------------------------


def phase_kill(server: Server, seconds: float, writers: int = 8) -> dict:
    acknowledged: dict[str, list[str]] = {}
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def writer(n: int) -> None:
        cid = None
        with httpx.Client(base_url=server.url, timeout=30) as c:
            for turn in range(1_000_000):
                if time.monotonic() > stop:
                    return
                question = f"{QUESTIONS[turn % len(QUESTIONS)]} (writer {n} turn {turn})"
                try:
                    r = c.post("/ask", json={"question": question, "conversation_id": cid, "top_k": 1})
                except httpx.TransportError:
                    return  # the server is gone
                if r.status_code == 200:
                    cid = r.json()["conversation_id"]
                    with lock:
                        acknowledged.setdefault(cid, []).append(question)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    time.sleep(seconds)
    pids = process_tree(server.process.pid)
    for pid in pids:  # the whole server at once
        os.kill(pid, signal.SIGKILL)
    for t in threads:
        t.join()
    server.process.wait(30)
    with sqlite3.connect(server.data / "conversations-http.sqlite3") as db:
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
        stored = {cid: {json.loads(data)["question"] for (data,) in
                        db.execute("SELECT data FROM turns WHERE conversation_id = ?", (cid,))}
                  for cid in acknowledged}
    lost = sum(q not in stored[cid] for cid, qs in acknowledged.items() for q in qs)
    return {"writers": writers, "seconds": seconds, "processes_killed": len(pids),
            "acknowledged_turns": sum(map(len, acknowledged.values())), "acknowledged_turns_lost": lost,
            "integrity_check": integrity}


# -- 3. answers during live rebuilds and reloads -----------------------------------------------------------


def phase_rebuild(server: Server, seconds: float, readers: int = 8) -> dict:
    corpus = server.root / "corpus"
    truth = {p.name: p.read_text(encoding="utf-8") for p in corpus.glob("*.txt")}  # never rewritten below
    lock = threading.Lock()  # guards truth and counts
    counts = {"answers": 0, "citations": 0, "torn": 0, "errors": 0, "rebuilds": 0}
    stop = threading.Event()

    def reader(n: int) -> None:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            i = n
            while not stop.is_set():
                question = QUESTIONS[i % len(QUESTIONS)] if i % 3 else f"How large was harvest number {i % 7}?"
                i += 1
                try:
                    r = c.post("/ask", json={"question": question, "abstain": False})
                except httpx.TransportError:
                    r = None
                with lock:
                    if r is None or r.status_code != 200:
                        counts["errors"] += 1
                        continue
                    counts["answers"] += 1
                    for s in r.json()["sentences"]:
                        for cite in [s, *s["also_in"]]:  # also_in carries no text: its span must exist
                            counts["citations"] += 1
                            span = truth.get(cite["doc_id"], "")[cite["start"]:cite["end"]]
                            counts["torn"] += not span or (cite is s and span != s["text"])

    def rebuilder() -> None:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        k = 0
        while not stop.is_set():
            name = f"9{k:02d}_harvest.txt"
            text = (f"Harvest report {k}\n\nThe harvest number {k % 7} reached {1000 + k} tonnes this year, "
                    f"officials said. Farmers credited the early rains in region {k}.\n")
            with lock:
                truth[name] = text
            (corpus / name).write_text(text, encoding="utf-8")
            if k % 2 == 0:
                r = httpx.post(server.url + "/admin/reload", json={}, headers=auth, timeout=30)
                while r.status_code == 202 and httpx.get(server.url + "/health", timeout=30).json()["reloading"]:
                    time.sleep(0.2)
            else:
                subprocess.run([sys.executable, "-m", "qa.cli", "index", "--rebuild"], cwd=ROOT, env=server.env(),
                               capture_output=True, check=True)
            with lock:
                counts["rebuilds"] += 1
            k += 1

    with ThreadPoolExecutor(readers + 1) as pool:
        futures = [pool.submit(reader, n) for n in range(readers)] + [pool.submit(rebuilder)]
        time.sleep(seconds)
        stop.set()
        for f in futures:
            f.result()
    return {"readers": readers, "seconds": seconds, **counts}


# -- main --------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phase", choices=["malformed", "kill", "rebuild"], action="append",
                        help="repeat to choose; default: all three")
    parser.add_argument("--seconds", type=float, default=45.0, help="length of the kill and rebuild phases")
    parser.add_argument("--out", type=Path, help="also write the report here")
    args = parser.parse_args()
    report: dict = {"date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(), "command": " ".join(sys.argv)}
    with tempfile.TemporaryDirectory(prefix="qa-probe-") as tmp:
        for phase in args.phase or ["malformed", "kill", "rebuild"]:  # rebuild last: it changes the corpus
            run_phase(phase, Path(tmp), args.seconds, report)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


def run_phase(phase: str, root: Path, seconds: float, report: dict) -> None:
    with serve(root, root / f"data-{phase}") as server:
        t0 = time.monotonic()
        if phase == "malformed":
            report[phase] = phase_malformed(server)
        elif phase == "kill":
            report[phase] = phase_kill(server, seconds)
        else:
            report[phase] = phase_rebuild(server, seconds)
        report[phase]["took_s"] = round(time.monotonic() - t0, 1)
        print(json.dumps({phase: report[phase]}), file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()

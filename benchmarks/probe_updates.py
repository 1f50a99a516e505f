"""Probe of live document updates against a real `qa serve`, as a hostile client and an unlucky operator.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/probe_updates.py --workers 2 --out probe-updates-2.json
    PYTHONPATH=$PWD .venv/bin/python benchmarks/probe_updates.py --workers 1 --case names --case slow
    PYTHONPATH=$PWD .venv/bin/python benchmarks/probe_updates.py --workers 2 --code /tmp/w30-base  # other code

Each server is `qa serve --workers N` on 127.0.0.1:--port over a copy of seeds/ in a temporary folder, with
an admin token and connections left where the kernel put them (QA_SERVE_BALANCE=false), so a client stays on
one worker; `--code` runs another checkout's `qa` (a git worktree) with this script. The cases:
  links:  a folder and a file inside the corpus that are links to a folder outside: PUT and DELETE through
          them → statuses, and whether anything outside changed;
  names:  bad names and bodies (temporary-name overflow at 241-255 bytes, a name that is a folder, a path
          through a file, over-long and deep paths, `..` and percent-encoded slashes and backslashes,
          bidirectional, line-separator, NUL and zero-width characters, leading/trailing spaces and dots,
          case and Unicode-form collisions, a 200-character name read back with GET, JSON nested 1,000
          deep, bad encodings) → status counts, 5xx, files left behind (temporary files, empty folders);
  slow:   a PUT body sent a byte every 5 s → seconds until the server answers (capped at 90 s);
  race:   --rounds rounds of a PUT of a new document on one worker and, at the same moment, a DELETE of the
          previous round's on the other → acknowledged writes lost (on disk but not served by every
          worker 30 s later), deletes undone, own writes not read at once on the worker that took them;
  kill:   a writer adding and removing documents while the newest worker gets SIGKILL, 3 s after the last
          kill and once both workers serve again, --kills times → whether the server kept serving, 5xx,
          acknowledged writes lost, index load failures in the log, builds left on disk (--workers ≥ 2);
  watch:  `--watch`: a file written in 10 parts over 5 s while GET polls it, and a PUT racing the watcher
          → answers that served a part of the file, seconds until the whole file was served.
Prints a JSON report; --out writes it too.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.http_bench import process_tree  # noqa: E402

TOKEN = "probe-updates-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TEXT = {"Content-Type": "text/plain"}
DOC = "Harbour report {n}\n\nThe Kestrel harbour handled {n} ships this week, the port authority said.\n"


@dataclass
class Server:
    process: subprocess.Popen
    url: str
    root: Path  # corpus/, index/, outside/, server.log
    workers: int
    log_at: int = 0  # where this server's lines begin in server.log

    @property
    def corpus(self) -> Path:
        return self.root / "corpus"

    def log(self) -> str:
        return (self.root / "server.log").read_text(errors="replace")[self.log_at:]

    def worker_pids(self) -> list[int]:
        """The workers serving now (the supervisor has other children too: multiprocessing's resource tracker)."""
        return sorted(ready_pids(self, 30)) if self.workers > 1 else [self.process.pid]

    def alive(self) -> bool:
        return self.process.poll() is None


def prepare(root: Path) -> None:
    """root/corpus (a copy of seeds/ with a folder named like a document), root/outside, the shared model export."""
    shutil.copytree(ROOT / "seeds", root / "corpus")
    (root / "corpus" / "dir.txt").mkdir()
    (root / "corpus" / "file.txt").write_text(DOC.format(n=1), encoding="utf-8")
    (root / "outside").mkdir()
    (root / "outside" / "target.txt").write_text("outside the corpus\n", encoding="utf-8")
    (root / "index").mkdir()
    models = ROOT / "index" / "_models"  # the model's ONNX export, made once by the first server
    models.mkdir(parents=True, exist_ok=True)
    (root / "index" / "_models").symlink_to(models)


@contextmanager
def serve(root: Path, code: Path, workers: int, port: int, *args: str, env: dict | None = None) -> Iterator[Server]:
    log = root / "server.log"
    at = log.stat().st_size if log.exists() else 0
    environ = {**os.environ, "QA_CORPUS_DIR": str(root / "corpus"), "QA_INDEX_ROOT": str(root / "index"),
               "QA_DATA_DIR": str(root / "data"), "QA_ADMIN_TOKEN": TOKEN, "QA_SERVE_BALANCE": "false",
               "PYTHONPATH": str(code), "PYTHONUNBUFFERED": "1", **(env or {})}
    with open(log, "ab") as fh:
        process = subprocess.Popen([sys.executable, "-m", "qa.cli", "serve", "--host", "127.0.0.1", "--port",
                                    str(port), "--workers", str(workers), "--no-access-log", *args],
                                   stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=code,
                                   env=environ)
    server = Server(process, f"http://127.0.0.1:{port}", root, workers, at)
    try:
        deadline = time.monotonic() + 900
        while len(ready_pids(server)) < workers:
            if not server.alive() or time.monotonic() > deadline:
                raise SystemExit(f"the server did not start:\n{server.log()[-3000:]}")
            time.sleep(0.5)
        yield server
    finally:
        if server.alive():
            process.terminate()
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            for pid in process_tree(process.pid):
                os.kill(pid, signal.SIGKILL)
            process.wait()


def ready_pids(server: Server, tries: int = 20) -> set[int]:
    """The worker pids that answer /health ready, from fresh connections."""
    seen: set[int] = set()
    for _ in range(tries):
        try:
            r = httpx.get(server.url + "/health", timeout=5, headers={"Connection": "close"})
            if r.status_code == 200:
                seen.add(r.json()["worker_pid"])
        except httpx.TransportError:
            pass
    return seen


class Pinned:
    """An HTTP client whose keep-alive connection is on the worker ``pid`` (reconnected until it is)."""

    def __init__(self, url: str, pid: int):
        self.url, self.pid, self.client = url, pid, None

    def get(self) -> httpx.Client:
        for _ in range(200):
            if self.client is None:
                self.client = httpx.Client(base_url=self.url, timeout=180, limits=httpx.Limits(max_connections=1))
            try:
                if self.client.get("/health").json().get("worker_pid") == self.pid:
                    return self.client
            except (httpx.TransportError, ValueError):
                pass
            self.client.close()
            self.client = None
        raise RuntimeError(f"no connection reached worker {self.pid}")

    def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        return self.get().request(method, path, **kwargs)


def detail(r: httpx.Response) -> str:
    try:
        return str(r.json().get("detail", ""))
    except ValueError:
        return r.text


def served_text(client: httpx.Client, doc_id: str) -> str | None:
    r = client.get(f"/documents/{doc_id}")
    return r.json()["text"] if r.status_code == 200 else None


@dataclass
class Tally:
    statuses: Counter = field(default_factory=Counter)
    server_errors: list = field(default_factory=list)

    def add(self, what: str, r: httpx.Response | None) -> int | None:
        status = None if r is None else r.status_code
        self.statuses[str(status)] += 1
        if status is not None and status >= 500:
            self.server_errors.append(f"{what}: {status} {r.text[:160]}")
        return status


def leftovers(server: Server, made_before: set[str]) -> dict:
    """Temporary files in the corpus and folders there that are empty and were not there before."""
    temp, empty = [], []
    for here, dirs, files in os.walk(server.corpus):
        rel = Path(here).relative_to(server.corpus).as_posix()
        temp += [f"{rel}/{f}" for f in files if f.startswith(".")]
        if rel != "." and not dirs and not files and rel not in made_before:
            empty.append(rel)
    outside = sorted(tree_of(server.root / "outside"))
    escaped = sorted(p.name for p in server.root.iterdir() if "escape" in p.name)
    return {"temporary_files": temp, "empty_folders": empty, "outside_files": outside, "escaped": escaped}


# -- cases ---------------------------------------------------------------------------------------------------


def tree_of(folder: Path) -> dict[str, bytes | None]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() if p.is_file() else None for p in folder.rglob("*")}


def case_links(server: Server) -> dict:
    corpus, outside = server.corpus, server.root / "outside"
    (corpus / "linkdir").symlink_to(outside)
    (corpus / "linkfile.txt").symlink_to(outside / "target.txt")
    before = tree_of(outside)
    out = {}
    with httpx.Client(base_url=server.url, timeout=180) as c:
        for method, path in [("PUT", "linkdir/x.txt"), ("DELETE", "linkdir/target.txt"), ("PUT", "linkfile.txt"),
                             ("DELETE", "linkfile.txt"), ("PUT", "linkdir/sub/y.txt")]:
            r = c.request(method, f"/documents/{path}", content=DOC.format(n=7) if method == "PUT" else None,
                          headers={**AUTH, **TEXT})
            out[f"{method} {path}"] = [r.status_code, detail(r)[:100]]
    after = tree_of(outside)
    replaced = (corpus / "linkfile.txt").exists() and not (corpus / "linkfile.txt").is_symlink()
    for link in (corpus / "linkdir", corpus / "linkfile.txt"):
        if link.is_symlink():
            link.unlink()
    return {"requests": out, "outside_changed": before != after, "outside_after": sorted(after),
            "link_replaced_by_a_file": replaced}


def bad_names() -> list[tuple[str, str, bytes, str]]:
    """(method, path as sent, body, content type)."""
    text = DOC.format(n=3).encode()
    cases = [("PUT", "a" * (n - 4) + ".txt", text, "text/plain") for n in (200, 241, 245, 250, 255)]
    cases += [("PUT", p, text, "text/plain") for p in [
        "dir.txt", "file.txt/x.txt", "newdir/" + "%C3%A9" * 200 + ".txt", "x" * 300 + ".txt",
        "..%2F..%2Fescape.txt", "%2e%2e%2fescape.txt", "a%5C..%5C..%5Cescape.txt", "C:%5Cescape.txt",
        "..%252F..%252Fescape.txt", "sub%2Fslash.txt", "report%E2%80%AEtxt.exe.txt", "line%E2%80%A8break.txt",
        "nul%00.txt", "bom%EF%BB%BF.txt", "zero%E2%80%8Bwidth.txt", "trailing.txt.", "trailing.txt%20",
        "%20leading.txt", "space%20/x.txt", "dots./x.txt", "000_F45C79C16F6A0511.txt", "cafe%CC%81.txt",
        "/".join(["d"] * 40) + "/x.txt", "/".join(["e"] * 20) + "/x.txt", "CON.txt", "tab%09.txt", "x.TXT",
        "new/%EF%BC%A1.txt"]]
    cases += [("PUT", "body.txt", b, "application/json") for b in [
        b"[" * 1000 + b"]" * 1000, b'{"text": ' + b"[" * 1000 + b"]" * 1000 + b"}", b"{" * 100_000,
        b'{"text": "x", "title": "a\\nb"}', b'{"text": "\xff"}', b'{"text": 5}', b""]]
    cases += [("PUT", "body.txt", b, ct) for b, ct in [
        (b"", "text/plain"), (b"\x00\x01binary", "text/plain"), (b"<p>page</p>", "text/html"),
        (b"caf\xe9", "text/plain"), (text, "application/pdf"), (text, "")]]
    cases += [("GET", p, b"", "") for p in ["%E2%80%AE.txt", "x" * 600, "a.jsonl%23" + "r" * 300, "..%2Fx.txt"]]
    cases += [("DELETE", p, b"", "") for p in ["dir.txt", "file.txt/x.txt", "missing.txt", "..%2Fx.txt", "x" * 300]]
    return cases


def short(path: str) -> str:
    return path if len(path) <= 60 else f"{path[:30]}…[{len(path)} characters]"


def case_names(server: Server) -> dict:
    tally, outcome = Tally(), {}
    (server.corpus / "caf\u00e9.txt").write_text(DOC.format(n=4), encoding="utf-8")
    made_before = {"dir.txt"}
    with httpx.Client(base_url=server.url, timeout=180) as c:
        for method, path, body, ctype in bad_names():
            headers = {**AUTH, **({"Content-Type": ctype} if ctype else {})}
            try:
                r = c.request(method, f"/documents/{path}", content=body or None, headers=headers)
            except httpx.TransportError:
                r = None
            label = f"{method} {short(path)}"
            if path == "body.txt":
                label += f" {ctype or '(no type)'} {body[:24]!r}{'…' if len(body) > 24 else ''}"
            status = tally.add(label, r)
            outcome[label] = status if status is None or status < 400 else f"{status} {detail(r)[:90]}"
            if method == "PUT" and status in (200, 201):  # accepted: read back by its id, then removed
                doc_id = r.json()["doc_id"]
                back = c.get("/documents/" + quote(doc_id, safe="/"))
                outcome[f"GET back {short(path)}"] = back.status_code
                tally.add(f"GET back {short(path)}", back)
                tally.add(f"DELETE {short(path)}", c.delete("/documents/" + quote(doc_id, safe="/"), headers=AUTH))
                parts = doc_id.split("/")[:-1]
                made_before.update("/".join(parts[: k + 1]) for k in range(len(parts)))  # left by the DELETE
    return {"requests": sum(tally.statuses.values()), "status_counts": dict(sorted(tally.statuses.items())),
            "server_errors": tally.server_errors, "outcomes": outcome, **leftovers(server, made_before)}


def case_slow(server: Server, every: float = 5.0, cap: float = 90.0) -> dict:
    head = (f"PUT /documents/slow.txt HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
            "Content-Type: text/plain\r\nContent-Length: 1000\r\n\r\n").encode()
    t0 = time.monotonic()
    reply = b""
    with socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1])), timeout=every) as conn:
        conn.sendall(head)
        while time.monotonic() - t0 < cap:
            try:
                conn.sendall(b"x")
                chunk = conn.recv(65536)
                if not chunk:
                    break
                reply += chunk
                if b"\r\n\r\n" in reply:
                    break
            except TimeoutError:
                continue
            except OSError:
                break
    m = re.match(rb"HTTP/1\.[01] (\d{3})", reply)
    return {"byte_every_s": every, "status": int(m.group(1)) if m else None,
            "answered_after_s": round(time.monotonic() - t0, 1), "cap_s": cap}


def case_race(server: Server, rounds: int) -> dict:
    pids = sorted(server.worker_pids())
    a, b = Pinned(server.url, pids[0]), Pinned(server.url, pids[-1])  # one worker each (the same with one)
    counts = Counter()
    tally = Tally()
    previous = "race-start.txt"
    tally.add("seed", b.request("PUT", f"/documents/{previous}", content=DOC.format(n=0), headers={**AUTH, **TEXT}))
    for k in range(rounds):
        name, token = f"race-{k:03d}.txt", DOC.format(n=1000 + k)
        with ThreadPoolExecutor(2) as pool:
            put = pool.submit(b.request, "PUT", f"/documents/{name}", content=token, headers={**AUTH, **TEXT})
            delete = pool.submit(a.request, "DELETE", f"/documents/{previous}", headers=AUTH)
            put, delete = put.result(), delete.result()
        tally.add("PUT", put)
        tally.add("DELETE", delete)
        put_ok, delete_ok = put.status_code in (200, 201), delete.status_code == 200
        counts["put_acknowledged"] += put_ok
        counts["delete_acknowledged"] += delete_ok
        if put_ok and served_text(b.get(), name) != token:
            counts["own_write_not_read_at_once"] += 1
        on_disk = (server.corpus / name).exists(), (server.corpus / previous).exists()
        deadline = time.monotonic() + 30
        while True:
            views = [(served_text(w.get(), name), served_text(w.get(), previous)) for w in (a, b)]
            agree = all((v[0] == token) == on_disk[0] and (v[1] is not None) == on_disk[1] for v in views)
            if agree or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        if not agree:
            counts["lost_acknowledged_writes"] += put_ok and on_disk[0] and any(v[0] != token for v in views)
            counts["deletes_undone"] += delete_ok and not on_disk[1] and any(v[1] is not None for v in views)
            counts["diverged_rounds"] += 1
        previous = name
    return {"rounds": rounds, "workers_used": sorted({a.pid, b.pid}), **{k: counts[k] for k in (
        "put_acknowledged", "delete_acknowledged", "own_write_not_read_at_once", "lost_acknowledged_writes",
        "deletes_undone", "diverged_rounds")}, "status_counts": dict(sorted(tally.statuses.items())),
        "server_errors": tally.server_errors[:10]}


def case_kill(server: Server, kills: int) -> dict:
    if server.workers < 2:
        return {"skipped": "with one worker the worker is the server: nothing supervises it"}
    stop = threading.Event()
    tally, lock = Tally(), threading.Lock()
    acknowledged: dict[str, bool] = {}  # document → present after its last acknowledged change
    transport_errors = [0]

    def writer() -> None:
        k = 0
        while not stop.is_set():
            name = f"kill-{k % 6}.txt"
            method = "PUT" if k % 12 < 6 else "DELETE"
            try:
                r = httpx.request(method, f"{server.url}/documents/{name}", timeout=180,
                                  content=DOC.format(n=k) if method == "PUT" else None,
                                  headers={**AUTH, **TEXT, "Connection": "close"})
            except httpx.TransportError:
                transport_errors[0] += 1
                time.sleep(0.5)
                continue
            with lock:
                tally.add(method, r)
                if r.status_code in (200, 201):
                    acknowledged[name] = method == "PUT"
                elif method == "DELETE" and r.status_code == 404:
                    acknowledged[name] = False
            k += 1

    thread = threading.Thread(target=writer)
    thread.start()
    killed, waits = [], []
    try:
        for _ in range(kills):
            time.sleep(3)
            if not server.alive():
                break
            victim = max(server.worker_pids())  # the newest: the same slot each time, as soon as it serves
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)
            t0 = time.monotonic()
            while time.monotonic() - t0 < 300 and server.alive():
                if len(ready_pids(server, 10) - {victim}) >= server.workers:
                    break
                time.sleep(0.5)
            waits.append(round(time.monotonic() - t0, 1))
    finally:
        stop.set()
        thread.join()
    lost = wrong = 0
    if server.alive():
        time.sleep(5)
        pinned = [Pinned(server.url, pid) for pid in server.worker_pids()]
        for name, present in acknowledged.items():
            on_disk = (server.corpus / name).exists()
            views = [served_text(p.get(), name) is not None for p in pinned]
            lost += present and on_disk and not all(views)
            wrong += any(v != on_disk for v in views)
    log = server.log()
    return {"kills": len(killed), "server_alive": server.alive(), "seconds_to_replace": waits,
            "health_after": httpx.get(server.url + "/health", timeout=10).status_code if server.alive() else None,
            "writes": sum(tally.statuses.values()), "status_counts": dict(sorted(tally.statuses.items())),
            "server_errors": tally.server_errors[:10], "transport_errors": transport_errors[0],
            "acknowledged_writes_lost": lost, "documents_served_unlike_the_folder": wrong,
            "log_index_corrupt": log.count("IndexCorrupt") + log.count("is corrupt"),
            "log_stopping_the_server": log.count("stopping the server"),
            "builds_on_disk": len(list((server.root / "index" / "corpus").glob("build-*")))}


def case_watch(server: Server, parts: int = 10, every: float = 0.5) -> dict:
    path = server.corpus / "watched.txt"
    sentences = [f"Part {i} of the watched report says the Orlen ferry sailed {i} times. " for i in range(parts)]
    final = "Watched report\n\n" + "".join(sentences) + "\n"
    partial = polls = 0
    seen_full_at = None
    stop = threading.Event()
    upload = {}

    def put_beside() -> None:  # an upload racing the watcher
        time.sleep(every * parts / 2)
        r = httpx.put(f"{server.url}/documents/uploaded.txt", content=DOC.format(n=42), headers={**AUTH, **TEXT},
                      timeout=180)
        upload["status"] = r.status_code

    racer = threading.Thread(target=put_beside)
    racer.start()
    t0 = time.monotonic()
    with open(path, "w", encoding="utf-8") as fh, httpx.Client(base_url=server.url, timeout=60) as c:
        fh.write("Watched report\n\n")
        for i, sentence in enumerate(sentences):
            fh.write(sentence + ("\n" if i == parts - 1 else ""))
            fh.flush()
            end = time.monotonic() + every
            while time.monotonic() < end:
                text = served_text(c, "watched.txt")
                polls += 1
                partial += text is not None and text != final
                time.sleep(0.1)
    stop.set()
    with httpx.Client(base_url=server.url, timeout=60) as c:
        while time.monotonic() - t0 < 60:
            text = served_text(c, "watched.txt")
            polls += 1
            partial += text is not None and text != final
            if text == final:
                seen_full_at = round(time.monotonic() - t0, 1)
                break
            time.sleep(0.1)
    racer.join()
    uploaded = [served_text(Pinned(server.url, pid).get(), "uploaded.txt") for pid in server.worker_pids()]
    return {"parts": parts, "written_over_s": parts * every, "polls": polls, "partial_file_served": partial,
            "whole_file_served_after_s": seen_full_at, "racing_upload_status": upload.get("status"),
            "racing_upload_served_by_every_worker": all(u == DOC.format(n=42) for u in uploaded)}


# -- main ----------------------------------------------------------------------------------------------------

CASES = ["links", "names", "slow", "race", "kill", "watch"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--case", choices=CASES, action="append", help="repeat to choose; default: all")
    parser.add_argument("--rounds", type=int, default=50, help="race rounds")
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--port", type=int, default=18300)
    parser.add_argument("--code", type=Path, default=ROOT, help="the checkout whose `qa` is served")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--log", type=Path, help="keep the servers' log here")
    args = parser.parse_args()
    code = args.code.resolve()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=code, capture_output=True, text=True)
    report: dict = {"date": time.strftime("%Y-%m-%d"), "workers": args.workers, "code": str(code),
                    "commit": commit.stdout.strip(), "command": " ".join(sys.argv)}
    chosen = args.case or CASES
    with tempfile.TemporaryDirectory(prefix="qa-probe-updates-") as tmp:
        root = Path(tmp)
        prepare(root)
        plain = [c for c in chosen if c != "watch"]
        if plain:
            with serve(root, code, args.workers, args.port, env={"QA_BODY_DEADLINE_S": "20"}) as server:
                for case in plain:  # kill last: it disturbs the others
                    run(case, report, lambda: {"links": case_links, "names": case_names, "slow": case_slow,
                                               "race": lambda s: case_race(s, args.rounds),
                                               "kill": lambda s: case_kill(s, args.kills)}[case](server))
        if "watch" in chosen:
            with serve(root, code, args.workers, args.port, "--watch") as server:
                run("watch", report, lambda: case_watch(server))
        if args.log:
            shutil.copy(root / "server.log", args.log)
    text = json.dumps(report, indent=2, ensure_ascii=False)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


def run(case: str, report: dict, work) -> None:
    t0 = time.monotonic()
    try:
        report[case] = work()
    except Exception as exc:  # a case that cannot finish is a finding too
        report[case] = {"error": f"{type(exc).__name__}: {exc}"}
    report[case]["took_s"] = round(time.monotonic() - t0, 1)
    print(json.dumps({case: report[case]}, ensure_ascii=False)[:2000], file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()

"""HTTP benchmark of the qa service on loopback: latency, throughput under load, memory.

    .venv/bin/python benchmarks/http_bench.py                  # starts `qa serve` itself on 127.0.0.1
    .venv/bin/python benchmarks/http_bench.py --url http://127.0.0.1:8000 --pid 12345   # a running server
    .venv/bin/python benchmarks/http_bench.py --profile        # in-process: where the time of one request goes

Phases (questions cycle through eval/gold.jsonl, each request a new conversation as a client would send it):
  1. one client: N sequential POST /ask (default 500) on one keep-alive connection → p50/p95/p99, measured
     by this script (httpx: its own Python costs a millisecond or more per request) and again by `wrk` with
     one connection for 10 s (a C client: the server's latency as a fast client sees it);
  2. load: `wrk` (Debian package wrk; apt-get install -y wrk) with 32 connections for 30 s, POST bodies
     from a generated Lua script → req/s, p50/p95/p99, errors (socket errors + non-2xx);
  3. memory: RSS of the server (/proc/PID/status, summed over the supervisor and its worker processes)
     before and after 10,000 more requests (8 concurrent clients), sampled every 1,000.
Server CPU is likewise summed over the server's processes. `--workers N` starts `qa serve --workers N`.
Only loopback addresses are accepted. Prints a JSON report; --out writes it to a file too.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from urllib.parse import urlsplit

import httpx

ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = re.compile(r"^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|localhost|\[::1\]|::1)$")


def questions() -> list[str]:
    out = []
    for line in (ROOT / "eval" / "gold.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            out.append(json.loads(line)["question"])
    return out


def pct(values: list[float], p: float) -> float:
    xs = sorted(values)
    k = (len(xs) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants: with `qa serve --workers N` the server is a supervisor and N workers."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue  # the process ended while we looked
        parents.setdefault(ppid, []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(parents.get(p, []))
    return tree


def rss_mib(pid: int) -> float:
    """Resident memory of the server: the sum over its processes."""
    total = 0
    for p in process_tree(pid):
        try:
            lines = Path(f"/proc/{p}/status").read_text().splitlines()
        except OSError:
            continue
        total += sum(int(line.split()[1]) for line in lines if line.startswith("VmRSS:"))
    return total / 1024


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time of the server's processes (all their threads) so far."""
    if not pid:
        return None
    ticks = 0
    for p in process_tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def busy_share() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine so far, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


class Phase:
    """Measures a phase's server CPU per request and how busy the machine was with *other* work meanwhile
    (others' CPU = machine busy − server − this script's load generator, as a share of all cores)."""

    def __init__(self, pid: int | None):
        self.pid = pid

    def __enter__(self):
        self.cpu0 = cpu_seconds(self.pid)
        self.busy0 = busy_share()
        self.self0 = os.times()
        self.t0 = time.monotonic()
        return self

    def __exit__(self, *exc) -> None:
        return None

    def result(self, requests: int) -> dict:
        wall = time.monotonic() - self.t0
        busy1 = busy_share()
        hz = os.sysconf("SC_CLK_TCK")
        machine_busy = (busy1[0] - self.busy0[0]) / hz
        me = os.times()
        mine = (me.user - self.self0.user) + (me.system - self.self0.system) + \
               (me.children_user - self.self0.children_user) + (me.children_system - self.self0.children_system)
        out = {}
        if self.pid:
            server = cpu_seconds(self.pid) - self.cpu0
            out["server_cpu_ms_per_request"] = round(server * 1000 / max(requests, 1), 2)
            others = max(machine_busy - server - mine, 0.0)
            out["other_processes_cpu_share"] = round(others / (wall * (os.cpu_count() or 1)), 3)
        return out


# -- the server --------------------------------------------------------------------------------------------


def start_server(log: Path, access_log: bool, workers: int | None) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "qa.cli", "serve", "--host", "127.0.0.1", "--port", "0"]
    if workers:
        cmd += ["--workers", str(workers)]
    if not access_log:
        cmd.append("--no-access-log")
    fh = open(log, "wb")
    proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited:\n{log.read_text()}")
        m = re.search(r"(?:Uvicorn running|listening) on (http://127\.0\.0\.1:\d+)", log.read_text(errors="replace"))
        if m:
            return proc, m.group(1)
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not start")


def wait_ready(url: str) -> dict:
    with httpx.Client(base_url=url, timeout=10) as c:
        for _ in range(3000):
            try:
                r = c.get("/health")
                if r.status_code == 200:
                    return r.json()
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    raise SystemExit("the server never became ready")


# -- phases ------------------------------------------------------------------------------------------------


def one_client(url: str, qs: list[str], n: int, retriever: str | None = None) -> dict:
    lat, server_ms, errors = [], [], 0
    extra = {"retriever": retriever} if retriever else {}
    with httpx.Client(base_url=url, timeout=30) as c:
        for i in range(20):  # warm-up, not counted
            c.post("/ask", json={"question": qs[i % len(qs)], **extra})
        for i in range(n):
            t0 = time.perf_counter()
            r = c.post("/ask", json={"question": qs[i % len(qs)], **extra})
            lat.append((time.perf_counter() - t0) * 1000)
            if r.status_code != 200:
                errors += 1
            else:
                server_ms.append(r.json()["took_ms"])
    return {"requests": n, "errors": errors, "p50_ms": round(pct(lat, 50), 2), "p95_ms": round(pct(lat, 95), 2),
            "p99_ms": round(pct(lat, 99), 2), "mean_ms": round(statistics.fmean(lat), 2),
            "server_took_p50_ms": round(pct(server_ms, 50), 2) if server_ms else None}


LUA = r"""
local bodies = {
%(bodies)s
}
local n = 0
request = function()
  n = n + 1
  return wrk.format("POST", "/ask", {["Content-Type"] = "application/json"}, bodies[(n %% #bodies) + 1])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %%d, "duration_s": %%.3f, "socket_errors": %%d, "non_2xx": %%d, "timeouts": %%d, ' ..
    '"p50_ms": %%.2f, "p95_ms": %%.2f, "p99_ms": %%.2f, "max_ms": %%.2f, "mean_ms": %%.2f}\n',
    summary.requests, summary.duration / 1e6, e.connect + e.read + e.write, e.status, e.timeout,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, latency.mean / 1000))
end
"""


def load(url: str, qs: list[str], connections: int, seconds: int, threads: int) -> dict:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    bodies = ",\n".join(f"  [==[{json.dumps({'question': q})}]==]" for q in qs)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(LUA % {"bodies": bodies})
        script = fh.name
    cmd = [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", script, url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    os.unlink(script)
    m = re.search(r"WRK_JSON (\{.*\})", out)
    if not m:
        raise SystemExit(f"unexpected wrk output:\n{out}")
    res = json.loads(m.group(1))
    res["req_per_s"] = round(res["requests"] / res["duration_s"], 1)
    res["errors"] = res["socket_errors"] + res["non_2xx"] + res["timeouts"]
    res["connections"], res["seconds"], res["command"] = connections, seconds, " ".join(cmd[:-3] + ["-s", "ask.lua", url])
    return res


def memory(url: str, pid: int, qs: list[str], n: int, clients: int) -> dict:
    before = rss_mib(pid)
    samples = [round(before, 1)]
    done = 0
    errors = 0
    lock = threading.Lock()

    def worker(w: int):
        nonlocal done, errors
        with httpx.Client(base_url=url, timeout=30) as c:
            for i in range(w, n, clients):
                r = c.post("/ask", json={"question": qs[i % len(qs)]})
                with lock:
                    done += 1
                    errors += r.status_code != 200
                    if done % 1000 == 0:
                        samples.append(round(rss_mib(pid), 1))

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(worker, range(clients)))
    after = rss_mib(pid)
    return {"requests": n, "errors": errors, "rss_before_mib": round(before, 1), "rss_after_mib": round(after, 1),
            "growth_mib": round(after - before, 1), "samples_every_1000_mib": samples}


# -- profile -----------------------------------------------------------------------------------------------


def profile(n: int) -> None:
    """Where the time of one /ask goes, in process (no network): cProfile over n requests through the app."""
    from fastapi.testclient import TestClient

    from qa.api import create_app
    from qa.config import Settings
    from qa.engine import Engine

    qs = questions()
    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine.open(Settings(data_dir=Path(tmp)))
        with TestClient(create_app(engine)) as c:
            for q in qs[:20]:
                c.post("/ask", json={"question": q})
            # stage timings by hand: the parts of Engine.ask, then the whole request
            stages: dict[str, list[float]] = {k: [] for k in ("encode_query", "retrieve+rank (bm25 mode)",
                                                               "engine.ask hybrid, no conversation",
                                                               "conversation store (create)", "HTTP /ask total")}
            for i in range(n):
                q = qs[i % len(qs)]
                t = time.perf_counter(); engine.encode_query(q); stages["encode_query"].append(time.perf_counter() - t)
                t = time.perf_counter(); engine.ask(q, retriever="bm25"); stages["retrieve+rank (bm25 mode)"].append(time.perf_counter() - t)
                t = time.perf_counter(); engine.ask(q); stages["engine.ask hybrid, no conversation"].append(time.perf_counter() - t)
                t = time.perf_counter(); engine.conversations.create(); stages["conversation store (create)"].append(time.perf_counter() - t)
                t = time.perf_counter(); c.post("/ask", json={"question": q}); stages["HTTP /ask total"].append(time.perf_counter() - t)
            print("median ms per stage:")
            for k, v in stages.items():
                print(f"  {k:40s} {statistics.median(v) * 1000:8.2f}")
            # The server side of a request, profiled in this thread: the route function and the response model.
            from qa.api.routes.ask import answer_question
            from qa.api.schemas import AskRequest, AskResponse

            prof = cProfile.Profile()
            prof.enable()
            for i in range(n):
                AskResponse.model_validate(answer_question(AskRequest(question=qs[i % len(qs)]), engine)).model_dump_json()
            prof.disable()
    s = io.StringIO()
    pstats.Stats(prof, stream=s).sort_stats("cumulative").print_stats(30)
    print(s.getvalue())


# -- main --------------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="a running server (loopback only); default: start `qa serve`")
    ap.add_argument("--pid", type=int, help="the running server's process id (for RSS)")
    ap.add_argument("--sequential", type=int, default=500)
    ap.add_argument("--one-client-seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--wrk-threads", type=int, default=1)
    ap.add_argument("--memory-requests", type=int, default=10_000)
    ap.add_argument("--memory-clients", type=int, default=8)
    ap.add_argument("--access-log", action="store_true", help="run the started server with its access log on")
    ap.add_argument("--workers", type=int, help="worker processes of the started server (default: qa serve's)")
    ap.add_argument("--profile", action="store_true", help="profile requests in process instead")
    ap.add_argument("--out", type=Path, help="also write the JSON report here")
    args = ap.parse_args()

    if args.profile:
        profile(200)
        return
    proc = None
    if args.url:
        host = urlsplit(args.url).hostname or ""
        if not LOOPBACK.match(host):
            raise SystemExit("only loopback addresses (127.0.0.0/8, localhost, ::1) may be benchmarked")
        url, pid = args.url.rstrip("/"), args.pid
    else:
        log = Path(tempfile.mkdtemp()) / "server.log"
        proc, url = start_server(log, args.access_log, args.workers)
        pid = proc.pid
    try:
        health = wait_ready(url)
        qs = questions()
        report: dict = {"date": date.today().isoformat(), "command": "python " + " ".join(sys.argv),
                        "machine": f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}",
                        "server": url, "documents": health["documents"], "sentences": health["sentences"],
                        "questions": len(qs)}
        report["loadavg_at_start"] = Path("/proc/loadavg").read_text().split()[:3]
        if pid:
            report["server_processes"] = len(process_tree(pid))
        print(f"one client, {args.sequential} sequential requests…", file=sys.stderr)
        with Phase(pid) as ph:
            report["one_client"] = one_client(url, qs, args.sequential)
            report["one_client"].update(ph.result(args.sequential + 20))
        # The same with BM25 only (no model call): what HTTP, validation and the conversation store cost.
        n_bm25 = max(args.sequential // 2, 1)
        with Phase(pid) as ph:
            report["one_client_bm25"] = one_client(url, qs, n_bm25, retriever="bm25")
            report["one_client_bm25"].update(ph.result(n_bm25 + 20))
        print(f"wrk: one connection for {args.one_client_seconds} s…", file=sys.stderr)
        with Phase(pid) as ph:
            report["one_client_wrk"] = load(url, qs, 1, args.one_client_seconds, 1)
            report["one_client_wrk"].update(ph.result(report["one_client_wrk"]["requests"]))
        print(f"wrk: {args.connections} connections for {args.seconds} s…", file=sys.stderr)
        with Phase(pid) as ph:
            report["load"] = load(url, qs, args.connections, args.seconds, args.wrk_threads)
            report["load"].update(ph.result(report["load"]["requests"]))
        if pid:
            print(f"memory: {args.memory_requests} requests…", file=sys.stderr)
            with Phase(pid) as ph:
                report["memory"] = memory(url, pid, qs, args.memory_requests, args.memory_clients)
                report["memory"].update(ph.result(args.memory_requests))
        text = json.dumps(report, indent=2)
        print(text)
        if args.out:
            args.out.write_text(text + "\n", encoding="utf-8")
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()

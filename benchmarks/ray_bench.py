"""Sharded build and serving on a local Ray instance against one process, on the same corpus.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/ray_bench.py [--docs N] [--questions 200] [--out report.json]

Corpus: the SQuAD 2.0 dev half's 646 paragraphs (shared data, evaluation only; the seeds when it is absent),
built into a temporary index root (the ONNX export is copied from index/: run `qa index` once first).
Phases, each on a local Ray instance of 2 CPUs:
  1. build: the sharded build (2 shards) with 1 and then 2 encoder actors → sentences/s and their ratio;
     the one-process build (qa/index/, the ONNX encoder on 2 threads) for reference;
  2. serving: the first N answerable SQuAD questions asked one at a time → p50/p95 of one process (the
     engine in process, and its HTTP app under uvicorn), of the sharded front in process (merging only) and of
     Ray Serve over HTTP (a deployment per shard and the front); then 4 concurrent clients for 20 s
     against each HTTP server → questions/s;
  3. memory: RSS of each shard replica, of the front replica and of the one-process server (this script,
     after loading), and each shard's size on disk.
Prints a JSON report.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from qa.config import Settings  # noqa: E402


def percentiles(ms: list[float]) -> dict:
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p95_ms": round(float(np.percentile(ms, 95)), 2)}


def time_each(ask, questions: list[str]) -> dict:
    ms = []
    for q in questions:
        t = time.perf_counter()
        ask(q)
        ms.append((time.perf_counter() - t) * 1000)
    return percentiles(ms)


def throughput(url: str, questions: list[str], seconds: float = 20.0, clients: int = 4) -> float:
    import httpx

    stop = time.perf_counter() + seconds
    done = [0] * clients

    def client(k: int) -> None:
        with httpx.Client(timeout=60) as http:
            i = k
            while time.perf_counter() < stop:
                http.post(f"{url}/ask", json={"question": questions[i % len(questions)]}).raise_for_status()
                done[k] += 1
                i += clients

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    return round(sum(done) / seconds, 1)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def replica_rss() -> dict[str, float]:
    """RSS of the Serve replicas, by deployment (Ray names their processes ``ray::ServeReplica:APP:NAME``)."""
    out = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if cmd.startswith("ray::ServeReplica:qa:"):
                out[cmd.split(":")[4].split("\0")[0].strip()] = rss_mib(int(proc.name))
    return out


def folder_mib(folder: Path) -> float:
    return round(sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20, 1)


def serve_single(engine, port: int):
    import uvicorn

    from qa.api import create_app

    server = uvicorn.Server(uvicorn.Config(create_app(engine, engine.settings), host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.1)
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=None, help="use the first N documents")
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each throughput run")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import httpx

    from qa.cluster import serve as cluster_serve
    from qa.cluster.build import build_sharded, ray_session
    from qa.cluster.front import open_local
    from qa.cluster.shards import sharded_root
    from qa.datasets import load_squad
    from qa.engine import Engine
    from qa.ingest import load_corpus

    base = Settings()
    try:
        data = load_squad(base.shared_data_dir)
        docs, layout, corpus = data.documents, False, "squad-v2-dev-half"
    except FileNotFoundError:
        docs, layout, corpus = load_corpus(base.corpus_dir), True, "seeds"
        questions = [json.loads(line)["question"] for line in (base.corpus_dir.parent / "eval" / "gold.jsonl").open()]
    docs = docs[: args.docs] if args.docs else docs
    asked = set(d.doc_id for d in docs)
    if corpus != "seeds":  # the questions about the documents kept
        questions = [q.question for q in data.questions if any(s.doc_id in asked for s in q.evidence)]
    questions = questions[: args.questions]
    root = Path(tempfile.mkdtemp(prefix="ray-bench-"))
    shutil.copytree(base.onnx_path().parent, root / "_models" / base.onnx_path().parent.name)  # the export
    settings = Settings(index_root=root, index_name="bench", data_dir=root / "var")
    report: dict = {"date": time.strftime("%Y-%m-%d"), "corpus": corpus, "documents": len(docs), "cpus": os.cpu_count()}
    try:
        t = time.perf_counter()
        single = Engine.open(settings, documents=docs, layout=layout)
        n = len(single.index.sentences)
        report["sentences"] = n
        report["build_one_process"] = {"seconds": round(time.perf_counter() - t, 1),
                                       "sentences_per_s": round(n / (time.perf_counter() - t), 1)}
        with ray_session(num_cpus=2):
            for workers in (1, 2):
                t = time.perf_counter()
                build_sharded(docs, settings, shards=2, workers=workers, layout=layout)
                seconds = time.perf_counter() - t
                report[f"build_ray_{workers}_workers"] = {"seconds": round(seconds, 1),
                                                          "sentences_per_s": round(n / seconds, 1)}
            report["build_ratio_2_over_1"] = round(report["build_ray_2_workers"]["sentences_per_s"]
                                                   / report["build_ray_1_workers"]["sentences_per_s"], 2)
            shard_root = sharded_root(settings)
            front = open_local(settings, shard_root)
            for q in questions[:5]:
                single.ask(q), front.ask(q)  # warm up
            report["p_one_process_engine"] = time_each(single.ask, questions)
            report["p_sharded_front_in_process"] = time_each(front.ask, questions)
            del front
            server = serve_single(single, 18901)
            with httpx.Client(timeout=60) as http:
                one = "http://127.0.0.1:18901"
                report["p_one_process_http"] = time_each(lambda q: http.post(f"{one}/ask", json={"question": q}),
                                                         questions)
            report["qps_one_process_http_4_clients"] = throughput(one, questions, args.seconds)
            report["rss_one_process_mib"] = rss_mib(os.getpid())
            server.should_exit = True
            cluster_serve.run(settings, shard_root, port=18902, blocking=False)
            ray_url = "http://127.0.0.1:18902"
            with httpx.Client(timeout=60) as http:
                for q in questions[:5]:
                    http.post(f"{ray_url}/ask", json={"question": q}).raise_for_status()
                report["p_ray_serve_http"] = time_each(lambda q: http.post(f"{ray_url}/ask", json={"question": q}),
                                                       questions)
            report["qps_ray_serve_http_4_clients"] = throughput(ray_url, questions, args.seconds)
            report["rss_replicas_mib"] = replica_rss()
            report["shard_disk_mib"] = {p.name: folder_mib(p) for p in sorted((shard_root / "current").glob("shard-*"))}
            report["one_index_disk_mib"] = folder_mib(settings.index_dir() / "current")
            from ray import serve

            serve.shutdown()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()

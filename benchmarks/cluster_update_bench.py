"""Document updates on the sharded index served by Ray Serve (`qa serve --ray`): PUT until the document
answers and DELETE, and question latency before and after the updates.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/cluster_update_bench.py [--puts 20] [--questions 100]

The corpus is SQuAD-half, every paragraph a ``.txt`` file (as benchmarks/update_bench.py writes it), built as
2 shards on a local Ray instance of 2 CPUs under ``--work``. Ray Serve then runs a deployment per shard and the
front with an admin token. Steps:
  1. ``--questions`` SQuAD-half questions asked one at a time over HTTP (one segment per shard);
  2. ``--puts`` new documents PUT one after the other, each followed by its question (update_bench.timed_updates:
     the time to the answer citing the new document, the new segment's embedding time apart); each shard
     merges its segments by the merge policy meanwhile, as a served index does;
  3. the questions of step 1 asked again, each shard holding the segments the updates left, and whether every
     answer is the same as in step 1 (the new documents are about other things);
  4. each new document DELETEd.
Prints a JSON report.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from update_bench import new_documents, newest_segment, timed_updates, write_corpus  # noqa: E402

from qa.config import Settings  # noqa: E402

TOKEN = "cluster-update-bench"


def ask_all(client: httpx.Client, questions: list[str]) -> tuple[dict, list[tuple]]:
    """Each question once: p50/p95 in ms, and each answer's cited sentences and confidence."""
    times, answers = [], []
    for q in questions:
        t0 = time.perf_counter()
        answer = client.post("/ask", json={"question": q}).json()
        times.append((time.perf_counter() - t0) * 1000)
        answers.append((tuple((s["doc_id"], s["sentence_index"]) for s in answer["sentences"]),
                        round(answer.get("confidence", 0.0), 4)))
    xs = sorted(times)
    return {"p50_ms": round(statistics.median(xs), 2), "p95_ms": round(xs[int(0.95 * (len(xs) - 1))], 2)}, answers


def segments_per_shard(shard_folders: list[Path]) -> list[int]:
    out = []
    for folder in shard_folders:
        top = json.loads((folder / "current" / "manifest.json").read_text(encoding="utf-8"))
        out.append(len(top.get("segments", [1])))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/qa-cluster-update-bench"))
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--puts", type=int, default=20)
    ap.add_argument("--questions", type=int, default=100)
    ap.add_argument("--port", type=int, default=18931)
    args = ap.parse_args()

    from ray import serve

    from qa.cluster import serve as cluster_serve
    from qa.cluster.build import build_sharded, ensure_onnx_export, ray_session
    from qa.cluster.shards import load_set, sharded_root
    from qa.cluster.updates import home_shard
    from qa.datasets import load_squad
    from qa.ingest import load_corpus

    corpus = args.work / "corpus"
    docs_added = new_documents(args.puts)
    for name, _, _ in docs_added:
        (corpus / name).unlink(missing_ok=True)
    write_corpus(args.shared, corpus, 1)
    settings = Settings(corpus_dir=corpus, index_root=args.work / "index", index_name="squad",
                        data_dir=args.work / "var", admin_token=TOKEN)
    questions = [q.question for q in load_squad(args.shared).select("tune").questions if q.answerable][: args.questions]
    docs = load_corpus(corpus)
    report: dict = {"date": time.strftime("%Y-%m-%d"), "documents": len(docs), "cpus": os.cpu_count()}
    with ray_session(num_cpus=2):
        ensure_onnx_export(settings, docs)
        t0 = time.perf_counter()
        shard_set = build_sharded(docs, settings, shards=2, workers=2)
        report["build_seconds"] = round(time.perf_counter() - t0, 1)
        report["sentences"] = shard_set.manifest["sentences"]
        root = sharded_root(settings)
        folders = load_set(root).shards
        cluster_serve.run(settings, root, port=args.port, blocking=False)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{args.port}", timeout=600) as client:
                client.post("/ask", json={"question": "warm up"})
                report["questions"] = len(questions)
                report["before_updates"], before = ask_all(client, questions)
                report["segments_before"] = segments_per_shard(folders)
                def after_updates() -> None:
                    report["segments_after_updates"] = segments_per_shard(folders)
                    report["after_updates"], after = ask_all(client, questions)
                    report["answers_equal_before_and_after"] = sum(a == b for a, b in zip(before, after))

                report["http"] = timed_updates(
                    client, TOKEN, docs_added, lambda doc_id: newest_segment(folders[home_shard(doc_id, 2)]),
                    lambda: segments_per_shard(folders), after_updates)
                report["segments_after_deletes"] = segments_per_shard(folders)
        finally:
            serve.shutdown()
    report["load_average"] = os.getloadavg()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

"""The reader's cost per question for each number of sentences it reads (the profile's ``reader.depth``), for each reader.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/reader_latency.py --reader models/reader \
        --reader /var/tmp/qa-train/reader-l6/model --depths 1,3,5,10,15

For every seed gold question the hybrid ranker's first sentences are read by each reader (int8 ONNX, one
onnxruntime thread, as the engine runs it) at each depth; the median and 95th percentile milliseconds of the
reader alone. Against the budget (docs/PERFORMANCE.md: HTTP p50 ≤ 15 ms, ≥ 150 req/s at 32 connections)
the reader's share is what a question's ~8 ms leaves; `benchmarks/http_bench.py` with ``QA_PROFILE`` (a profile
with the reader's depth and weight set: benchmarks/profile_variant.py) measures a configuration end to end.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from qa.config import PROJECT_ROOT, Settings
from qa.datasets import load_gold
from qa.engine import Engine
from qa.ingest import load_corpus
from qa.reader import ReaderFiles, load_reader


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reader", type=Path, action="append", help="a reader folder (repeat); default: the shipped one")
    ap.add_argument("--depths", default="1,3,5,10,15,20")
    ap.add_argument("--repeat", type=int, default=3, help="runs per question and depth (the fastest is kept)")
    args = ap.parse_args()
    settings = Settings()
    engine = Engine.open(settings)
    engine = engine.with_index(engine.index, profile=engine.profile.updated({"reader.depth": 0}))  # ranker alone
    gold = load_gold(PROJECT_ROOT / "eval" / "gold.jsonl", load_corpus(settings.corpus_dir))
    tops = []
    for q in gold.questions:
        scored = engine.score(engine.query(q.question, "hybrid"), "hybrid")
        tops.append((q.question, [engine.index.sentences[i].text for i in scored.ids[:20].tolist()]))
    depths = [int(d) for d in args.depths.split(",")]
    print("| reader | layers | depth | median ms | p95 ms |\n|---|---|---|---|---|")
    for folder in args.reader or [settings.reader_dir]:
        reader = load_reader(folder.resolve(), 1)
        layers = ReaderFiles(folder).manifest().get("hyper_parameters", {}).get("layers", "?")
        for depth in depths:
            ms = []
            for question, texts in tops:
                best = float("inf")
                for _ in range(args.repeat):
                    t0 = time.perf_counter()
                    reader.score(question, texts[:depth])
                    best = min(best, (time.perf_counter() - t0) * 1000)
                ms.append(best)
            q = statistics.quantiles(ms, n=20)
            print(f"| {folder} | {layers} | {depth} | {statistics.median(ms):.1f} | {q[18]:.1f} |", flush=True)


if __name__ == "__main__":
    main()

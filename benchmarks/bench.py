"""Speed and memory benchmarks (measurements, not tests). Each prints a Markdown table row set.

    .venv/bin/python benchmarks/bench.py build   --dataset seeds|squad-v2-dev   # index build throughput
    .venv/bin/python benchmarks/bench.py latency --dataset seeds|squad-v2-dev   # in-process answer latency
    .venv/bin/python benchmarks/bench.py cold                                   # cold `qa ask`, index built
    .venv/bin/python benchmarks/bench.py scale --sizes 20000 100000             # synthetic corpus growth

Peak memory is the process's maximum resident set size (ru_maxrss). The scale corpus is built from the
SQuAD paragraphs (shared data, read in place): sentences are recombined across paragraphs of the same
article with varied order, so documents are not identical; its index goes to index/scale-<n>/.
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from qa.config import Settings
from qa.datasets import load_gold, load_squad
from qa.engine import Engine, build_spec
from qa.index import build as build_index
from qa.ingest import load_corpus, split_sentences
from qa.types import Document

ROOT = Path(__file__).resolve().parent.parent


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def dataset(name: str, settings: Settings):
    if name == "seeds":
        return load_gold(ROOT / "eval" / "gold.jsonl", load_corpus(settings.corpus_dir))
    return load_squad(settings.shared_data_dir)


def percentiles(ms: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(ms, n=100, method="inclusive")
    return q[49], q[94]


def cmd_build(args) -> None:
    settings = Settings()
    data = dataset(args.dataset, settings)
    engine_encoder = Engine._load_encoder(settings)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        build_index(data.documents, engine_encoder, build_spec(settings, layout=data.layout), Path(tmp))
        secs = time.perf_counter() - t0
    n = sum(len(split_sentences(d, layout=data.layout)) for d in data.documents)
    print("| corpus | documents | sentences | build s | sentences/s | peak RSS MiB |")
    print("|---|---|---|---|---|---|")
    print(f"| {data.name} | {len(data.documents)} | {n} | {secs:.1f} | {n / secs:.0f} | {peak_rss_mib():.0f} |")


def cmd_latency(args) -> None:
    settings = Settings()
    data = dataset(args.dataset, settings)
    if data.name != "seeds":
        settings = settings.model_copy(update={"index_name": data.name})
    engine = Engine.open(settings, documents=data.documents, layout=data.layout)
    questions = [q.question for q in data.questions][: args.n]
    print("| corpus | retriever | questions | p50 ms | p95 ms | peak RSS MiB |")
    print("|---|---|---|---|---|---|")
    for mode in ("bm25", "dense", "hybrid"):
        engine.ask(questions[0], retriever=mode)  # warm-up
        ms = []
        for q in questions:
            t0 = time.perf_counter()
            engine.ask(q, retriever=mode)
            ms.append((time.perf_counter() - t0) * 1000)
        p50, p95 = percentiles(ms)
        print(f"| {data.name} | {mode} | {len(ms)} | {p50:.1f} | {p95:.1f} | {peak_rss_mib():.0f} |")


def cmd_cold(args) -> None:
    qa = str(Path(sys.executable).parent / "qa")
    question = "Who led the Pakistani delegation that visited Kabul?"
    subprocess.run([qa, "index"], check=True, capture_output=True)
    walls = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        subprocess.run([qa, "ask", question, "--json"], check=True, capture_output=True)
        walls.append(time.perf_counter() - t0)
    print("| command | runs | median s | min s | max s |")
    print("|---|---|---|---|---|")
    print(f"| qa ask (index built) | {len(walls)} | {statistics.median(walls):.2f} | {min(walls):.2f} | {max(walls):.2f} |")


def synthetic_corpus(settings: Settings, n_sentences: int, seed: int = 13) -> list[Document]:
    """Documents of 8–20 sentences drawn from one SQuAD article each, in varied order, until ``n_sentences``."""
    squad = load_squad(settings.shared_data_dir)
    by_title: dict[str, list[str]] = {}
    for d in squad.documents:
        by_title.setdefault(d.title, []).extend(s.text for s in split_sentences(d, layout=False))
    titles = sorted(by_title)
    rng = random.Random(seed)
    docs, total = [], 0
    while total < n_sentences:
        title = rng.choice(titles)
        pool = by_title[title]
        k = min(len(pool), rng.randint(8, 20), n_sentences - total)
        sents = rng.sample(pool, k)
        docs.append(Document(f"syn-{len(docs):07d}", title, " ".join(sents)))
        total += k
    return docs


def cmd_scale(args) -> None:
    print("| sentences | documents | build s | sentences/s | hybrid p50 ms | hybrid p95 ms | bm25 p50 ms | "
          "serving RSS MiB | build peak RSS MiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in args.sizes:
        code = (
            "import sys, time, resource, statistics\n"
            "sys.path.insert(0, %r)\n"
            "from benchmarks.bench import run_scale\n"
            "run_scale(%d)\n" % (str(ROOT), n)
        )
        subprocess.run([sys.executable, "-c", code], check=True)


def run_scale(n: int) -> None:
    """One size in a fresh process, so its memory figures are its own."""
    settings = Settings(index_name=f"scale-{n}")
    docs = synthetic_corpus(settings, n)
    t0 = time.perf_counter()
    engine = Engine.open(settings, documents=docs, layout=False)
    build_s = time.perf_counter() - t0
    build_peak = peak_rss_mib()
    sentences = len(engine.index.sentences)
    questions = [q.question for q in load_squad(settings.shared_data_dir).questions[:200]]
    res = {}
    for mode in ("hybrid", "bm25"):
        engine.ask(questions[0], retriever=mode)
        ms = []
        for q in questions:
            t1 = time.perf_counter()
            engine.ask(q, retriever=mode)
            ms.append((time.perf_counter() - t1) * 1000)
        res[mode] = percentiles(ms)
    rss = _current_rss_mib()
    print(f"| {sentences} | {len(docs)} | {build_s:.0f} | {sentences / build_s:.0f} | {res['hybrid'][0]:.1f} | "
          f"{res['hybrid'][1]:.1f} | {res['bm25'][0]:.1f} | {rss:.0f} | {build_peak:.0f} |", flush=True)


def _current_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("build", "latency"):
        p = sub.add_parser(name)
        p.add_argument("--dataset", default="seeds", choices=["seeds", "squad-v2-dev"])
        p.add_argument("--n", type=int, default=500, help="questions (latency)")
    p = sub.add_parser("cold")
    p.add_argument("--runs", type=int, default=5)
    p = sub.add_parser("scale")
    p.add_argument("--sizes", type=int, nargs="+", default=[20000, 100000])
    args = ap.parse_args()
    {"build": cmd_build, "latency": cmd_latency, "cold": cmd_cold, "scale": cmd_scale}[args.cmd](args)


if __name__ == "__main__":
    main()

"""Speed and memory benchmarks (measurements, not tests). Each prints a Markdown table row set.

    .venv/bin/python benchmarks/bench.py build   --dataset seeds|squad-v2-dev   # index build throughput
    .venv/bin/python benchmarks/bench.py update                                 # rebuild after new articles
    .venv/bin/python benchmarks/bench.py latency --dataset seeds|squad-v2-dev   # in-process answer latency
    .venv/bin/python benchmarks/bench.py cold                                   # cold `qa ask`, index built
    .venv/bin/python benchmarks/bench.py scale --sizes 100000 300000 1000000    # synthetic corpus growth
    .venv/bin/python benchmarks/bench.py ann --size 1000000                     # IVF recall vs flat search

Peak memory is the process's maximum resident set size (ru_maxrss). The scale corpus is built from the
SQuAD paragraphs (shared data, read in place): sentences are recombined across paragraphs of the same
article with varied order, so documents are not identical. Its sentences repeat SQuAD's, and a build
encodes each distinct text once, so a scale build measures everything but the model; `build` measures
the model on distinct text. Scale indexes go to index/scale-<n>/.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from qa.config import Settings
from qa.profile import load_profile
from qa.datasets import load_gold, load_squad
from qa.engine import Engine
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
    """A full rebuild through Engine.open, as `qa index --rebuild` runs it (the ONNX export already made)."""
    settings = Settings(index_name=f"bench-build-{args.dataset}")
    data = dataset(args.dataset, settings)
    t0 = time.perf_counter()
    engine = Engine.open(settings, documents=data.documents, layout=data.layout, rebuild=True)
    secs = time.perf_counter() - t0
    n = len(engine.index.sentences)
    distinct = len({s.text for s in engine.index.sentences})
    print("| corpus | documents | sentences | distinct | build s | sentences/s | peak RSS MiB |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {data.name} | {len(data.documents)} | {n} | {distinct} | {secs:.1f} | {n / secs:.0f} | "
          f"{peak_rss_mib():.0f} |")


def cmd_update(args) -> None:
    """A corpus that gains articles: the SQuAD index rebuilt after the two seed articles are added, as
    `qa index` does when the corpus changed (vectors of unchanged sentences are reused)."""
    settings = Settings(index_name="bench-update-squad-v2-dev")
    squad = load_squad(settings.shared_data_dir)
    Engine.open(settings, documents=squad.documents, layout=False, rebuild=True)
    added = load_corpus(settings.corpus_dir)
    t0 = time.perf_counter()
    engine = Engine.open(settings, documents=squad.documents + added, layout=False)
    secs = time.perf_counter() - t0
    new = sum(1 for s in engine.index.sentences if s.doc_id in {d.doc_id for d in added})
    print("| corpus | sentences | new sentences | rebuild s | sentences/s of corpus |")
    print("|---|---|---|---|---|")
    n = len(engine.index.sentences)
    print(f"| squad-v2-dev + {len(added)} seed articles | {n:,} | {new} | {secs:.1f} | {n / secs:.0f} |")


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
    print("| sentences | documents | distinct sentences | build s | build peak RSS MiB | load s | hybrid p50 ms | "
          "hybrid p95 ms | bm25 p50 ms | bm25 p95 ms | serving RSS MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for n in args.sizes:
        # Each step in a fresh process, so its memory figures are its own: the serving process opens the
        # built index as `qa serve` does, without torch and without the corpus in memory twice.
        built = _in_subprocess("scale_built" if args.serve_only else "scale_build", n)
        served = _in_subprocess("scale_serve", n)
        print(f"| {built['sentences']:,} | {built['documents']:,} | {built['distinct']:,} | {built['build_s']:.0f} | "
              f"{built['peak_rss']:,.0f} | {served['load_s']:.1f} | {served['hybrid'][0]:.1f} | "
              f"{served['hybrid'][1]:.1f} | {served['bm25'][0]:.1f} | {served['bm25'][1]:.1f} | "
              f"{served['rss']:,.0f} |", flush=True)


def _in_subprocess(func: str, n: int) -> dict:
    code = f"import json, sys; sys.path.insert(0, {str(ROOT)!r}); from benchmarks import bench; " \
           f"print(json.dumps(bench.{func}({n})))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def scale_build(n: int) -> dict:
    settings = Settings(index_name=f"scale-{n}")
    docs = synthetic_corpus(settings, n)
    t0 = time.perf_counter()
    engine = Engine.open(settings, documents=docs, layout=False, rebuild=True)
    sentences = engine.index.sentences
    return {"sentences": len(sentences), "documents": len(docs), "distinct": len({s.text for s in sentences}),
            "build_s": time.perf_counter() - t0, "peak_rss": peak_rss_mib()}


def scale_built(n: int) -> dict:
    """The figures of an existing scale-<n> build, from its manifest (``scale --serve-only``)."""
    from qa import index as index_mod

    idx = index_mod.load(Settings(index_name=f"scale-{n}").index_dir())
    m = idx.manifest
    return {"sentences": m["sentences"], "documents": m["documents"], "distinct": len({s.text for s in idx.sentences}),
            "build_s": m["build_seconds"], "peak_rss": float("nan")}


def scale_serve(n: int) -> dict:
    settings = Settings(index_name=f"scale-{n}")
    questions = [q.question for q in load_squad(settings.shared_data_dir).questions[:200]]
    t0 = time.perf_counter()
    engine = Engine.open(settings, check_corpus=False)
    engine.encode_query("warm up")
    out = {"load_s": time.perf_counter() - t0}
    for mode in ("hybrid", "bm25"):
        ms = []
        for q in questions:
            t1 = time.perf_counter()
            engine.ask(q, retriever=mode)
            ms.append((time.perf_counter() - t1) * 1000)
        out[mode] = percentiles(ms)
    out["rss"] = _current_rss_mib()
    return out


def cmd_ann(args) -> None:
    """Recall of the IVF dense index against exact (flat) search, and its speed, on a built scale index."""
    from qa import index as index_mod

    settings = Settings(index_name=f"scale-{args.size}")
    idx = index_mod.load(settings.index_dir())
    vectors = index_mod.mean_vectors(np.asarray(idx.sentence_vectors), idx.passages)
    engine = Engine(settings, idx)  # also sets FAISS to the server's one thread per search
    queries = np.stack([engine.encode_query(q.question)
                        for q in load_squad(settings.shared_data_dir).questions[: args.queries]])
    flat = index_mod.dense_index(vectors, ann_min=len(vectors) + 1)
    t0 = time.perf_counter()
    ivf = index_mod.dense_index(vectors, ann_min=0)
    train_s = time.perf_counter() - t0
    k = load_profile(settings.profile).ranking.candidate_passages
    exact_ms, (_, exact) = _timed_search(flat, queries, k)
    print(f"{len(vectors):,} passages, {len(queries)} SQuAD questions, top {k}; IVF nlist {ivf.nlist}, "
          f"built in {train_s:.0f} s")
    print("| index | nprobe | recall@%d vs flat | top-1 same as flat | search ms/query |" % k)
    print("|---|---|---|---|---|")
    print(f"| flat | – | 1.000 | 1.000 | {exact_ms:.2f} |")
    for nprobe in args.nprobe:
        ivf.nprobe = nprobe
        ms, (_, got) = _timed_search(ivf, queries, k)
        recall = np.mean([len(set(a) & set(b)) / k for a, b in zip(exact.tolist(), got.tolist())])
        top1 = float(np.mean(exact[:, 0] == got[:, 0]))
        print(f"| IVF | {nprobe} | {recall:.3f} | {top1:.3f} | {ms:.2f} |")


def _timed_search(index, queries: np.ndarray, k: int):
    index.search(queries[:1], k)
    t0 = time.perf_counter()
    results = [index.search(q.reshape(1, -1), k) for q in queries]
    ms = (time.perf_counter() - t0) * 1000 / len(queries)
    return ms, (np.vstack([r[0] for r in results]), np.vstack([r[1] for r in results]))


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
    sub.add_parser("update")
    p = sub.add_parser("cold")
    p.add_argument("--runs", type=int, default=5)
    p = sub.add_parser("scale")
    p.add_argument("--sizes", type=int, nargs="+", default=[20000, 100000])
    p.add_argument("--serve-only", action="store_true", help="measure serving of the existing scale builds")
    p = sub.add_parser("ann")
    p.add_argument("--size", type=int, default=100000, help="the scale-<size> index (built by `scale`)")
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--nprobe", type=int, nargs="+", default=[8, 16, 32, 64])
    args = ap.parse_args()
    commands = {"build": cmd_build, "update": cmd_update, "latency": cmd_latency, "cold": cmd_cold,
                "scale": cmd_scale, "ann": cmd_ann}
    commands[args.cmd](args)


if __name__ == "__main__":
    main()

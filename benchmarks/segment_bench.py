"""An index of segments against one merged index, in one process: question latency, merge cost, and answers
after random changes.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/segment_bench.py latency        # 1, 10 and 50 segments
    PYTHONPATH=$PWD .venv/bin/python benchmarks/segment_bench.py merge          # 50 segments merged into one
    PYTHONPATH=$PWD .venv/bin/python benchmarks/segment_bench.py ops --ops 200  # random changes vs a rebuild
    PYTHONPATH=$PWD .venv/bin/python benchmarks/segment_bench.py cluster-latency  # 2 shards, 1/10/50 segments each

The corpus is SQuAD-half (every paragraph a document; QA_SHARED_DATA_DIR), the questions its tune split,
the encoder the ONNX export (as a server's updates embed). Indexes are written under ``--work``.

- ``latency``: the same documents as one build, and as a generation of 10 and of 50 segments (a build of
  most documents, then segments of the rest added by updates, nothing merged). Each question is asked of
  the three indexes in turn (hybrid, abstention on), so drift over the run hits them alike; reports p50 /
  p95 per index and whether every answer (sentences, scores, confidence) is the same.
- ``merge``: the 50-segment generation merged into one segment (`qa.index.merge.merge`): wall time and the
  process's peak RSS growth, in a child process; then the merged index's answers against the build's.
- ``cluster-latency``: as ``latency`` on 2 shards (a local Ray instance builds them; the front and the shards
  then run in this process): each shard a build plus 0, 9 or 49 segments of 5 documents (the same documents
  in all three).
- ``ops``: ``--ops`` random changes (add a paragraph held back, replace one with another paragraph's text,
  delete one) applied as updates with the merges the policy makes, then the answers to the questions
  compared with those of a full build of the documents at the end.
Prints a JSON report.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from qa import index as index_mod  # noqa: E402
from qa.config import Settings  # noqa: E402
from qa.datasets import load_squad  # noqa: E402
from qa.embed import bulk_encoder  # noqa: E402
from qa.engine import Engine, build_spec  # noqa: E402
from qa.index.build import write_build  # noqa: E402
from qa.index.segments import merge_due, update  # noqa: E402
from qa.types import Document  # noqa: E402


def answer_key(answer) -> tuple:
    return (tuple((s.citation.doc_id, s.citation.sentence_index, round(s.score, 5)) for s in answer.sentences),
            round(answer.confidence, 5), answer.answered)


def setup(work: Path) -> tuple[Settings, list[Document], list[str], object]:
    settings = Settings(index_root=work / "index", data_dir=work / "var", corpus_dir=work / "corpus")
    data = load_squad(settings.shared_data_dir).select("tune")
    docs = sorted(data.documents, key=lambda d: d.doc_id)
    questions = [q.question for q in data.questions]
    encoder, _ = bulk_encoder(settings, lambda: [d.raw for d in docs[:50]])
    return settings, docs, questions, encoder


def segmented(target: Path, docs: list[Document], segments: int, encoder, spec) -> index_mod.CorpusIndex:
    """``docs`` as a build of most of them and ``segments - 1`` segments of about 10 documents each."""
    if target.exists():
        shutil.rmtree(target)
    rest = (segments - 1) * 10
    index_mod.build(docs[:-rest] if rest else docs, encoder, spec, target, reuse=False)
    index = index_mod.load(target)
    for k in range(segments - 1):
        part = docs[len(docs) - rest + 10 * k: len(docs) - rest + 10 * (k + 1)]
        update(target, index, part, [], lambda d: write_build(d, encoder, spec, target, reuse=False), spec)
        index = index_mod.load(target, loaded=index_mod.segments_of(index))
    return index


def ask_in_turn(engines: dict, questions: list[str]) -> tuple[dict, dict]:
    """Each question asked of every engine in turn (so that drift over the run hits them alike): per engine,
    each answer's time in ms and its :func:`answer_key`."""
    for engine in engines.values():
        engine.ask("warm up")
    times: dict = {n: [] for n in engines}
    keys: dict = {n: [] for n in engines}
    for q in questions:
        for n, engine in engines.items():
            t0 = time.perf_counter()
            answer = engine.ask(q)
            times[n].append((time.perf_counter() - t0) * 1000)
            keys[n].append(answer_key(answer))
    return times, keys


def latency(args) -> dict:
    settings, docs, questions, encoder = setup(args.work)
    spec = build_spec(settings)
    questions = questions[: args.questions]
    indexes = {n: segmented(args.work / f"seg-{n}", docs, n, encoder, spec) for n in (1, 10, 50)}
    engines = {n: Engine(settings, index) for n, index in indexes.items()}
    times, keys = ask_in_turn(engines, questions)
    out = {"questions": len(questions), "sentences": len(indexes[1].sentences)}
    for n in engines:
        xs = sorted(times[n])
        out[f"segments_{n}"] = {"segments": len(index_mod.segments_of(indexes[n])),
                                "p50_ms": round(statistics.median(xs), 2),
                                "p95_ms": round(xs[int(0.95 * (len(xs) - 1))], 2),
                                "answers_equal_to_one_build": sum(a == b for a, b in zip(keys[n], keys[1]))}
    return out


MERGE_CHILD = """
import json, resource, sys, time
from pathlib import Path
from qa import index as index_mod
from qa.config import Settings
from qa.engine import build_spec
from qa.index.merge import merge
from qa.index.segments import entries_of

target, out = Path(sys.argv[1]), Path(sys.argv[2])
settings = Settings(index_root=target.parent)
index = index_mod.load(target)
segments = index_mod.segments_of(index)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
merged = merge(out, segments, [frozenset(e["deleted"]) for e in entries_of(index)], build_spec(settings),
               settings.ann_min_passages)
seconds = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"segments": len(segments), "sentences": len(index.sentences), "seconds": round(seconds, 2),
                  "rss_before_mib": round(before / 1024, 1), "peak_rss_mib": round(peak / 1024, 1),
                  "merged": str(merged)}))
"""


def merge_cost(args) -> dict:
    settings, docs, questions, encoder = setup(args.work)
    spec = build_spec(settings)
    target = args.work / "seg-50"
    if not (target / "current").exists():
        segmented(target, docs, 50, encoder, spec)
    staging = args.work / "merged"
    shutil.rmtree(staging, ignore_errors=True)
    run = subprocess.run([sys.executable, "-c", MERGE_CHILD, str(target), str(staging)], capture_output=True,
                         text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True)
    report = json.loads(run.stdout.strip().splitlines()[-1])
    merged_dir = Path(report.pop("merged"))
    index_mod.publish(staging, merged_dir)
    merged = index_mod.load(staging)
    whole = segmented(args.work / "seg-1", docs, 1, encoder, spec)
    a, b = Engine(settings, merged), Engine(settings, whole)
    qs = questions[: args.questions]
    report["answers_equal_to_one_build"] = sum(answer_key(a.ask(q)) == answer_key(b.ask(q)) for q in qs)
    report["questions"] = len(qs)
    return report


def ops(args) -> dict:
    settings, docs, questions, encoder = setup(args.work)
    spec = build_spec(settings)
    rng = np.random.default_rng(args.seed)
    held_back = {d.doc_id for d in rng.choice(docs, size=len(docs) // 5, replace=False)}
    corpus = {d.doc_id: d for d in docs if d.doc_id not in held_back}
    pool = [d for d in docs if d.doc_id in held_back]
    target = args.work / "ops"
    shutil.rmtree(target, ignore_errors=True)
    index_mod.build(sorted(corpus.values(), key=lambda d: d.doc_id), encoder, spec, target, reuse=False)
    index = index_mod.load(target)
    counts = {"add": 0, "replace": 0, "delete": 0}
    merges, t0 = 0, time.perf_counter()
    for _ in range(args.ops):
        action = rng.choice(["add", "replace", "delete"], p=[0.4, 0.4, 0.2])
        if action == "add" and pool:
            doc = pool.pop(int(rng.integers(len(pool))))
            changed, removed = [doc], []
        elif action == "replace" or (action == "add" and not pool):
            action = "replace"
            old = corpus[sorted(corpus)[int(rng.integers(len(corpus)))]]
            donor = docs[int(rng.integers(len(docs)))]
            changed, removed = [Document(old.doc_id, old.title, donor.raw, source=old.source)], []
        else:
            gone = sorted(corpus)[int(rng.integers(len(corpus)))]
            changed, removed = [], [gone]
        for d in changed:
            corpus[d.doc_id] = d
        for d in removed:
            del corpus[d]
        counts[action] += 1
        update(target, index, changed, removed, lambda d: write_build(d, encoder, spec, target, reuse=False), spec)
        merges += merge_due(target, index, spec)
        previous, index = index, index_mod.load(target, loaded=index_mod.segments_of(index))
        previous.lease.release()
    seconds = time.perf_counter() - t0
    whole_target = args.work / "ops-rebuild"
    shutil.rmtree(whole_target, ignore_errors=True)
    index_mod.build(sorted(corpus.values(), key=lambda d: d.doc_id), encoder, spec, whole_target, reuse=False)
    whole = index_mod.load(whole_target)
    a, b = Engine(settings, index), Engine(settings, whole)
    qs = questions[: args.questions]
    differ = [q for q in qs if answer_key(a.ask(q)) != answer_key(b.ask(q))]
    return {"ops": args.ops, **counts, "merges": merges, "segments_at_end": len(index_mod.segments_of(index)),
            "seconds": round(seconds, 1), "documents": len(corpus), "fingerprint_equal": index.fingerprint ==
            whole.fingerprint, "questions": len(qs), "answers_equal": len(qs) - len(differ), "differ": differ[:10]}


def cluster_latency(args) -> dict:
    """``latency`` on 2 shards served in process (the sharded front over ``ShardSearcher``s): each shard a
    build of most of its documents plus 0, 9 or 49 segments of 5 documents each."""
    from qa.cluster.build import build_sharded, ensure_onnx_export, ray_session
    from qa.cluster.front import open_local
    from qa.cluster.shards import load_set, sharded_root

    settings, docs, questions, encoder = setup(args.work)
    spec = build_spec(settings)
    questions = questions[: args.questions]
    engines = {}
    with ray_session(num_cpus=2):
        ensure_onnx_export(settings, docs)
        for n in (1, 10, 50):
            held = (n - 1) * 10  # n - 1 segments a shard, of 5 documents each: as ``latency``'s 10 a segment
            s = settings.model_copy(update={"index_name": f"cluster-{n}"})
            build_sharded(docs[: len(docs) - held], s, shards=2, workers=2)
            folders = load_set(sharded_root(s)).shards
            for k in range(n - 1):
                for shard, folder in enumerate(folders):
                    part = docs[len(docs) - held + 10 * k + 5 * shard: len(docs) - held + 10 * k + 5 * (shard + 1)]
                    update(folder, index_mod.load(folder), part, [],
                           lambda d, f=folder: write_build(d, encoder, spec, f, reuse=False), spec)
            engines[n] = open_local(s, sharded_root(s))
    times, keys = ask_in_turn(engines, questions)
    out = {"questions": len(questions), "shards": 2}
    for n, engine in engines.items():
        xs = sorted(times[n])
        out[f"segments_{n}"] = {"segments_per_shard": [len(index_mod.segments_of(searcher.index_of()))
                                                       for searcher in engine.shards.searchers],
                                "p50_ms": round(statistics.median(xs), 2),
                                "p95_ms": round(xs[int(0.95 * (len(xs) - 1))], 2),
                                "answers_equal_to_one_segment": sum(a == b for a, b in zip(keys[n], keys[1]))}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=["latency", "merge", "ops", "cluster-latency"])
    ap.add_argument("--work", type=Path, default=Path("/tmp/qa-segment-bench"))
    ap.add_argument("--questions", type=int, default=300)
    ap.add_argument("--ops", type=int, default=200)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    report = {"date": time.strftime("%Y-%m-%d"), "command": " ".join(["benchmarks/segment_bench.py", *sys.argv[1:]]),
              "load_average_at_start": os.getloadavg(), **{"latency": latency, "merge": merge_cost, "ops": ops,
                                                          "cluster-latency": cluster_latency}[
                  args.what](args)}
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

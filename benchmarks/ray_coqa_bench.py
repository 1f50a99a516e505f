"""CoQA's dialogues on the sharded index against one index: the same answers turn by turn, and a turn's cost.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/ray_coqa_bench.py [--split test] [--limit N] [--out report.json]

The 610 CoQA stories (shared data, evaluation only) are built as one index in process and as 2 shards on a
local Ray instance of 2 CPUs, in a temporary index root (the ONNX export is copied from index/: run
`qa index` once first). Every dialogue of the split is then asked turn by turn as one conversation
(``qa.dialogue_eval.ask_dialogues``, the "conversation" condition: the path of POST /ask with a conversation_id)
against the one-process engine and against the sharded front in process (the shards loaded in this
process, so that the figure is the front's own cost, not Serve's transport, which benchmarks/ray_bench.py
measures). Prints a JSON report: per engine, opener and follow-up Hit@1 and right story@1 and the turn
latency; and how many turns got the same sentences in the same order with scores within 1e-5.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from qa.config import Settings


class Recorded:
    """An engine whose answers to ``ask`` are kept (conversation, turn, citations and scores: no CoQA text),
    for comparing two engines turn by turn."""

    def __init__(self, engine):
        self.engine = engine
        self.answers: list[dict] = []
        self.turns: Counter[str] = Counter()

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def ask(self, question: str, **kwargs):
        answer = self.engine.ask(question, **kwargs)
        conversation = kwargs.get("conversation_id")
        self.turns[conversation] += 1
        self.answers.append({"conversation": conversation, "turn": self.turns[conversation],
                             "sentences": [(s.citation.doc_id, s.citation.sentence_index, s.score)
                                           for s in answer.sentences]})
        return answer


def differences(expected: list[dict], got: list[dict], atol: float = 1e-5) -> list[dict]:
    """The turns whose sentences are not the same in the same order with scores within ``atol``: each with
    its first three sentences under both engines."""
    out = []
    for a, b in zip(expected, got, strict=True):
        same = [c[:2] for c in a["sentences"]] == [c[:2] for c in b["sentences"]] and np.allclose(
            [c[2] for c in a["sentences"]], [c[2] for c in b["sentences"]], atol=atol, rtol=0)
        if not same:
            out.append({"conversation": a["conversation"], "turn": a["turn"],
                        "one index": a["sentences"][:3], "2 shards": b["sentences"][:3]})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", default="test", choices=("tune", "test", "all"))
    parser.add_argument("--limit", type=int, default=None, help="only the first N dialogues")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    from qa import dialogue_eval
    from qa.cluster.build import build_sharded, ray_session
    from qa.cluster.front import open_local
    from qa.cluster.shards import sharded_root
    from qa.datasets import COQA_FILE, load_coqa
    from qa.engine import Engine

    base = Settings()
    root = Path(tempfile.mkdtemp(prefix="ray-coqa-"))
    try:
        data = load_coqa(base.shared_data_dir / COQA_FILE, root / "_datasets" / "coqa").select(args.split)
        if args.limit:
            data = data.first_conversations(args.limit)
        shutil.copytree(base.onnx_path().parent, root / "_models" / base.onnx_path().parent.name)  # the export
        settings = Settings(index_root=root, index_name="coqa", data_dir=root / "var")
        single = Recorded(Engine.open(settings, documents=data.documents))
        with ray_session(num_cpus=2):
            t = time.perf_counter()
            build_sharded(data.documents, settings, shards=2, workers=2)
            build_s = time.perf_counter() - t
        sharded = Recorded(open_local(settings.model_copy(update={"data_dir": root / "var-sharded"}),
                                      sharded_root(settings)))
        report: dict = {"date": time.strftime("%Y-%m-%d"), "split": args.split,
                        "dialogues": len(data.conversations), "documents": len(data.documents),
                        "sentences": len(single.index.sentences), "shards": len(sharded.shards),
                        "sharded_build_s": round(build_s, 1)}
        for name, engine in (("one index", single), ("2 shards, front in process", sharded)):
            results = dialogue_eval.ask_dialogues(data, engine, "conversation")
            summary = dialogue_eval.summarize_dialogues(results)
            part = summary.get(args.split, summary["all"])
            report[name] = {"opener": part["opener"], "follow-up": part["follow-up"], "latency": summary["latency"]}
            engine.conversations.close()
        report["turns"] = len(single.answers)
        report["different_turns"] = differences(single.answers, sharded.answers)
        report["same_answers"] = report["turns"] - len(report["different_turns"])
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""Choose how conversations keep their topic, on CoQA's tune stories: follow-up Hit@1 and right story@1.

    .venv/bin/python benchmarks/coqa_topic.py [--split tune] [--dialogues 120] [--grid [--only PREFIX ...]]

Each dialogue is played turn by turn with qa.conversation.answer_turn (the reading `Engine.ask` uses with
a conversation id), the history being what a user would have seen (abstentions enter it without
citations). Rows: the reading without topic keeping, the default reading, and with ``--grid`` the
thresholds of topic keeping (``new_topic_margin``, ``switch_margin``, ``focus_documents``, ...). The CoQA
index must exist: `qa eval --dataset coqa --limit 1` builds it. Prints figures, never asserts them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from qa import conversation as conv  # noqa: E402
from qa.config import Settings  # noqa: E402
from qa.datasets import COQA_FILE, Dataset, load_coqa  # noqa: E402
from qa.engine import Engine  # noqa: E402
from qa.evaluate import RANK_DEPTH, judge  # noqa: E402

D = conv.DEFAULT_READING
GRID = {
    "no topic keeping": replace(D, keep_topic=False),
    **{f"new_topic_margin {v}": replace(D, new_topic_margin=v) for v in (0.5, 2.0, 99.0)},
    **{f"switch_margin {v}": replace(D, switch_margin=v) for v in (0.25, 0.5, 99.0)},
    "focus_documents 2": replace(D, focus_documents=2),
    **{f"story_cosine {v}": replace(D, story_cosine=v) for v in (0.8, 0.85, 0.9)},
    **{f"refocus_turns {v}": replace(D, refocus_turns=v) for v in (4, 8, None)},
}


def play(engine: Engine, data: Dataset, reading: conv.Reading) -> dict[str, float]:
    raw = {d.doc_id: d.raw for d in data.documents}
    counts = {"n": 0, "hit1": 0, "story": 0}
    ms: list[float] = []
    for cid, turns in data.conversations.items():
        history: list[conv.Turn] = []
        for q in turns:
            t0 = time.perf_counter()
            answer = conv.answer_turn(engine, q.question, history, top_k=RANK_DEPTH, mode="hybrid", reading=reading,
                                      abstain=False)
            ms.append((time.perf_counter() - t0) * 1000)
            shown = answer if answer.answered else replace(answer, sentences=[])
            history.append(conv.Turn.from_answer(q.question, shown))
            if q.turn == 0 or not q.answerable:
                continue
            hit = 1 in judge(q, answer.to_dict(), 0.0, raw).covered.values()
            story = bool(answer.sentences) and answer.sentences[0].citation.doc_id == data.sources[cid]
            counts["n"] += 1
            counts["hit1"] += hit
            counts["story"] += story
    n = max(counts["n"], 1)
    return {"n": counts["n"], "Hit@1": counts["hit1"] / n, "right story@1": counts["story"] / n,
            "p50_ms": statistics.median(ms) if ms else 0.0}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--split", default="tune")
    ap.add_argument("--dialogues", type=int, default=120)
    ap.add_argument("--grid", action="store_true")
    ap.add_argument("--only", nargs="*", help="only the grid rows whose names start with these")
    args = ap.parse_args(argv)
    base = Settings()
    data = load_coqa(base.shared_data_dir / COQA_FILE, base.index_root / "_datasets" / "coqa")
    data = data.select(args.split).first_conversations(args.dialogues)
    with tempfile.TemporaryDirectory() as store:
        settings = base.model_copy(update={"index_name": "coqa", "data_dir": Path(store)})
        engine = Engine.open(settings, documents=data.documents)
        rows = {"default": D, **(GRID if args.grid else {"no topic keeping": GRID["no topic keeping"]})}
        if args.only:
            rows = {k: v for k, v in rows.items() if k == "default" or k.startswith(tuple(args.only))}
        print(f"| reading ({args.split}, {len(data.conversations)} dialogues) | follow-up Hit@1 | right story@1 | n "
              "| turn p50 ms |")
        print("|---|---|---|---|---|")
        for name, reading in rows.items():
            m = play(engine, data, reading)
            print(f"| {name} | {m['Hit@1']:.3f} | {m['right story@1']:.3f} | {m['n']} | {m['p50_ms']:.1f} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Measure how follow-up questions are understood: baselines against qa.conversation's history reading.

    .venv/bin/python benchmarks/conversation_bench.py              # table on stdout
    .venv/bin/python benchmarks/conversation_bench.py --grid       # also the ablation grid
    .venv/bin/python benchmarks/conversation_bench.py --write-doc  # and rewrite docs/CONVERSATIONS.md
    .venv/bin/python benchmarks/conversation_bench.py --latency    # and the time of a turn, p50 / p95

Each gold conversation of eval/conversations.jsonl is played turn by turn; every method keeps its own
history built from its own answers (what a user would have seen, abstentions included), so an early
mistake costs what it would cost in use. A returned sentence hits a gold quote when its [start, end)
span (or one of its ``also_in`` places, which are shown with it) overlaps the quote's span in the raw
document. Per turn kind and split:

- Hit@1: the first sentence of the ranking hits some quote;
- R@3: share of the turn's quotes hit by the first three sentences;
- "answered": how many answerable follow-ups pass the engine's abstention threshold (abstention is the
  engine's calibrated model, not this module's; the ranking is measured with ``abstain=False``, and a
  turn the user saw abstain enters the history without citations);
- unanswerable turns are left out of Hit@1/R@3 and counted under "abstained" instead.

Not a test: it prints figures, it never asserts them.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from qa import conversation as conv  # noqa: E402
from qa.config import Settings  # noqa: E402
from qa.engine import Engine, Query  # noqa: E402
from qa.types import Answer, AnswerSentence  # noqa: E402

KINDS = ("followup", "topic_change", "first")
SPLITS = ("tune", "test", "all")


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def load_conversations(path: Path, engine: Engine) -> list[dict]:
    convs = _jsonl(path)
    for c in convs:
        for t in c["turns"]:
            spans = []
            for e in t.get("evidence", []):
                raw = engine.document(e["doc_id"]).raw
                at = raw.find(e["quote"])
                if at < 0:
                    raise SystemExit(f"{c['id']}: quote not found in {e['doc_id']}: {e['quote'][:60]!r}")
                spans.append((e["doc_id"], at, at + len(e["quote"])))
            t["spans"] = spans
    return convs


def rewritten(convs: list[dict], path: Path) -> list[dict]:
    """The conversations with every question replaced by its manual rewrite (eval/conversation_rewrites.jsonl:
    each follow-up made self-contained by a person who saw only the conversation so far, as in TREC CAsT's
    manual runs). Asked alone, they bound what any reading of the history can reach with this ranker."""
    rewrites = {r["id"]: r["rewrites"] for r in _jsonl(path)}
    out = []
    for c in convs:
        if c["id"] not in rewrites or len(rewrites[c["id"]]) != len(c["turns"]):
            raise SystemExit(f"{path}: no rewrite for every turn of {c['id']}")
        out.append({**c, "turns": [{**t, "question": q} for t, q in zip(c["turns"], rewrites[c["id"]])]})
    return out


def quotes_hit(sentence: AnswerSentence, spans: list[tuple[str, int, int]]) -> set[int]:
    """The gold quotes (indices into ``spans``) that the sentence, or one of its ``also_in`` places, overlaps."""
    return {qi for c in [sentence.citation, *sentence.also_in] for qi, (doc, s, e) in enumerate(spans)
            if c.doc_id == doc and c.start < e and s < c.end}


def hits(answer: Answer, spans: list[tuple[str, int, int]], k: int) -> tuple[bool, float]:
    """(first sentence hits, share of quotes hit by the first k)."""
    if not answer.sentences or not spans:
        return False, 0.0
    first = bool(quotes_hit(answer.sentences[0], spans))
    found = set().union(*(quotes_hit(s, spans) for s in answer.sentences[:k]))
    return first, len(found) / len(spans)


# -- methods: each answers (question, history) -------------------------------------------------------

Method = Callable[[Engine, str, list[conv.Turn], int], Answer]


def baseline(build: Callable[[Engine, str, list[conv.Turn]], Query]) -> Method:
    return lambda engine, question, history, top_k: engine.answer(build(engine, question, history), top_k=top_k,
                                                                  mode="hybrid", abstain=False)


def plain(engine: Engine, text: str, question: str, understood: str | None) -> Query:
    embedded = engine.embed_query(text)
    return Query(question=question, text=text, terms=engine.index.analyzer.terms(text),
                 vector=embedded.vectors[0], understood_as=understood,
                 tokens=(embedded.tokens[0], embedded.token_ids[0]))


def no_history(engine, question, history):
    return plain(engine, question, question, None)


def prepend_previous(engine, question, history):
    if not history:
        return no_history(engine, question, history)
    text = f"{history[-1].question} {question}"
    return plain(engine, text, question, text)


def concat_questions(engine, question, history):
    if not history:
        return no_history(engine, question, history)
    text = " ".join([t.question for t in history] + [question])
    return plain(engine, text, question, text)


def concat_questions_answers(engine, question, history):
    if not history:
        return no_history(engine, question, history)
    parts = []
    for t in history:
        parts.append(t.question)
        parts.extend(t.texts[:1])
    text = " ".join(parts + [question])
    return plain(engine, text, question, text)


def reading(r: conv.Reading) -> Method:
    return lambda engine, question, history, top_k: conv.answer_turn(engine, question, history, top_k=top_k,
                                                                     mode="hybrid", reading=r, abstain=False)


BASELINES: dict[str, Method] = {
    "no history (floor)": baseline(no_history),
    "prepend previous question": baseline(prepend_previous),
    "all previous questions": baseline(concat_questions),
    "all previous questions + answers": baseline(concat_questions_answers),
}

CEILING = "manual rewrite asked alone (ceiling)"
CHOSEN = "**chosen: qa.conversation default**"
BY_SET = ("no history (floor)", CHOSEN)  # and CEILING

# The grid varies the reading in service one setting at a time (the hand-set follow-up gains it once varied
# were replaced by the learned follow-up model: docs/DECISIONS.md; benchmarks/conversation_ltr.py fits that).
D = conv.DEFAULT_READING
GRID: dict[str, conv.Reading] = {
    "− definite-phrase anaphora": replace(D, definite_phrases=False),
    "− topic-change detection": replace(D, detect_topic_change=False),
    "max 6 history terms": replace(D, max_terms=6),
    "recency decay 0.6": replace(D, decay=0.6),
    "− elliptical expansion": replace(D, elliptical=0.0),
    "elliptical answer terms ×0.5": replace(D, elliptical=0.5),
    "elliptical = at most 1 content word": replace(D, elliptical_terms=1),
    "− subject \"that\" anaphora": replace(D, subject_that=False),
    "− about the previous answer (about_previous = 0)": replace(D, about_previous=0.0),
    "about the previous answer from 0.5 of the words": replace(D, about_previous=0.5),
    "− bound \"his\"/\"her\" (a named question with one reads history)": replace(D, bound_possessives=False),
    "− keeping the topic's documents": replace(D, keep_topic=False),
    "no story documents (story_cosine = None)": replace(D, story_cosine=None),
}


def play(engine: Engine, convs: list[dict], method: Method, top_k: int, log: list | None = None) -> list[dict]:
    """Every turn of every conversation answered with ``method``; one result row per turn."""
    rows = []
    for c in convs:
        history: list[conv.Turn] = []
        for i, t in enumerate(c["turns"]):
            answer = method(engine, t["question"], history, top_k)  # the ranking, even below the threshold
            h1, r3 = hits(answer, t["spans"], 3)
            rows.append({"conv": c["id"], "split": c["split"], "turn": i, "kind": t["kind"],
                         "answerable": t["answerable"], "hit1": h1, "r3": r3, "answered": answer.answered,
                         "understood_as": answer.understood_as,
                         "top": answer.sentences[0].text[:90] if answer.sentences else None})
            shown = answer if answer.answered else replace(answer, sentences=[])  # what the user saw
            history.append(conv.Turn.from_answer(t["question"], shown))
            if log is not None:
                log.append(rows[-1])
    return rows


def turn_latency(engine: Engine, convs: list[dict], top_k: int, passes: int = 3,
                 reading: conv.Reading = conv.DEFAULT_READING) -> dict:
    """Wall time of every turn answered as the service answers it (qa.conversation.answer_turn, abstention
    on), the history being the gold conversation's earlier turns as answered; the first pass warms up and
    is not counted."""
    times: list[float] = []
    for r in range(passes + 1):
        for c in convs:
            history: list[conv.Turn] = []
            for t in c["turns"]:
                t0 = time.perf_counter()
                answer = conv.answer_turn(engine, t["question"], history, top_k=top_k, mode="hybrid",
                                          reading=reading)
                if r:
                    times.append((time.perf_counter() - t0) * 1000)
                history.append(conv.Turn.from_answer(t["question"], answer))
    q = statistics.quantiles(times, n=20)
    return {"turns": len(times), "p50_ms": round(statistics.median(times), 1), "p95_ms": round(q[18], 1)}


def summarise(rows: list[dict]) -> dict:
    """{(split, kind): (n, hit@1, r@3)} plus {(split, "unanswerable"): (n, abstained share)}."""
    acc: dict = defaultdict(list)
    for r in rows:
        for split in (r["split"], "all"):
            if r["answerable"]:
                acc[(split, r["kind"])].append((r["hit1"], r["r3"], r["answered"]))
            else:
                acc[(split, "unanswerable")].append((not r["answered"],))
    out = {}
    for key, vals in acc.items():
        n = len(vals)
        out[key] = (n, *[sum(v[i] for v in vals) / n for i in range(len(vals[0]))])
    return out


# The gold conversations in the order they were written: c01–c24 (their tune split chose the hand-set
# readings), then c25–c36 and c37–c52, each written blind from the two articles and measured before any
# choice was made on it.
SETS = (("c01–c24", 1, 24), ("c25–c36", 25, 36), ("c37–c52", 37, 52))


def by_set(played: dict[str, list[dict]]) -> str:
    """Follow-up Hit@1 per set of conversations and split (hits/turns), one row per method."""
    lines = ["| method | " + " | ".join(f"{name} {split}" for name, _, _ in SETS for split in ("tune", "test"))
             + " |", "|---|" + "---|" * (2 * len(SETS))]
    for method, rows in played.items():
        cells = []
        for _, lo, hi in SETS:
            for split in ("tune", "test"):
                sel = [r for r in rows if r["kind"] == "followup" and r["answerable"] and r["split"] == split
                       and lo <= int(r["conv"].lstrip("c")) <= hi]
                cells.append(f"{sum(r['hit1'] for r in sel)}/{len(sel)}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "Follow-up Hit@1 by set of conversations:\n\n" + "\n".join(lines)


def table(results: dict[str, dict], kinds=("followup", "topic_change")) -> str:
    head = ("| method | " + " | ".join(f"{k} {s} H@1 / R@3" for k in kinds for s in SPLITS)
            + " | follow-ups answered | unanswerable abstained |")
    lines = [head, "|" + "---|" * (3 + len(kinds) * len(SPLITS))]
    for name, summ in results.items():
        cells = []
        for k in kinds:
            for s in SPLITS:
                n, h, r, _ = summ.get((s, k), (0, 0.0, 0.0, 0.0))
                cells.append(f"{h:.2f} / {r:.2f}" if n else "–")
        n, _, _, answered = summ.get(("all", "followup"), (0, 0, 0, 0.0))
        cells.append(f"{round(answered * n)}/{n}")
        n, ab = summ.get(("all", "unanswerable"), (0, 0.0))
        cells.append(f"{round(ab * n)}/{n}" if n else "–")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    any_result = next(iter(results.values()))
    counts = ", ".join(f"{k} {'/'.join(str(any_result.get((s, k), (0,))[0]) for s in SPLITS)}" for k in kinds)
    return "\n".join(lines) + f"\n\nTurns per split (tune/test/all): {counts}."


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--conversations", type=Path, default=ROOT / "eval" / "conversations.jsonl")
    ap.add_argument("--grid", action="store_true", help="also measure the ablation grid")
    ap.add_argument("--write-doc", action="store_true", help="write the tables into docs/CONVERSATIONS.md")
    ap.add_argument("--turns", action="store_true", help="print every turn of the chosen method")
    ap.add_argument("--latency", action="store_true", help="also time every turn (three passes, warm engine)")
    ap.add_argument("--rewrites", type=Path, default=ROOT / "eval" / "conversation_rewrites.jsonl",
                    help="manual rewrites of every turn, asked alone as the ceiling row (skipped if missing)")
    args = ap.parse_args(argv)

    engine = Engine.open(Settings())
    convs = load_conversations(args.conversations, engine)
    top_k = engine.settings.top_k
    methods: dict[str, Method] = dict(BASELINES)
    methods[CHOSEN] = reading(conv.DEFAULT_READING)
    if args.grid:
        methods.update({name: reading(r) for name, r in GRID.items()})
    results, turn_log, played = {}, [], {}
    for name, m in methods.items():
        rows = play(engine, convs, m, top_k, turn_log if name == CHOSEN else None)
        results[name] = summarise(rows)
        if name in BY_SET:
            played[name] = rows
    if args.rewrites.exists():
        played[CEILING] = play(engine, rewritten(convs, args.rewrites), BASELINES["no history (floor)"], top_k)
        results[CEILING] = summarise(played[CEILING])
    first_rows = [*BASELINES, CHOSEN, CEILING]  # the grid's rows after these
    results = {name: results[name] for name in sorted(results, key=lambda n: n not in first_rows)}
    main_table = table(results) + "\n\n" + by_set(played)
    first = summarise(play(engine, convs, BASELINES["no history (floor)"], top_k))
    n, h, r, _ = first[("all", "first")]
    print(main_table)
    print(f"\nfirst turns (no history in any method): Hit@1 {h:.2f}, R@3 {r:.2f} (n={n})")
    if args.turns:
        for row in turn_log:
            mark = "✓" if row["hit1"] else ("·" if not row["answerable"] else "✗")
            print(f"{mark} {row['conv']} {row['turn']} {row['kind']:<12} {row['understood_as'] or '-'}\n      → {row['top']}")
    if args.latency:
        lat = turn_latency(engine, convs, top_k, reading=conv.DEFAULT_READING)
        print(f"\nturn latency (answer_turn, hybrid, the reading in service): p50 {lat['p50_ms']} ms, "
              f"p95 {lat['p95_ms']} ms over {lat['turns']} turns")
    if args.write_doc:
        write_doc(main_table, (n, h, r), " ".join(["benchmarks/conversation_bench.py", *(argv or sys.argv[1:])]))
    return 0


def write_doc(main_table: str, first: tuple, command: str) -> None:
    """Replace the generated block of docs/CONVERSATIONS.md, keeping the hand-written text around it."""
    path = ROOT / "docs" / "CONVERSATIONS.md"
    start, end = "<!-- bench:start -->", "<!-- bench:end -->"
    text = path.read_text(encoding="utf-8") if path.exists() else f"# Conversations\n\n{start}\n{end}\n"
    n, h, r = first
    block = (f"{start}\nMeasured {datetime.date.today().isoformat()} with `.venv/bin/python {command}` "
             f"(seed corpus, hybrid retriever, top_k from settings).\n\n{main_table}\n\n"
             f"First turns (no history in any method): Hit@1 {h:.2f}, R@3 {r:.2f} (n={n}).\n{end}")
    before, _, rest = text.partition(start)
    _, _, after = rest.partition(end)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(before + block + after, encoding="utf-8")


if __name__ == "__main__":
    raise SystemExit(main())

"""How far can the signals we have take follow-ups? A re-ranker learned over them, cross-validated by conversation.

    .venv/bin/pip install -e '.[bench]'   # scikit-learn, for the logistic fit
    .venv/bin/python benchmarks/conversation_ltr.py [--folds 6] [--conversations FILE]

The readings of qa.conversation were chosen by hand on the tune split, and on unseen conversations they
keep about half of their gain (docs/CONVERSATIONS.md). This asks whether the *signals* they combine could
do better with weights fitted to the data instead of chosen by hand: a logistic regression scores every
candidate sentence of a history-read follow-up from

- the hybrid score of the question read with history (HQE terms) and of the question alone, the question
  alone's cosine and its idf coverage;
- where the sentence lies: the previous answer itself, one or two sentences after it, one before it; an
  older answer of the topic, the sentence after or before one; the same article as an answer;
- whether it answered twice already, whether the question asks about the previous answer
  (qa.conversation.asks_about_previous) and whether it is elliptical ("Why?"), crossed with the position.

Training plays each conversation with its gold answers as the history (the sentence of each turn's first
quote); evaluation plays the held-out conversations with the model's own answers, as
benchmarks/conversation_bench.py does, so an early mistake costs what it would cost in use. Turns that the
reading starts a topic with (first turns, self-contained questions) are answered as the engine answers
them. Folds are whole conversations (``--folds``); the model is also fitted on c01–c36 and played on c37–c52, the
sixteen conversations written blind last.

It prints figures and never asserts them. Its last line is the fit on every conversation (``--c``, default
the cross-validated choice), written as a ranking profile with ``--out`` (the profile in service with its
``followup_model`` replaced; qa/profile.py), which ``benchmarks/tune_splits.py --set profile=<it>`` weighs;
there when the gold conversations or the features change.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import conversation_bench as cb  # noqa: E402
from qa import conversation as conv  # noqa: E402
from qa import rank  # noqa: E402
from qa.config import Settings  # noqa: E402
from qa.engine import Engine  # noqa: E402
from qa.profile import write_profile  # noqa: E402
from qa.types import Answer, AnswerSentence  # noqa: E402

C_GRID = (0.1, 1.0, 10.0, 100.0)
BLIND_FROM = 37  # c37–c52 were written blind after the readings were chosen, played once before any fit


def labels(answer: Answer, spans: list[tuple[str, int, int]]) -> np.ndarray:
    """1 for each candidate sentence (or one of its ``also_in`` places) that overlaps a gold quote."""
    return np.array([bool(cb.quotes_hit(s, spans)) for s in answer.sentences], dtype=np.float64)


def gold_turn(engine: Engine, turn: dict, understood_as: str | None) -> conv.Turn:
    """The turn as if we had answered with the sentence of its first gold quote (teacher forcing)."""
    index, sentences = engine.index, []
    for doc, start, end in turn["spans"][:1]:
        sid = next(i for i, s in enumerate(index.sentences) if s.doc_id == doc and s.start < end and start < s.end)
        sentences.append(AnswerSentence(index.sentences[sid].text, rank.citation(index, sid), 1.0))
    answer = Answer(turn["question"], bool(sentences), sentences, "hybrid", understood_as=understood_as)
    return conv.Turn.from_answer(turn["question"], answer)


def fit(engine: Engine, convs: list[dict], c: float) -> dict[str, float]:
    """Weights of conv.FOLLOWUP_FEATURES fitted on the candidates of every history-read answerable follow-up,
    each conversation played with its gold answers as the history."""
    from sklearn.linear_model import LogisticRegression

    depth = engine.settings.top_k + conv.DEFAULT_READING.extra_candidates
    xs, ys = [], []
    for cv in convs:
        history: list[conv.Turn] = []
        for turn in cv["turns"]:
            plain = engine.query(turn["question"], "hybrid")
            query = conv.understand(turn["question"], history, engine, mode="hybrid", plain=plain)
            if query.understood_as is not None and turn["answerable"]:
                answer = engine.answer(query, top_k=depth, mode="hybrid", abstain=False)
                xs.append(conv.followup_features(engine, plain, history, answer))
                ys.append(labels(answer, turn["spans"]))
            history.append(gold_turn(engine, turn, query.understood_as))
    model = LogisticRegression(C=c, max_iter=5000, class_weight="balanced").fit(np.vstack(xs), np.concatenate(ys))
    return {name: round(float(w), 3) for name, w in zip(conv.FOLLOWUP_FEATURES, model.coef_[0])}


def play(engine: Engine, convs: list[dict], reading: conv.Reading) -> list[dict]:
    return cb.play(engine, convs, cb.reading(reading), engine.settings.top_k)


def learned(weights: dict[str, float]) -> conv.Reading:
    return replace(conv.DEFAULT_READING, followup_model=weights)


def line(name: str, rows: list[dict]) -> str:
    f = [r for r in rows if r["kind"] == "followup" and r["answerable"]]
    t = [r for r in rows if r["kind"] == "topic_change" and r["answerable"]]
    h = sum(r["hit1"] for r in f)
    return (f"| {name} | {h}/{len(f)} = {h / len(f):.2f} | {sum(r['r3'] for r in f) / len(f):.2f} "
            f"| {sum(r['hit1'] for r in t)}/{len(t)} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--conversations", type=Path, default=ROOT / "eval" / "conversations.jsonl")
    ap.add_argument("--folds", type=int, default=6)
    ap.add_argument("--c", type=float, default=10.0, help="regularisation of the fit on all conversations")
    ap.add_argument("--out", type=Path, help="write that fit as a ranking profile here")
    args = ap.parse_args(argv)
    engine = Engine.open(Settings())
    convs = cb.load_conversations(args.conversations, engine)
    before = [c for c in convs if int(c["id"].lstrip("c")) < BLIND_FROM]
    blind = [c for c in convs if int(c["id"].lstrip("c")) >= BLIND_FROM]
    print("| method | follow-up Hit@1 | follow-up R@3 | topic change Hit@1 |\n|---|---|---|---|")
    print(line("floor (no history), all conversations", cb.play(engine, convs, cb.BASELINES["no history (floor)"],
                                                                  engine.settings.top_k)))
    print(line("the profile's followup_model, all conversations (in sample)", play(engine, convs, conv.DEFAULT_READING)))
    for c in C_GRID:
        rows = []
        for k in range(args.folds):
            held = [cv for i, cv in enumerate(convs) if i % args.folds == k]
            rows += play(engine, held, learned(fit(engine, [cv for cv in convs if cv not in held], c)))
        print(line(f"learned, C={c}, {args.folds}-fold by conversation", rows))
    if blind and before:
        for c in C_GRID:
            print(line(f"learned, C={c}, fitted on c01–c{BLIND_FROM - 1}, on c{BLIND_FROM}+", play(engine, blind,
                       learned(fit(engine, before, c)))))
    weights = fit(engine, convs, args.c)
    print(f"\nfollowup_model fitted on all {len(convs)} conversations (C={args.c}):\n{json.dumps(weights)}")
    if args.out:
        profile = engine.profile
        fitted = profile.updated({"followup_model": weights, "version": profile.version + 1,
                                  "provenance": {**profile.provenance, "followup_model": {
                                      "command": "python " + " ".join(sys.argv), "C": args.c,
                                      "conversations": len(convs), "date": datetime.date.today().isoformat()}}},
                                 name=args.out.stem)
        write_profile(fitted, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Fit the hybrid abstention model's weights and both thresholds on the tune splits and write them into a ranking
profile.

    PYTHONPATH=$PWD nice -n 10 .venv/bin/python benchmarks/fit_abstention.py --out /tmp/fitted.json
    PYTHONPATH=$PWD .venv/bin/python benchmarks/fit_abstention.py --squad 600 --coqa 40 --out /tmp/f.json  # quicker
    QA_READER_DIR=/work/qa-train/reader-l3/model .venv/bin/python benchmarks/fit_abstention.py --out /tmp/l3.json

The model: the tune splits asked as standalone questions (seeds tune, SQuAD-half tune, WikiQA dev). For each,
the hybrid ranking's best sentence gives the named features of ``qa.rank.DECISION_FEATURES`` (the ranking's
evidence and qa/answer_checks.py's checks of the sentence in its context) and the reader's logit of it
(clipped to ± the profile's bound); the label is whether the question is answerable. A logistic
regression (scikit-learn, the ``bench`` extra) on standardised features, each split weighing the same in the
fit (``--split-weight questions``: each question), L2 with ``C`` chosen by 5-fold cross-validated log-loss;
its weights are brought back to the features' own scale.

The thresholds, one criterion (:func:`choose_threshold`): of those at which at most 5 % of the answerable
questions are wrongly refused, the one deciding the most questions right. ``abstention.threshold`` on the
pooled standalone questions; ``abstention.threshold_within`` (a follow-up kept to its topic's documents, whose
confidence reads lower than a standalone question's) on the turns of CoQA's tune dialogues answered within
their topic, asked with the fitted model as `benchmarks/tune_splits.py` asks them. A refused turn leaves
the topic (the next turns are read without its answer), so which turns are answered within, and from what
history, depends on the threshold itself: the dialogues are asked again at each choice until it repeats
(at most ``WITHIN_PASSES`` times), starting from the standalone threshold.

Writes a ranking profile (``--out``; qa/profile.py): the profile read (``--profile``, default the one in
service) with the hybrid model by feature name, the reader's term (weight, centre 0) and both thresholds
replaced, and the command, date, data and per-split figures of the fit in its ``provenance``. Weigh it with
``benchmarks/tune_splits.py --set profile=<it>``; adopted, it replaces qa/profiles/default.json. Test splits
are never read.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.tune_splits import MAX_WRONGLY_REFUSED, TuneSplit, run_split, tune_splits
from qa import rank
from qa.config import Settings
from qa.conversation import Conversations, ConversationStore
from qa.engine import Engine
from qa.profile import Profile, load_profile, write_profile
from qa.types import Answer, Query

FIT_SPLITS = ("seeds", "squad", "wikiqa")
WITHIN_SPLIT = "coqa"  # the dialogues the within-conversation threshold is chosen on
WITHIN_PASSES = 3  # the dialogues asked at most this many times for that threshold to settle
READER = "reader"  # the name of the reader's logit among the fitted columns
COLUMNS = (*rank.DECISION_FEATURES, READER)


def open_engine(settings: Settings, split: TuneSplit, **update: Any) -> Engine:
    """An engine over ``split``'s own index (the seeds: the configured corpus's), with ``update`` to its settings."""
    if split.index_name is not None:
        update["index_name"] = split.index_name
    return Engine.open(settings.model_copy(update=update), documents=split.data.documents, layout=split.data.layout)


def collect(engine: Engine, split: TuneSplit) -> tuple[np.ndarray, np.ndarray]:
    """(features, answerable) of every question of ``split``: the columns are DECISION_FEATURES then the reader."""
    rows, labels = [], []
    for q in split.data.questions:
        ranked = engine.ranked(engine.query(q.question, "hybrid"), "hybrid")
        features = engine.decision_features(ranked, q.question)
        logit = 0.0
        if engine.reader is not None and len(ranked.scored.ids):
            read = engine.read(ranked.index, q.question, ranked.scored, depth=1)
            bound = engine.profile.abstention.reader_logit_bound
            logit = float(np.clip(read.reader[0], -bound, bound))
        rows.append([features[name] for name in rank.DECISION_FEATURES] + [logit])
        labels.append(q.answerable)
    return np.array(rows, dtype=np.float64), np.array(labels, dtype=bool)


def standalone_questions(settings: Settings, squad: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features, answerable, split name) of every question of the standalone tune splits."""
    columns, labels, split_of = [], [], []
    for split in tune_splits(settings, FIT_SPLITS, squad=squad):
        x, y = collect(open_engine(settings, split), split)
        columns.append(x)
        labels.append(y)
        split_of += [split.name] * len(y)
        print(f"{split.name}: {len(y)} questions ({int(y.sum())} answerable)", flush=True)
    return np.vstack(columns), np.concatenate(labels), np.array(split_of)


def split_weights(split_of: np.ndarray, how: str) -> np.ndarray:
    """Each question's weight in the fit: ``equal``, each split weighing the same; ``questions``, each question."""
    if how == "questions":
        return np.ones(len(split_of))
    names, counts = np.unique(split_of, return_counts=True)
    per_split = dict(zip(names.tolist(), counts.tolist()))
    return np.array([len(split_of) / (len(per_split) * per_split[s]) for s in split_of])


def fit(x: np.ndarray, y: np.ndarray, weight: np.ndarray, seed: int = 0) -> tuple[dict[str, float], float]:
    """Logistic regression on standardised columns, ``C`` by cross-validation; the weights on the raw scale."""
    from sklearn.linear_model import LogisticRegressionCV

    mean, std = x.mean(axis=0), x.std(axis=0)
    std[std == 0] = 1.0
    model = LogisticRegressionCV(Cs=[0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0], cv=5, scoring="neg_log_loss",
                                 max_iter=5000, random_state=seed)
    model.fit((x - mean) / std, y, sample_weight=weight)
    w = model.coef_[0] / std
    bias = float(model.intercept_[0] - np.dot(w, mean))
    return {"bias": round(bias, 4), **{n: round(float(v), 4) for n, v in zip(COLUMNS, w)}}, float(model.C_[0])


def probability(x: np.ndarray, weights: dict[str, float]) -> np.ndarray:
    """The fitted model's probability that each row's question is answerable."""
    z = weights["bias"] + x @ np.array([weights[n] for n in COLUMNS])
    return 1.0 / (1.0 + np.exp(-z))


def choose_threshold(p: np.ndarray, y: np.ndarray, max_wrongly: float = MAX_WRONGLY_REFUSED) -> float:
    """The threshold deciding the most questions right with at most ``max_wrongly`` of the answerable refused."""
    best, best_right = 0.5, -1
    for t in sorted(set(np.round(p, 6).tolist()) | {0.5}):
        if (p[y] < t).mean() <= max_wrongly:
            right = int((p[~y] < t).sum() + (p[y] >= t).sum())
            if right > best_right:
                best, best_right = float(t), right
    return best


def refusals(p: np.ndarray, y: np.ndarray, threshold: float) -> dict[str, Any]:
    """How many questions, and the shares of unanswerable ones refused and answerable ones wrongly refused."""
    share = lambda mask: round(float((p[mask] < threshold).mean()), 4) if mask.any() else None  # noqa: E731
    return {"questions": len(y), "answerable": int(y.sum()), "refused_unanswerable": share(~y),
            "wrongly_refused": share(y)}


class WithinLog:
    """An engine as its conversations see it, noting for each turn whether it was answered within its topic's
    documents: an answer does not say which of the two thresholds decided it."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.within: list[bool] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)

    def answer(self, query: Query, *, within: np.ndarray | None = None, **kwargs: Any) -> Answer:
        self.within.append(within is not None)
        return self.engine.answer(query, within=within, **kwargs)


def within_turns(engine: Engine, split: TuneSplit, store: ConversationStore) -> tuple[np.ndarray, np.ndarray]:
    """(confidence, answerable) of the turns of ``split``'s dialogues that ``engine`` answers within their topic,
    each read with the history its earlier turns left at the engine's thresholds."""
    log = WithinLog(engine)
    engine.conversations = Conversations(log, store)
    turns = run_split(split, engine)
    within = np.array(log.within, dtype=bool)
    p = np.array([t.confidence for t in turns], dtype=np.float64)
    y = np.array([t.answerable for t in turns], dtype=bool)
    return p[within], y[within]


def fit_threshold_within(settings: Settings, fitted: Profile, coqa: int | None) -> tuple[float, list[dict]]:
    """``abstention.threshold_within`` for ``fitted`` (:func:`choose_threshold` over CoQA's tune turns answered
    within their topic), asked again at each choice until it repeats; and each pass's figures."""
    split, = tune_splits(settings, (WITHIN_SPLIT,), coqa=coqa)
    threshold, passes = fitted.abstention.threshold, []
    with tempfile.TemporaryDirectory(prefix="qa-fit-") as data_dir:
        opened = open_engine(settings, split, data_dir=Path(data_dir))
        store = ConversationStore.from_settings(opened.settings)
        try:
            for _ in range(WITHIN_PASSES):
                asked = fitted.updated({"abstention.threshold_within": threshold})
                p, y = within_turns(opened.with_index(opened.index, profile=asked), split, store)
                chosen = choose_threshold(p, y)
                passes.append({"asked_at": threshold, "chosen": chosen, **refusals(p, y, chosen)})
                print(f"{WITHIN_SPLIT} within: {passes[-1]}", flush=True)
                if chosen == threshold:
                    break
                threshold = chosen
        finally:
            store.close()
    return threshold, passes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="the ranking profile to write")
    ap.add_argument("--profile", default=None, help="the profile whose other parts are kept (default: in service)")
    ap.add_argument("--squad", type=int, default=None, help="SQuAD tune questions, a fixed sample (default: all)")
    ap.add_argument("--coqa", type=int, default=None, help="CoQA tune dialogues, the first N (default: all)")
    ap.add_argument("--split-weight", choices=["equal", "questions"], default="equal")
    args = ap.parse_args()
    settings = Settings(**({"profile": args.profile} if args.profile else {}))
    profile = load_profile(settings.profile)
    x, y, split_of = standalone_questions(settings, args.squad)
    weights, c = fit(x, y, split_weights(split_of, args.split_weight))
    p = probability(x, weights)
    threshold = choose_threshold(p, y)
    figures = {name: refusals(p[split_of == name], y[split_of == name], threshold) for name in FIT_SPLITS}
    for name, figure in figures.items():
        print(f"{name}: {figure}", flush=True)
    reader_weight = weights.pop(READER)
    hybrid = {k: v for k, v in weights.items() if k == "bias" or v != 0.0}
    fitted = profile.updated({"abstention.models.hybrid": hybrid, "abstention.reader.weight": round(reader_weight, 4),
                              "abstention.reader.centre": 0.0, "abstention.threshold": round(threshold, 4)})
    within, passes = fit_threshold_within(settings, fitted, args.coqa)
    counts = {name: int((split_of == name).sum()) for name in FIT_SPLITS}
    fitted = fitted.updated({"abstention.threshold_within": within, "version": profile.version + 1,
                             "provenance": {**profile.provenance, "abstention": {
                                 "command": "python " + " ".join(sys.argv), "date": datetime.date.today().isoformat(),
                                 "splits": counts, "split_weight": args.split_weight, "C": c,
                                 "label": "the question is answerable", "figures_at_threshold": figures,
                                 "threshold_within": {"split": f"{WITHIN_SPLIT} tune", "dialogues": args.coqa or "all",
                                                      "passes": passes}}}},
                            name=args.out.stem)
    write_profile(fitted, args.out)
    print(json.dumps(hybrid, indent=1))
    a = fitted.abstention
    print(f"reader weight {a.reader_weight}, threshold {a.threshold}, threshold within {a.threshold_within}, C {c}")


if __name__ == "__main__":
    main()

"""Fit the hybrid abstention model's weights on the tune splits and write them into a ranking profile.

    PYTHONPATH=$PWD nice -n 10 .venv/bin/python benchmarks/fit_abstention.py --out /tmp/fitted.json
    PYTHONPATH=$PWD .venv/bin/python benchmarks/fit_abstention.py --squad 600 --out /tmp/fitted.json  # quicker
    QA_READER_DIR=/work/qa-train/reader-l3/model .venv/bin/python benchmarks/fit_abstention.py --out /tmp/l3.json

Questions: the tune splits asked as standalone questions (seeds tune, SQuAD-half tune, WikiQA dev; CoQA's turns
are asked within conversations, and `benchmarks/tune_splits.py` measures the result on them). For each, the
hybrid ranking's best sentence gives the named features of ``qa.rank.DECISION_FEATURES`` (the ranking's
evidence and qa/answer_checks.py's checks of the sentence in its context) and the reader's logit of it
(clipped to ± the profile's bound); the label is whether the question is answerable. A logistic
regression (scikit-learn, the ``bench`` extra) on standardised features, each split weighing the same in the
fit (``--split-weight questions``: each question), L2 with ``C`` chosen by 5-fold cross-validated log-loss;
its weights are brought back to the features' own scale. The threshold: of those at which at most 5 % of the
pooled answerable questions are wrongly refused, the one deciding the most pooled questions right.

Writes a ranking profile (``--out``; qa/profile.py): the profile read (``--profile``, default the one in
service) with the hybrid model by feature name, the reader's term (weight, centre 0) and the threshold
replaced, and the command, date, data and per-split figures of the fit in its ``provenance``. Weigh it with
``benchmarks/tune_splits.py --set profile=<it>``; adopted, it replaces qa/profiles/default.json. Test splits
are never read.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

import numpy as np

from benchmarks.tune_splits import MAX_WRONGLY_REFUSED, TuneSplit, tune_splits
from qa import rank
from qa.config import Settings
from qa.engine import Engine
from qa.profile import load_profile, write_profile

FIT_SPLITS = ("seeds", "squad", "wikiqa")
READER = "reader"  # the name of the reader's logit among the fitted columns


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
    names = [*rank.DECISION_FEATURES, READER]
    return {"bias": round(bias, 4), **{n: round(float(v), 4) for n, v in zip(names, w)}}, float(model.C_[0])


def log_odds(x: np.ndarray, weights: dict[str, float]) -> np.ndarray:
    names = [*rank.DECISION_FEATURES, READER]
    return weights["bias"] + x @ np.array([weights[n] for n in names])


def choose_threshold(p: np.ndarray, y: np.ndarray, max_wrongly: float = MAX_WRONGLY_REFUSED) -> float:
    """The threshold deciding the most questions right with at most ``max_wrongly`` of the answerable refused."""
    best, best_right = 0.5, -1
    for t in sorted(set(np.round(p, 6).tolist()) | {0.5}):
        if (p[y] < t).mean() <= max_wrongly:
            right = int((p[~y] < t).sum() + (p[y] >= t).sum())
            if right > best_right:
                best, best_right = float(t), right
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="the ranking profile to write")
    ap.add_argument("--profile", default=None, help="the profile whose other parts are kept (default: in service)")
    ap.add_argument("--squad", type=int, default=None, help="SQuAD tune questions, a fixed sample (default: all)")
    ap.add_argument("--split-weight", choices=["equal", "questions"], default="equal")
    args = ap.parse_args()
    settings = Settings(**({"profile": args.profile} if args.profile else {}))
    profile = load_profile(settings.profile)
    columns, labels, split_of = [], [], []
    for split in tune_splits(settings, FIT_SPLITS, squad=args.squad):
        update = {} if split.index_name is None else {"index_name": split.index_name}
        engine = Engine.open(settings.model_copy(update=update), documents=split.data.documents,
                             layout=split.data.layout)
        x, y = collect(engine, split)
        columns.append(x)
        labels.append(y)
        split_of += [split.name] * len(y)
        print(f"{split.name}: {len(y)} questions ({int(y.sum())} answerable)", flush=True)
    x, y, split_of = np.vstack(columns), np.concatenate(labels), np.array(split_of)
    counts = {name: int((split_of == name).sum()) for name in FIT_SPLITS}
    weight = (np.array([1.0 / counts[s] for s in split_of]) * len(y) / len(counts) if args.split_weight == "equal"
              else np.ones(len(y)))
    weights, c = fit(x, y, weight)
    p = 1.0 / (1.0 + np.exp(-log_odds(x, weights)))
    threshold = choose_threshold(p, y)
    figures = {}
    for name in FIT_SPLITS:
        mask = split_of == name
        ans, un = mask & y, mask & ~y
        figures[name] = {"questions": int(mask.sum()), "answerable": int(ans.sum()),
                         "refused_unanswerable": round(float((p[un] < threshold).mean()), 4) if un.any() else None,
                         "wrongly_refused": round(float((p[ans] < threshold).mean()), 4) if ans.any() else None}
        print(f"{name}: {figures[name]}", flush=True)
    reader_weight = weights.pop(READER)
    hybrid = {k: v for k, v in weights.items() if k == "bias" or v != 0.0}
    fitted = profile.updated({"abstention.models.hybrid": hybrid, "abstention.reader.weight": round(reader_weight, 4),
                              "abstention.reader.centre": 0.0, "abstention.threshold": round(threshold, 4),
                              "version": profile.version + 1,
                              "provenance": {**profile.provenance, "abstention": {
                                  "command": "python " + " ".join(sys.argv), "date": datetime.date.today().isoformat(),
                                  "splits": counts, "split_weight": args.split_weight, "C": c,
                                  "label": "the question is answerable", "figures_at_threshold": figures}}},
                             name=args.out.stem)
    write_profile(fitted, args.out)
    print(json.dumps(hybrid, indent=1))
    print(f"reader weight {fitted.abstention.reader_weight}, threshold {fitted.abstention.threshold}, C {c}")


if __name__ == "__main__":
    main()

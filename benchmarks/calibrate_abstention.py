"""Fit the abstention model (qa/rank.py: FEATURES → logistic) on the *tune* splits, check it on *test*.

    .venv/bin/python benchmarks/calibrate_abstention.py [--squad-limit 3000]

Training data: the seed gold set's tune split (answerable vs unanswerable), optionally (``--train both``)
with SQuAD 2.0's tune split. SQuAD's unanswerable questions are written against the very paragraph they
sit next to and share its words, so they look answerable to every feature here; fitted on them, the
model learns little and forgets what off-corpus questions look like (docs/RETRIEVAL.md has both fits).
Classes and corpora are weighted to count alike. Prints the coefficients to paste into qa/config.py
(``abstain_model``) and, for the threshold 0.5 and a few others, refusal rates on each test split.
"""

from __future__ import annotations

import argparse
from functools import lru_cache

import numpy as np

from qa import rank
from qa.config import Settings
from qa.datasets import Dataset, load_gold, load_squad
from qa.engine import Engine
from qa.ingest import load_corpus


def features(engine: Engine, data: Dataset, mode: str) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for q in data.questions:
        scored = engine.score(engine.query(q.question, mode), mode)
        xs.append(rank.abstention_features(scored))
        ys.append(int(q.answerable))
    return np.array(xs), np.array(ys)


def rates(p: np.ndarray, y: np.ndarray, threshold: float) -> str:
    refused = p < threshold
    un = y == 0
    return (f"refused unanswerable {refused[un].mean():.3f} (n={un.sum()}), "
            f"wrongly refused answerable {refused[~un].mean():.3f} (n={(~un).sum()})")


def main() -> None:
    from sklearn.linear_model import LogisticRegression

    ap = argparse.ArgumentParser()
    ap.add_argument("--squad-limit", type=int, default=3000, help="SQuAD questions per split")
    ap.add_argument("--train", default="seeds", choices=["seeds", "both"],
                    help="fit on the seed tune split only, or on it and SQuAD's tune split")
    ap.add_argument("--C", type=float, default=1.0, help="inverse regularisation strength")
    args = ap.parse_args()
    base = Settings()
    seeds = load_gold(base.corpus_dir.parent / "eval" / "gold.jsonl", load_corpus(base.corpus_dir))
    squad = load_squad(base.shared_data_dir)
    engines = {
        "seeds": Engine.open(base, documents=seeds.documents),
        "squad": Engine.open(base.model_copy(update={"index_name": "squad-v2-dev"}), documents=squad.documents,
                             layout=False),
    }
    for e in engines.values():
        e.embed_query = lru_cache(maxsize=None)(e.embed_query)
    splits = {}
    for name, data in (("seeds", seeds), ("squad", squad)):
        for split in ("tune", "test"):
            d = data.select(split)
            d.questions = d.questions[: args.squad_limit]
            splits[name, split] = d
    coefs = {}
    for mode in ("hybrid", "dense", "bm25"):
        fx = {key: features(engines[key[0]], d, mode) for key, d in splits.items()}
        parts = [fx["seeds", "tune"]] + ([fx["squad", "tune"]] if args.train == "both" else [])
        x = np.vstack([p[0] for p in parts])
        y = np.concatenate([p[1] for p in parts])
        # Each corpus counts alike, and within it both classes count alike.
        w = np.concatenate([np.where(p[1] == 1, 0.5 / max(p[1].sum(), 1), 0.5 / max((1 - p[1]).sum(), 1)) for p in parts])
        model = LogisticRegression(C=args.C, max_iter=1000).fit(x, y, sample_weight=w * len(y))
        coefs[mode] = [round(float(model.intercept_[0]), 3)] + [round(float(c), 3) for c in model.coef_[0]]
        print(f"\n{mode}: {dict(zip(('bias', *rank.FEATURES), coefs[mode]))}")
        for key in splits:
            p = model.predict_proba(fx[key][0])[:, 1]
            for t in (0.3, 0.4, 0.5, 0.6):
                print(f"  {key[0]:5s} {key[1]:4s} t={t}: {rates(p, fx[key][1], t)}")
    print("\nabstain_model =", coefs)


if __name__ == "__main__":
    main()

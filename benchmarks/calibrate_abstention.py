"""Fit the abstention model (qa/rank.py: FEATURES → logistic) on the *tune* splits, check it on *test*.

    .venv/bin/python benchmarks/calibrate_abstention.py [--squad-limit 3000]

Training data: the seed gold set's tune split (answerable vs unanswerable) plus SQuAD 2.0 tune-split
questions (answerable vs unanswerable), each run against its own index. SQuAD's unanswerable questions
are written against the very paragraph they sit next to, so they teach the model that a good lexical
match is not enough; the seed set's teach it what off-corpus questions look like. Seed questions are
weighted up so the two corpora count alike. Prints the coefficients to paste into qa/config.py
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
        e.encode_query = lru_cache(maxsize=None)(e.encode_query)
    splits = {}
    for name, data in (("seeds", seeds), ("squad", squad)):
        for split in ("tune", "test"):
            d = data.select(split)
            d.questions = d.questions[: args.squad_limit]
            splits[name, split] = d
    coefs = {}
    for mode in ("hybrid", "dense", "bm25"):
        fx = {key: features(engines[key[0]], d, mode) for key, d in splits.items()}
        x = np.vstack([fx["seeds", "tune"][0], fx["squad", "tune"][0]])
        y = np.concatenate([fx["seeds", "tune"][1], fx["squad", "tune"][1]])
        w = np.concatenate([np.full(len(fx["seeds", "tune"][1]), len(fx["squad", "tune"][1]) / len(fx["seeds", "tune"][1])),
                            np.ones(len(fx["squad", "tune"][1]))])
        model = LogisticRegression(C=1.0, max_iter=1000).fit(x, y, sample_weight=w)
        coefs[mode] = [round(float(model.intercept_[0]), 3)] + [round(float(c), 3) for c in model.coef_[0]]
        print(f"\n{mode}: {dict(zip(('bias', *rank.FEATURES), coefs[mode]))}")
        for key in splits:
            p = model.predict_proba(fx[key][0])[:, 1]
            for t in (0.3, 0.4, 0.5, 0.6):
                print(f"  {key[0]:5s} {key[1]:4s} t={t}: {rates(p, fx[key][1], t)}")
    print("\nabstain_model =", coefs)


if __name__ == "__main__":
    main()

"""Grid search of the sentence-scoring weights on the *tune* split of a gold set (never on test).

    .venv/bin/python benchmarks/tune_weights.py --dataset seeds --mode hybrid

Prints the best settings by MRR@10 (ties: Hit@1) and how the test split scores with them, so the choice
can be checked on questions it was not fitted on. Query vectors are cached: only the ranking is re-run.
"""

from __future__ import annotations

import argparse
import itertools
from functools import lru_cache

from qa.config import Settings
from qa.datasets import load_gold, load_squad
from qa.engine import Engine
from qa.evaluate import EngineRunner, run, summarize
from qa.ingest import load_corpus

GRID = {
    "w_dense": [1.0],
    "w_lexical": [0.3, 0.6, 1.0],
    "w_passage": [0.0, 0.2, 0.4, 0.8],
    "w_answer_type": [0.0, 0.15],
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="seeds", choices=["seeds", "squad-v2-dev"])
    ap.add_argument("--mode", default="hybrid")
    ap.add_argument("--limit", type=int, default=None, help="questions per split (squad is large)")
    args = ap.parse_args()
    settings = Settings()
    if args.dataset == "seeds":
        data = load_gold(settings.corpus_dir.parent / "eval" / "gold.jsonl", load_corpus(settings.corpus_dir))
    else:
        data = load_squad(settings.shared_data_dir)
        settings = settings.model_copy(update={"index_name": "squad-v2-dev"})
    engine = Engine.open(settings, documents=data.documents, layout=data.layout)
    engine.embed_query = lru_cache(maxsize=None)(engine.embed_query)
    tune, test = data.select("tune"), data.select("test")
    if args.limit:
        tune.questions, test.questions = tune.questions[: args.limit], test.questions[: args.limit]
    runner = EngineRunner(engine)
    rows = []
    for values in itertools.product(*GRID.values()):
        engine.settings = settings.model_copy(update=dict(zip(GRID, values)))
        m = summarize(run(tune, runner, args.mode))["overall"]
        rows.append((m["MRR@10"], m["Hit@1"], dict(zip(GRID, values))))
    rows.sort(key=lambda r: (r[0], r[1]), reverse=True)
    for mrr, hit, cfg in rows[:8]:
        print(f"tune MRR@10 {mrr:.3f} Hit@1 {hit:.3f}  {cfg}")
    engine.settings = settings.model_copy(update=rows[0][2])
    print("test with the best:", summarize(run(test, runner, args.mode))["overall"])
    engine.settings = settings
    print("test with current defaults:", summarize(run(test, runner, args.mode))["overall"])


if __name__ == "__main__":
    main()

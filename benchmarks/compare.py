"""Quick A/B of ranking settings on the tune splits (seeds gold and a SQuAD sample), hybrid retriever.

    .venv/bin/python benchmarks/compare.py --squad 800 'sentence_weights.hybrid.lexical=0.5' \
        'sentence_weights.hybrid.lexical=0.3,sentence_weights.hybrid.context=0.5'

Each argument is a set of changes to the ranking profile (qa/profile.py: paths into it, comma-separated); the
first row is the profile in service. Query vectors are
cached, so variants differ only in ranking work. Use `qa eval` for the figures that get reported.
"""

from __future__ import annotations

import argparse
from functools import lru_cache

from qa.config import Settings
from qa.datasets import load_gold, load_squad
from qa.engine import Engine
from qa.evaluate import EngineRunner, run, summarize
from qa.ingest import load_corpus


def parse(spec: str) -> dict:
    out = {}
    for part in filter(None, spec.split(",")):
        k, v = part.split("=")
        out[k] = v if v.isalpha() else float(v) if "." in v else int(v)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--squad", type=int, default=800, help="SQuAD tune questions (0: skip)")
    ap.add_argument("--split", default="tune")
    ap.add_argument("--mode", default="hybrid")
    ap.add_argument("variants", nargs="*")
    args = ap.parse_args()
    base = Settings()
    sets = [("seeds", load_gold(base.corpus_dir.parent / "eval" / "gold.jsonl", load_corpus(base.corpus_dir)), base)]
    if args.squad:
        sq = load_squad(base.shared_data_dir)
        sets.append(("squad", sq, base.model_copy(update={"index_name": "squad-v2-dev"})))
    for name, data, settings in sets:
        engine = Engine.open(settings, documents=data.documents, layout=data.layout)
        engine.embed_query = lru_cache(maxsize=None)(engine.embed_query)
        d = data.select(args.split)
        if name == "squad":
            d.questions = d.questions[: args.squad]
        profile = engine.profile
        for spec in ["", *args.variants]:
            engine.profile = profile.updated(parse(spec))
            m = summarize(run(d, EngineRunner(engine), args.mode))["overall"]
            print(f"{name:5s} {spec or 'defaults':45s} Hit@1 {m['Hit@1']:.3f} R@3 {m['Recall@3']:.3f} "
                  f"S@3 {m['Success@3']:.3f} MRR {m['MRR@10']:.3f}", flush=True)


if __name__ == "__main__":
    main()

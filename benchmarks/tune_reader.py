"""Choose the reader's depth, weight and abstention term on the tune splits (seeds, SQuAD-half).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/tune_reader.py [--reader models/reader] \
        [--split tune] [--squad 1500]

For every question the hybrid ranker's candidates are scored once (reader off) and the reader reads the
first ``max(DEPTHS)`` of them; each (depth, weight) of the profile's ``reader`` is then a re-ordering of those arrays
(:func:`qa.rank.with_reader`). Sentence-level Hit@1 / MRR@10 (a near-duplicate grouped by the engine counts
as its own rank here, so the figures sit slightly under ``qa eval``'s). Then, at the chosen depth and weight,
the profile's abstention reader term (weight, centre): unanswerable questions refused against answerable
ones wrongly refused. Run with ``--split test`` only to report, never to choose.
"""

from __future__ import annotations

import argparse
import random
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from qa import answer_checks, rank
from qa.config import Settings
from qa.datasets import GoldQuestion, load_gold, load_squad
from qa.engine import Engine
from qa.ingest import load_corpus
from qa.profile import Profile, load_profile
from qa.reader import load_reader

DEPTHS = (5, 10, 15, 20)
WEIGHTS = (0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0)
ABSTAIN_WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0)
ABSTAIN_CENTRES = (-4.0, -3.0, -2.0, -1.0, 0.0, 1.0)


@dataclass
class Read:
    """One question's ranker output, the reader's logits of its first sentences, and which are gold."""

    question: GoldQuestion
    index: object  # the CorpusIndex the ids are of
    scored: rank.ScoredSentences
    logits: np.ndarray
    gold: np.ndarray  # per ranked sentence: overlaps an evidence span
    reader_ms: float


def read_all(engine: Engine, reader, questions: list[GoldQuestion], depth: int) -> list[Read]:
    out = []
    for q in questions:
        scored = engine.score(engine.query(q.question, "hybrid"), "hybrid")
        sentences = [engine.index.sentences[i] for i in scored.ids.tolist()]
        t0 = time.perf_counter()
        logits = reader.score(q.question, [s.text for s in sentences[:depth]])
        ms = (time.perf_counter() - t0) * 1000
        gold = np.array([any(sp.overlaps(s.doc_id, s.start, s.end) for sp in q.evidence) for s in sentences])
        out.append(Read(q, engine.index, scored, logits, gold, ms))
    return out


def ranking(reads: list[Read], depth: int, weight: float) -> tuple[float, float]:
    """Sentence-level Hit@1 and MRR@10 over the answerable questions."""
    hits, rr = [], []
    for r in reads:
        if not r.question.answerable:
            continue
        d = min(depth, len(r.logits))
        scores = r.scored.scores.copy()
        scores[:d] += weight * r.logits[:d]
        order = np.concatenate([np.argsort(-scores[:d], kind="stable"), np.arange(d, len(scores))])
        good = np.flatnonzero(r.gold[order][:10])
        hits.append(bool(len(good)) and good[0] == 0)
        rr.append(1.0 / (good[0] + 1) if len(good) else 0.0)
    return float(np.mean(hits)), float(np.mean(rr))


def abstention(reads: list[Read], profile: Profile, depth: int, weight: float,
               term: tuple[float, float]) -> tuple[float, float]:
    """(unanswerable refused, answerable wrongly refused) with the reader's abstention term ``term``
    (weight, centre) in ``profile``'s model."""
    a = replace(profile.abstention, reader_weight=term[0], reader_centre=term[1])
    refused_un, refused_ans = [], []
    for r in reads:
        scored = rank.with_reader(r.scored, r.logits[:depth], weight)
        best = int(scored.ids[0]) if len(scored.ids) else None
        features = {**rank.abstention_features(scored, a.token_match_centre),
                    **answer_checks.check_best(r.index, r.question.question, best)}
        conf = rank.confidence(rank.log_odds(features, a.models["hybrid"]), scored, a)
        (refused_ans if r.question.answerable else refused_un).append(conf < a.threshold)
    return float(np.mean(refused_un)) if refused_un else 0.0, float(np.mean(refused_ans)) if refused_ans else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reader", type=Path, default=Settings().reader_dir)
    ap.add_argument("--split", default="tune", choices=["tune", "test"])
    ap.add_argument("--squad", type=int, default=1500, help="SQuAD-half questions of the split (sampled)")
    args = ap.parse_args()
    settings = Settings()
    profile = load_profile(settings.profile)
    alone = profile.updated({"reader.depth": 0})  # the ranker alone; the reader is applied here
    reader = load_reader(args.reader)
    seeds = load_gold(settings.corpus_dir.parent / "eval" / "gold.jsonl", load_corpus(settings.corpus_dir))
    squad = load_squad(settings.shared_data_dir)
    squad_questions = [q for q in squad.questions if q.split == args.split]
    squad_questions = random.Random(0).sample(squad_questions, min(args.squad, len(squad_questions)))
    squad_engine = Engine.open(settings.model_copy(update={"index_name": "squad-v2-dev"}),
                               documents=squad.documents, layout=False)
    squad_engine, seed_engine = (e.with_index(e.index, profile=alone) for e in (squad_engine, Engine.open(settings)))
    sets = {"seeds": read_all(seed_engine, reader, [q for q in seeds.questions if q.split == args.split],
                              max(DEPTHS)),
            "squad": read_all(squad_engine, reader, squad_questions, max(DEPTHS))}
    for name, reads in sets.items():
        ms = [r.reader_ms for r in reads]
        print(f"{name}: {len(reads)} questions; reader {np.median(ms):.1f} ms median per question "
              f"({max(DEPTHS)} sentences)")
    print("\n| depth | reader weight | seeds Hit@1 | seeds MRR@10 | SQuAD Hit@1 | SQuAD MRR@10 |\n|---|---|---|---|---|---|")
    best = (-1.0, 0, 0.0)
    for depth in DEPTHS:
        for weight in WEIGHTS:
            (sh, sm), (qh, qm) = ranking(sets["seeds"], depth, weight), ranking(sets["squad"], depth, weight)
            print(f"| {depth} | {weight} | {sh:.3f} | {sm:.3f} | {qh:.3f} | {qm:.3f} |", flush=True)
            if (sh + qh) / 2 > best[0] + 1e-9:
                best = ((sh + qh) / 2, depth, weight)
    _, depth, weight = best
    print(f"\nbest by mean Hit@1: depth {depth}, reader weight {weight}")
    print("\n| abstain weight | centre | seeds refused unanswerable | seeds wrongly refused | SQuAD refused "
          "unanswerable | SQuAD wrongly refused |\n|---|---|---|---|---|---|")
    for aw in ABSTAIN_WEIGHTS:
        for centre in ABSTAIN_CENTRES if aw else (0.0,):
            (su, sa), (qu, qa) = (abstention(sets[k], profile, depth, weight, (aw, centre)) for k in ("seeds", "squad"))
            print(f"| {aw} | {centre} | {su:.3f} | {sa:.3f} | {qu:.3f} | {qa:.3f} |", flush=True)


if __name__ == "__main__":
    main()

"""A configuration against the baseline on all the tune splits together, counted in questions: the evidence of
the adoption rule (docs/QUALITY.md).

    PYTHONPATH=$PWD nice -n 10 .venv/bin/python benchmarks/tune_splits.py --set reader.weight=0.1 --set reader.depth=5
    PYTHONPATH=$PWD nice -n 10 .venv/bin/python benchmarks/tune_splits.py --config variant.json --json /tmp/ab.json
    PYTHONPATH=$PWD .venv/bin/python benchmarks/tune_splits.py --set abstention.threshold=0.6 --squad 500 --coqa 40
    PYTHONPATH=$PWD .venv/bin/python benchmarks/tune_splits.py --set profile=/tmp/fitted.json --set reader_dir=/tmp/r
    PYTHONPATH=$PWD .venv/bin/python benchmarks/tune_splits.py --choose-threshold     # the threshold in use

The tune splits: the seed gold set's tune split, SQuAD-half's tune split, CoQA's tune dialogues (asked turn by
turn as conversations, openers and follow-ups, as `qa eval --dataset coqa --split tune` asks them) and
WikiQA's dev file (every question asked of all its pages, `qa eval --dataset wikiqa --split tune`); hybrid
retriever. Test splits are never read here.

A configuration is a set of overrides (``--set name=value``, the value read as JSON when it parses, and/or
``--config`` a JSON object of them): a name with a dot is a path into the ranking profile (``reader.weight``,
``sentence_weights.hybrid.token``), any other a ``Settings`` field (``reader_dir``, ``profile``, ``model_path``;
``qa.profile.configured``). The baseline is the default ``Settings`` and profile (with ``--baseline-set`` /
``--baseline-config`` another). Settings that shape the index (the encoder, passages) get an index of their own
under ``--variant-index-root``.

Every question (a CoQA turn is a question) scores a point for Hit@1 (answerable ones) and a point for its
decision (answered when answerable, refused when not), at each configuration's own threshold. A question is
won when the configuration scores more points on it than the baseline, lost when fewer, tied otherwise. The
table gives won / lost / tied per split and in total, with Hit@1, Success@3, MRR@10, unanswerable refused and
answerable wrongly refused of both. The rule: adopt when the total is won (more questions won than lost);
each split is reported and none vetoes alone. The sign test's p-value says how far the total is from a coin
toss.

``--choose-threshold`` chooses the confidence threshold of the configuration on the pooled tune questions:
of the thresholds at which at most 5 % of the answerable questions are wrongly refused, the one deciding the
most questions right (unanswerable refused + answerable answered).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import tempfile
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from qa import dialogue_eval, evaluate, refusal
from qa.config import PROJECT_ROOT, Settings
from qa.datasets import COQA_FILE, Dataset, load_coqa, load_gold, load_squad, load_wikiqa_pages
from qa.engine import Engine, build_spec
from qa.profile import configured
from qa.ingest import load_corpus

SPLITS = ("seeds", "squad", "coqa", "wikiqa")
MODE = "hybrid"
MAX_WRONGLY_REFUSED = 0.05  # --choose-threshold: answerable questions wrongly refused, at most (pooled)


@dataclass(frozen=True)
class Outcome:
    """What one question (or CoQA turn) got under one configuration."""

    qid: str
    answerable: bool
    hit1: bool
    success3: bool
    rr: float  # reciprocal rank of the first answer covering the evidence (0: none in 10)
    answered: bool
    confidence: float

    @property
    def decided_right(self) -> bool:
        return self.answered == self.answerable

    @property
    def points(self) -> int:
        """Hit@1 (answerable questions) and the decision, each a point."""
        return int(self.answerable and self.hit1) + int(self.decided_right)


def outcome(result: evaluate.Result) -> Outcome:
    ranks = result.covered.values()
    first = min(ranks, default=0)
    return Outcome(result.qid, result.answerable, 1 in ranks, any(r <= 3 for r in ranks),
                   1.0 / first if first else 0.0, result.answered, result.confidence)


@dataclass
class TuneSplit:
    """One tune split: its questions (or dialogues), its documents and the name of its index."""

    name: str
    data: Dataset
    index_name: str | None  # None: the configured corpus's index (the seeds)
    conversational: bool = False


def tune_splits(settings: Settings, names=SPLITS, squad: int | None = None, coqa: int | None = None,
                wikiqa: int | None = None) -> list[TuneSplit]:
    """The tune splits named, with at most ``squad`` SQuAD questions (a fixed sample), ``coqa`` dialogues and
    ``wikiqa`` questions (None: all)."""
    shared = settings.shared_data_dir
    out = []
    for name in names:
        if name == "seeds":
            data = load_gold(PROJECT_ROOT / "eval" / "gold.jsonl", load_corpus(settings.corpus_dir)).select("tune")
            out.append(TuneSplit(name, data, None))
        elif name == "squad":
            data = load_squad(shared).select("tune")
            if squad:
                data.questions = random.Random(0).sample(data.questions, min(squad, len(data.questions)))
            out.append(TuneSplit(name, data, "squad-v2-dev"))
        elif name == "coqa":
            data = load_coqa(shared / COQA_FILE, settings.index_root / "_datasets" / "coqa").select("tune")
            out.append(TuneSplit(name, data.first_conversations(coqa) if coqa else data, "coqa", True))
        elif name == "wikiqa":
            data = load_wikiqa_pages(shared, "dev")
            data.questions = data.questions[:wikiqa] if wikiqa else data.questions
            out.append(TuneSplit(name, data, "wikiqa-dev"))
        else:
            raise ValueError(f"unknown split {name!r}: choose from {', '.join(SPLITS)}")
    return out


class Engines:
    """The baseline's and the configuration's engine for each split: one index per split (and per encoder),
    the query vectors computed once where both use the same encoder."""

    def __init__(self, base: Settings, variant: Settings, variant_index_root: Path, store: Path):
        self.base, self.variant, self.variant_root, self.store = base, variant, variant_index_root, store

    def pair(self, split: TuneSplit) -> tuple[Engine, Engine]:
        def settings_of(s: Settings, **more) -> Settings:
            update = {"data_dir": self.store, **more}
            if split.index_name is not None:
                update["index_name"] = split.index_name
            return s.model_copy(update=update)

        docs, layout = split.data.documents, split.data.layout
        base = Engine.open(settings_of(self.base), documents=docs, layout=layout)
        if build_spec(self.variant, layout=layout) == build_spec(self.base, layout=layout):
            variant = base.with_index(base.index, settings_of(self.variant))
            shared = lru_cache(maxsize=None)(base.embed_query)  # same encoder: one model run per question
            base.embed_query = variant.embed_query = shared
        else:  # another encoder or passage layout: an index of its own
            variant = Engine.open(settings_of(self.variant, index_root=self.variant_root), documents=docs,
                                  layout=layout)
        return base, variant


def run_split(split: TuneSplit, engine: Engine) -> list[Outcome]:
    """Every question of ``split`` asked of ``engine`` as ``qa eval`` asks it (``abstain=False``: the exact
    confidence, the decision at the engine's threshold)."""
    if split.conversational:
        turns = dialogue_eval.ask_dialogues(split.data, engine, "conversation", MODE)
        return [outcome(t.judged) for t in turns]
    return [outcome(r) for r in evaluate.run(split.data, evaluate.EngineRunner(engine), MODE)]


def metrics(outcomes: list[Outcome]) -> dict[str, float]:
    ans = [o for o in outcomes if o.answerable]
    un = [o for o in outcomes if not o.answerable]
    mean = lambda xs: round(float(np.mean(xs)), 4) if xs else 0.0  # noqa: E731
    return {"questions": len(outcomes), "answerable": len(ans), "unanswerable": len(un),
            "Hit@1": mean([o.hit1 for o in ans]), "Success@3": mean([o.success3 for o in ans]),
            "MRR@10": mean([o.rr for o in ans]), "refused_unanswerable": mean([not o.answered for o in un]),
            "wrongly_refused": mean([not o.answered for o in ans])}


def compare(base: list[Outcome], variant: list[Outcome]) -> dict[str, int]:
    """Questions won, lost and tied (points), and the same for Hit@1 and for the decision alone."""
    by_id = {o.qid: o for o in base}
    out = dict.fromkeys(("won", "lost", "tied", "hit1_won", "hit1_lost", "decision_won", "decision_lost"), 0)
    for v in variant:
        b = by_id[v.qid]
        delta = v.points - b.points
        out["won" if delta > 0 else "lost" if delta < 0 else "tied"] += 1
        if v.answerable and v.hit1 != b.hit1:
            out["hit1_won" if v.hit1 else "hit1_lost"] += 1
        if v.decided_right != b.decided_right:
            out["decision_won" if v.decided_right else "decision_lost"] += 1
    return out


def sign_test(won: int, lost: int) -> float:
    """Two-sided sign test: the chance of a split at least this uneven if each changed question were a coin toss."""
    n = won + lost
    if not n:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(won, lost) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def choose_threshold(outcomes: list[Outcome], max_wrongly: float = MAX_WRONGLY_REFUSED) -> dict:
    """The threshold deciding the most pooled questions right with at most ``max_wrongly`` of the answerable
    ones wrongly refused, and the pooled curve."""
    ans = np.array([o.confidence for o in outcomes if o.answerable])
    un = np.array([o.confidence for o in outcomes if not o.answerable])
    candidates = sorted({*refusal.CURVE_THRESHOLDS, *np.round(np.quantile(ans, np.linspace(0, 0.1, 41)), 6).tolist()})
    best = None
    for t in candidates:
        wrongly = float((ans < t).mean())
        right = int((un < t).sum() + (ans >= t).sum())
        if wrongly <= max_wrongly and (best is None or right > best["right"]):
            best = {"threshold": float(t), "right": right, "refused_unanswerable": round(float((un < t).mean()), 4),
                    "wrongly_refused": round(wrongly, 4)}
    return {"chosen": best, "curve": refusal.curve(ans.tolist(), un.tolist())}


def parse_overrides(pairs: list[str], config: Path | None) -> dict:
    """``name=value`` pairs (a value is JSON when it parses, else a string) over a JSON object file."""
    out = json.loads(config.read_text(encoding="utf-8")) if config else {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        try:
            out[name.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[name.strip()] = value
    return out


def table(rows: dict[str, dict]) -> str:
    head = ("| split | questions | won | lost | tied | Hit@1 won / lost | decisions won / lost | Hit@1 | Success@3 "
            "| MRR@10 | unanswerable refused | answerable wrongly refused |")
    lines = [head, "|---" * 12 + "|"]
    for name, r in rows.items():
        b, v, c = r["base"], r["variant"], r["compare"]
        cell = lambda k: f"{b[k]:.3f} → {v[k]:.3f}"  # noqa: E731
        lines.append(f"| {name} | {v['questions']} ({v['answerable']} + {v['unanswerable']}) | {c['won']} | {c['lost']} "
                     f"| {c['tied']} | {c['hit1_won']} / {c['hit1_lost']} | {c['decision_won']} / {c['decision_lost']} "
                     f"| {cell('Hit@1')} | {cell('Success@3')} | {cell('MRR@10')} | {cell('refused_unanswerable')} "
                     f"| {cell('wrongly_refused')} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--set", dest="sets", action="append", default=[],
                    help="name=value: a profile path (with a dot) or a Settings field")
    ap.add_argument("--config", type=Path, help="a JSON object of such overrides")
    ap.add_argument("--baseline-set", action="append", default=[], help="an override of the baseline")
    ap.add_argument("--baseline-config", type=Path)
    ap.add_argument("--splits", default=",".join(SPLITS), help="comma-separated, of " + ", ".join(SPLITS))
    ap.add_argument("--squad", type=int, default=None, help="SQuAD tune questions, a fixed sample (default: all)")
    ap.add_argument("--coqa", type=int, default=None, help="CoQA tune dialogues (default: all)")
    ap.add_argument("--wikiqa", type=int, default=None, help="WikiQA dev questions (default: all)")
    ap.add_argument("--variant-index-root", type=Path, default=None,
                    help="indexes of a configuration that shapes them (default: <index root>/_variant)")
    ap.add_argument("--choose-threshold", action="store_true", help="choose the configuration's threshold")
    ap.add_argument("--json", type=Path, help="write the figures (and every question's outcome) here")
    args = ap.parse_args()
    overrides = parse_overrides(args.sets, args.config)
    baseline = parse_overrides(args.baseline_set, args.baseline_config)
    rows, outcomes = {}, {}
    with tempfile.TemporaryDirectory(prefix="qa-tune-") as store:
        base = configured(baseline, Path(store), "baseline")
        variant = configured({**baseline, **overrides}, Path(store), "variant")
        splits = tune_splits(base, [s for s in args.splits.split(",") if s], args.squad, args.coqa, args.wikiqa)
        engines = Engines(base, variant, args.variant_index_root or base.index_root / "_variant", Path(store))
        for split in splits:
            base_engine, variant_engine = engines.pair(split)
            b, v = run_split(split, base_engine), run_split(split, variant_engine)
            if split.conversational:
                base_engine.conversations.close()
            outcomes[split.name] = {"base": b, "variant": v}
            rows[split.name] = {"base": metrics(b), "variant": metrics(v), "compare": compare(b, v)}
            print(f"{split.name}: {rows[split.name]['compare']}", flush=True)
    every_b = [o for s in outcomes.values() for o in s["base"]]
    every_v = [o for s in outcomes.values() for o in s["variant"]]
    rows["total"] = {"base": metrics(every_b), "variant": metrics(every_v), "compare": compare(every_b, every_v)}
    total = rows["total"]["compare"]
    verdict = "won" if total["won"] > total["lost"] else "lost" if total["won"] < total["lost"] else "tied"
    print(f"\nconfiguration: {json.dumps(overrides)}\n")
    print(table(rows))
    print(f"\ntotal {verdict}: {total['won']} questions won, {total['lost']} lost "
          f"(sign test p = {sign_test(total['won'], total['lost']):.3g}); adopt only when won")
    report = {"overrides": overrides, "baseline_overrides": parse_overrides(args.baseline_set, args.baseline_config),
              "splits": rows, "verdict": verdict, "sign_test_p": sign_test(total["won"], total["lost"])}
    if args.choose_threshold:
        report["threshold"] = choose_threshold(every_v)
        c = report["threshold"]["chosen"]
        print(f"\nthreshold: {c['threshold']:g} (pooled: unanswerable refused {c['refused_unanswerable']:.3f}, "
              f"answerable wrongly refused {c['wrongly_refused']:.3f}; {c['right']} of {len(every_v)} decided right)")
    if args.json:
        report["outcomes"] = {name: {k: [asdict(o) for o in v] for k, v in s.items()} for name, s in outcomes.items()}
        args.json.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

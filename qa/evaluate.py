"""The evaluation harness: run a gold set through the engine (or a running server) and measure it.

Ranking metrics come from ``ranx``. The units of relevance are the gold evidence spans: a returned
answer (a sentence with the duplicates grouped under it) covers a span when any of its citations
overlaps it, so ``recall@3`` is the share of a question's evidence found in the first three answers.
Ranking is measured on every question, before abstention; abstention is measured separately.
"""

from __future__ import annotations

import json
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qa import refusal
from qa.datasets import CandidateQuestion, Dataset, GoldQuestion

METRICS = {"Hit@1": "hit_rate@1", "Success@3": "hit_rate@3", "Recall@3": "recall@3", "MRR@10": "mrr@10",
           "nDCG@10": "ndcg@10"}
RANK_DEPTH = 10


@dataclass
class Result:
    """What one question got back."""

    qid: str
    kind: str
    split: str
    answerable: bool
    answered: bool
    confidence: float
    latency_ms: float
    n_evidence: int = 0
    covered: dict[int, int] = field(default_factory=dict)  # evidence index → best rank (1-based) covering it
    returned: int = 0  # answers returned (ranks 1..returned)
    citations_checked: int = 0
    citations_exact: int = 0
    top: str = ""  # the first sentence, for reading the report


def _answer_of(answer: dict) -> list[list[dict]]:
    """Groups of citations in rank order: the sentence itself first, then its ``also_in``."""
    return [[s, *s.get("also_in", [])] for s in answer.get("sentences", [])]


def judge(q: GoldQuestion, answer: dict, latency_ms: float, raw: dict[str, str]) -> Result:
    """Score one answer (the ``Answer.to_dict()`` shape, from the engine or over HTTP) against its gold."""
    res = Result(q.qid, q.kind, q.split, q.answerable, bool(answer["answered"]),
                 float(answer.get("confidence", 0.0)), latency_ms, len(q.evidence))
    groups = _answer_of(answer)
    res.returned = len(groups)
    for rank, group in enumerate(groups, start=1):
        for cite in group:
            for j, span in enumerate(q.evidence):
                if j not in res.covered and span.overlaps(cite["doc_id"], cite["start"], cite["end"]):
                    res.covered[j] = rank
            text = raw.get(cite["doc_id"], "")
            piece = text[cite["start"]:cite["end"]]
            res.citations_checked += 1
            exact = piece == cite["text"] if "text" in cite else bool(piece) and piece == piece.strip()
            res.citations_exact += int(exact and 0 <= cite["start"] < cite["end"] <= len(text))
    if answer.get("sentences"):
        res.top = answer["sentences"][0]["text"]
    return res


class EngineRunner:
    """Answers in-process through :class:`qa.engine.Engine` (the same object the CLI and the API use)."""

    def __init__(self, engine):
        self.engine = engine

    def __call__(self, question: str, mode: str) -> dict:
        return self.engine.ask(question, top_k=RANK_DEPTH, retriever=mode, abstain=False).to_dict()


class HttpRunner:
    """Answers through a running ``qa serve``: measures what a client gets, network included."""

    def __init__(self, base_url: str, timeout: float = 30.0):
        import httpx

        self.client = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout)

    def __call__(self, question: str, mode: str) -> dict:
        r = self.client.post("/ask", json={"question": question, "top_k": RANK_DEPTH, "retriever": mode,
                                           "abstain": False})
        r.raise_for_status()
        return r.json()


def run(dataset: Dataset, runner, mode: str) -> list[Result]:
    raw = {d.doc_id: d.raw for d in dataset.documents}
    results = []
    for q in dataset.questions:
        t0 = time.perf_counter()
        answer = runner(q.question, mode)
        results.append(judge(q, answer, (time.perf_counter() - t0) * 1000, raw))
    return results


def ranking_metrics(results: list[Result]) -> dict[str, float]:
    """ranx metrics over the answerable questions of ``results``."""
    from ranx import Qrels, Run, evaluate

    answerable = [r for r in results if r.answerable]
    if not answerable:
        return {}
    qrels = Qrels({r.qid: {f"e{j}": 1 for j in range(r.n_evidence)} for r in answerable})
    run_ = Run({r.qid: _ranked(r) for r in answerable})
    scores = evaluate(qrels, run_, list(METRICS.values()), make_comparable=True)
    return {name: round(float(scores[m]), 4) for name, m in METRICS.items()}


def _ranked(r: Result) -> dict[str, float]:
    """The run of one question for ranx: every returned rank, named by the evidence it covers (if any)."""
    run = {f"miss{rank}": 1.0 / rank for rank in range(1, r.returned + 1) if rank not in r.covered.values()}
    run.update({f"e{j}": 1.0 / rank for j, rank in r.covered.items()})
    return run or {"none": 0.0}


def abstention_metrics(results: list[Result]) -> dict[str, float]:
    refused_un = sum(1 for r in results if not r.answerable and not r.answered)
    refused = sum(1 for r in results if not r.answered)
    unanswerable = sum(1 for r in results if not r.answerable)
    answerable = sum(1 for r in results if r.answerable)
    wrongly = sum(1 for r in results if r.answerable and not r.answered)
    p = refused_un / refused if refused else 0.0
    rec = refused_un / unanswerable if unanswerable else 0.0
    f1 = 2 * p * rec / (p + rec) if p + rec else 0.0
    return {"abstain_precision": round(p, 4), "abstain_recall": round(rec, 4), "abstain_f1": round(f1, 4),
            "wrongly_refused": round(wrongly / answerable, 4) if answerable else 0.0,
            "unanswerable": unanswerable, "answerable": answerable}


def latency(results: "list[Result] | list[TurnResult]") -> dict[str, float]:
    ms = sorted(r.latency_ms for r in results)
    if not ms:
        return {}
    q = statistics.quantiles(ms, n=100, method="inclusive") if len(ms) > 1 else [ms[0]] * 99
    return {"p50_ms": round(q[49], 2), "p95_ms": round(q[94], 2), "mean_ms": round(statistics.fmean(ms), 2)}


def summarize(results: list[Result], threshold: float | None = None) -> dict:
    """The report of one retriever's results; ``threshold`` (the one in use) joins the refusal curve's."""
    by_kind: dict[str, list[Result]] = defaultdict(list)
    for r in results:
        by_kind[r.kind].append(r)
    checked = sum(r.citations_checked for r in results)
    return {
        "questions": len(results),
        "overall": ranking_metrics(results),
        "by_kind": {k: {"n": len(v), **ranking_metrics(v)} for k, v in sorted(by_kind.items())},
        "abstention": abstention_metrics(results),
        "refusal_curve": refusal.curve([r.confidence for r in results if r.answerable],
                                       [r.confidence for r in results if not r.answerable],
                                       refusal.thresholds_with(threshold)),
        "citation_integrity": round(sum(r.citations_exact for r in results) / checked, 4) if checked else 1.0,
        "latency": latency(results),
    }


def evaluate_dataset(dataset: Dataset, runner, modes: list[str], threshold: float | None = None) -> dict:
    """Every retriever in ``modes`` over the dataset: the report's content (no I/O). ``threshold``: the
    confidence threshold in use, a point of the refusal curve."""
    out = {"dataset": dataset.name, "documents": len(dataset.documents), "retrievers": {}, "failures": {}}
    for mode in modes:
        results = run(dataset, runner, mode)
        out["retrievers"][mode] = summarize(results, threshold)
        out["failures"][mode] = [
            {"qid": r.qid, "kind": r.kind, "answered": r.answered, "confidence": round(r.confidence, 4),
             **({"top": r.top} if dataset.quotable else {})}
            for r in results if (r.answerable and 1 not in r.covered.values()) or (not r.answerable and r.answered)
        ]
    return out


# -- answer sentence selection (each question ranks its own candidates) -------------------------------


def selection_metrics(questions: list[CandidateQuestion], scores: list[np.ndarray]) -> dict[str, float]:
    """MAP and MRR of ranking each question's candidate sentences by ``scores`` (one array per question,
    higher first), over questions with at least one correct candidate: WikiQA's standard protocol."""
    from ranx import Qrels, Run, evaluate

    qrels = Qrels({q.qid: {str(j): 1 for j, y in enumerate(q.labels) if y} for q in questions})
    run_ = Run({q.qid: {str(j): float(v) for j, v in enumerate(s)} for q, s in zip(questions, scores)})
    values = evaluate(qrels, run_, ["map", "mrr"], make_comparable=True)
    return {"MAP": round(float(values["map"]), 4), "MRR": round(float(values["mrr"]), 4),
            "questions": len(questions)}


def evaluate_selection(questions: list[CandidateQuestion], scorers: dict[str, Callable]) -> dict:
    """Each scorer (question, sentences) → one score per sentence, measured on every question, with its
    time per question."""
    out = {}
    for name, scorer in scorers.items():
        t0 = time.perf_counter()
        scores = [np.asarray(scorer(q.question, list(q.sentences)), dtype=np.float64) for q in questions]
        ms = (time.perf_counter() - t0) * 1000 / max(len(questions), 1)
        out[name] = {**selection_metrics(questions, scores), "ms_per_question": round(ms, 2)}
    return out


def selection_scorers(settings) -> dict[str, Callable]:
    """What answer sentence selection is measured with: MiniLM's cosine (the ranker's dense feature), the
    reader alone, and, where the profile's reader weight is above 0, the two as the hybrid ranker adds them
    (the dense weight · cosine + the reader weight · logit)."""
    from qa.profile import load_profile

    from qa.embed import Encoder, onnx_encoder, onnx_ready
    from qa.reader import load_reader

    encoder = onnx_encoder(settings) if onnx_ready(settings) else Encoder(settings.resolved_model_path())

    def cosine(question: str, sentences: list[str]) -> np.ndarray:
        vectors = encoder.encode([question, *sentences])
        return vectors[1:] @ vectors[0]

    scorers: dict[str, Callable] = {"dense (MiniLM cosine)": cosine}
    if settings.reader_dir is not None:
        reader = load_reader(settings.reader_dir, settings.reader_threads)
        scorers["reader"] = reader.score
        dense, weight = load_profile(settings.profile).sentence_weights["hybrid"]["dense"], \
            load_profile(settings.profile).reader.weight
        if weight > 0:
            scorers[f"dense + {weight:g} × reader"] = lambda q, s: dense * cosine(q, s) + weight * reader.score(q, s)
    return scorers


# -- one `qa eval` run: the data, the engine, the report's files -----------------------------------------

DATASETS = ("seeds", "squad-v2-dev", "coqa", "wikiqa")
SPLITS = ("all", "tune", "test")
DEFAULT_GOLD = Path("eval/gold.jsonl")  # the seeds' questions; eval/conversations.jsonl holds their dialogues


@dataclass(frozen=True)
class EvalRun:
    """What one ``qa eval`` measures and where its report goes. ``gold`` (dataset "seeds"): questions over
    the corpus folder; the report is named after the gold file. ``conversations``: dialogues over the same
    documents, asked turn by turn (with the default gold file, eval/conversations.jsonl)."""

    dataset: str = "seeds"
    split: str = "all"
    retrievers: tuple[str, ...] = ("bm25", "dense", "hybrid")
    http: str | None = None
    limit: int | None = None
    out_dir: Path = Path("eval/reports")
    gold: Path = DEFAULT_GOLD
    conversations: Path | None = None
    command: str = ""

    def stem(self, name: str) -> str:
        """A report's file stem: the data's name, the date, the split and any limit."""
        import datetime

        return (f"{name}-{datetime.date.today().isoformat()}" + ("" if self.split == "all" else f"-{self.split}")
                + (f"-limit{self.limit}" if self.limit else ""))


@dataclass
class EvalOutcome:
    report: dict
    paths: dict[str, Path]
    text: str  # the report in Markdown, as printed


def run_evaluation(run: EvalRun, settings, note: Callable[[str], None] = lambda message: None) -> list[EvalOutcome]:
    """Load the data ``run`` names, open an engine over it (or ask the server at ``run.http``), measure, and
    write the report files: one outcome, or two for WikiQA (its candidates ranked alone, then its pages)."""
    from qa import reports
    from qa.datasets import load_squad, load_wikiqa, load_wikiqa_pages
    from qa.profile import load_profile

    if run.dataset not in DATASETS:
        raise ValueError(f"unknown dataset {run.dataset!r}: choose one of {', '.join(DATASETS)}")
    if run.split not in SPLITS:
        raise ValueError(f"unknown split {run.split!r}: choose one of {', '.join(SPLITS)}")
    if run.dataset == "coqa":
        return [_run_dialogues(run, settings, note)]
    outcomes = []
    if run.dataset == "seeds":
        data = _gold_dataset(run, settings, note)
    elif run.dataset == "squad-v2-dev":
        data = load_squad(settings.shared_data_dir)
        settings = settings.model_copy(update={"index_name": "squad-v2-dev"})
    else:  # wikiqa: its own candidates ranked by each scorer, then the engine over its pages
        part = "dev" if run.split == "tune" else "test"
        results = evaluate_selection(load_wikiqa(settings.shared_data_dir, part), selection_scorers(settings))
        run.out_dir.mkdir(parents=True, exist_ok=True)
        path = run.out_dir / f"{run.stem(f'wikiqa-{part}-selection')}.json"
        path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        outcomes.append(EvalOutcome(results, {"json": path}, reports.selection_markdown(f"wikiqa {part}", results)))
        data = load_wikiqa_pages(settings.shared_data_dir, part)
        settings = settings.model_copy(update={"index_name": f"wikiqa-{part}"})
    data = data.select(run.split)
    if run.limit:
        data.questions = data.questions[:run.limit]
    profile = load_profile(settings.profile)
    threshold = profile.abstention.threshold if settings.abstain_threshold is None else settings.abstain_threshold
    report = evaluate_dataset(data, _runner(run, settings, data, note), list(run.retrievers), threshold)
    report["meta"] = {**_meta(run, settings), "questions": len(data.questions),
                      "via": run.http or "in-process engine", "passage_size": settings.passage_size,
                      "passage_overlap": settings.passage_overlap, "abstain_threshold": threshold}
    paths = reports.write_report(report, run.out_dir, run.stem(data.name))
    outcomes.append(EvalOutcome(report, paths, reports.markdown(report)))
    return outcomes


def _gold_dataset(run: EvalRun, settings, note: Callable[[str], None]) -> Dataset:
    from qa.datasets import load_gold
    from qa.ingest import IngestLimits, load_corpus

    conversations = run.conversations
    if conversations is None and run.gold == DEFAULT_GOLD and DEFAULT_GOLD.with_name("conversations.jsonl").exists():
        conversations = DEFAULT_GOLD.with_name("conversations.jsonl")
    if conversations is not None:
        note(f"dialogues from {conversations}")
    documents = load_corpus(settings.corpus_dir, IngestLimits.from_settings(settings))
    name = "seeds" if run.gold == DEFAULT_GOLD else run.gold.stem
    return load_gold(run.gold, documents, conversations, name=name)


def _runner(run: EvalRun, settings, data: Dataset, note: Callable[[str], None]):
    if run.http:
        return HttpRunner(run.http)
    from qa.engine import Engine

    note(f"opening the {data.name} index…")
    engine = Engine.open(settings, documents=data.documents, layout=data.layout,
                         on_rebuild=lambda why: note(f"building the {data.name} index ({why})…"))
    return EngineRunner(engine)


def _meta(run: EvalRun, settings) -> dict:
    import datetime

    from qa.profile import load_profile

    return {"date": datetime.date.today().isoformat(), "split": run.split, "profile": load_profile(settings.profile).label,
            "command": run.command}


def _run_dialogues(run: EvalRun, settings, note: Callable[[str], None]) -> EvalOutcome:
    """CoQA's dialogues as conversations: stories written under the index root, conversations in a temporary
    store."""
    import tempfile

    from qa import reports
    from qa.datasets import COQA_FILE, load_coqa
    from qa.dialogue_eval import evaluate_dialogues
    from qa.engine import Engine

    if run.http:
        raise ValueError("coqa is evaluated in process only (its conversations need the engine's store)")
    data = load_coqa(settings.shared_data_dir / COQA_FILE, settings.index_root / "_datasets" / "coqa").select(run.split)
    if run.limit:
        data = data.first_conversations(run.limit)
    with tempfile.TemporaryDirectory(prefix="qa-coqa-") as store:
        settings = settings.model_copy(update={"index_name": "coqa", "data_dir": Path(store)})
        note("opening the coqa index…")
        engine = Engine.open(settings, documents=data.documents,
                             on_rebuild=lambda why: note(f"building the coqa index ({why})…"))
        try:
            report = evaluate_dialogues(data, engine, mode=run.retrievers[0])
        finally:
            engine.conversations.close()
    report["meta"] = {**_meta(run, settings), "dialogues": len(data.conversations), "via": "in-process engine"}
    paths = reports.write_report(report, run.out_dir, run.stem("coqa"))
    return EvalOutcome(report, paths, reports.dialogue_markdown(report))

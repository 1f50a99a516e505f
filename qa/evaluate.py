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
    reader alone, and, where ``w_reader`` > 0, the two as the ranker adds them (``w_dense`` · cosine +
    ``w_reader`` · logit)."""
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
        if settings.w_reader > 0:
            scorers[f"dense + {settings.w_reader:g} × reader"] = (
                lambda q, s: settings.w_dense * cosine(q, s) + settings.w_reader * reader.score(q, s))
    return scorers


def selection_markdown(dataset: str, results: dict) -> str:
    lines = [f"# Answer sentence selection: {dataset}", "", "| scorer | MAP | MRR | questions | ms / question |",
             "|---|---|---|---|---|"]
    lines += [f"| {name} | {r['MAP']:.3f} | {r['MRR']:.3f} | {r['questions']} | {r['ms_per_question']:.1f} |"
              for name, r in results.items()]
    return "\n".join(lines) + "\n"


# -- reports ----------------------------------------------------------------------------------------


def write_report(report: dict, folder: Path, stem: str) -> dict[str, Path]:
    """``<stem>.json``, ``<stem>.md`` and ``<stem>.png``: a bar chart comparing the retrievers, or for a
    conversational report (:func:`evaluate_dialogues`) its conditions."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"json": folder / f"{stem}.json", "md": folder / f"{stem}.md", "png": folder / f"{stem}.png"}
    paths["json"].write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    conversational = "conditions" in report
    (_dialogue_chart if conversational else _chart)(report, paths["png"])
    if not conversational and any(s.get("refusal_curve") for s in report["retrievers"].values()):
        paths["refusal_png"] = folder / f"{stem}-refusal.png"
        refusal.chart(report, paths["refusal_png"])
    text = (dialogue_markdown if conversational else markdown)(report, paths["png"].name)
    paths["md"].write_text(text, encoding="utf-8")
    return paths


def markdown(report: dict, chart: str | None = None) -> str:
    lines = [f"# Evaluation: {report['dataset']}", ""]
    meta = report.get("meta", {})
    if meta:
        lines += [f"- {k}: `{v}`" for k, v in meta.items()] + [""]
    lines += ["## Ranking (answerable questions, before abstention)", "",
              "| retriever | " + " | ".join(METRICS) + " | refused unanswerable | wrongly refused | citation integrity "
              "| p50 ms | p95 ms |",
              "|---" * (len(METRICS) + 6) + "|"]
    for mode, s in report["retrievers"].items():
        m, a, lat = s["overall"], s["abstention"], s["latency"]
        lines.append(f"| {mode} | " + " | ".join(f"{m.get(k, 0):.3f}" for k in METRICS)
                     + f" | {a['abstain_recall']:.3f} | {a['wrongly_refused']:.3f} | {s['citation_integrity']:.3f}"
                     + f" | {lat.get('p50_ms', 0):.1f} | {lat.get('p95_ms', 0):.1f} |")
    lines += ["", "## By question kind", "", "| retriever | kind | n | " + " | ".join(METRICS) + " |",
              "|---" * (len(METRICS) + 3) + "|"]
    for mode, s in report["retrievers"].items():
        for kind, m in s["by_kind"].items():
            if len(m) > 1:
                lines.append(f"| {mode} | {kind} | {m['n']} | " + " | ".join(f"{m.get(k, 0):.3f}" for k in METRICS) + " |")
    lines += ["", "## Abstention", "", "| retriever | precision | recall | F1 | wrongly refused (answerable) |",
              "|---|---|---|---|---|"]
    for mode, s in report["retrievers"].items():
        a = s["abstention"]
        lines.append(f"| {mode} | {a['abstain_precision']:.3f} | {a['abstain_recall']:.3f} | {a['abstain_f1']:.3f} "
                     f"| {a['wrongly_refused']:.3f} |")
    lines += refusal.markdown(report, chart)
    if chart:
        lines += ["", f"![retrievers compared]({chart})"]
    return "\n".join(lines) + "\n"


def _chart(report: dict, path: Path) -> None:
    names = list(METRICS)
    series = {mode: [s["overall"].get(n, 0.0) for n in names] for mode, s in report["retrievers"].items()}
    bar_chart(path, series, names, f"{report['dataset']}: retrievers compared (answerable questions)")


def bar_chart(path: Path, series: dict[str, list[float]], labels: list[str], title: str,
              size: tuple[float, float] = (8, 4)) -> None:
    """Grouped bars on a 0–1 scale: one bar per series at each label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    x = np.arange(len(labels))
    width = 0.8 / max(len(series), 1)
    fig, ax = plt.subplots(figsize=size)
    for i, (name, values) in enumerate(series.items()):
        ax.bar(x + i * width - 0.4 + width / 2, values, width, label=name)
    ax.set_xticks(x, labels, fontsize=8 if len(labels) > 5 else None)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- conversations (CoQA) ------------------------------------------------------------------------------

CONDITIONS = ("floor", "conversation", "ceiling")
CONDITION_HELP = {
    "floor": "each turn asked alone",
    "conversation": "each dialogue asked turn by turn as one conversation (Engine.ask with a conversation id)",
    "ceiling": "as a conversation, every turn answered from the dialogue's own story only",
}
TURN_METRICS = ("Hit@1", "Success@3", "right story@1")


@dataclass
class TurnResult:
    """What one turn of a dialogue got back, under one condition."""

    conversation: str
    turn: int
    split: str
    domain: str
    answerable: bool
    hit1: bool
    success3: bool
    right_story: bool  # the first sentence is from the dialogue's own story
    latency_ms: float
    understood_as: str | None = None
    top: str = ""
    judged: Result | None = None  # the turn judged as a question (its ranks, decision and confidence)

    @property
    def position(self) -> str:
        return "opener" if self.turn == 0 else "follow-up"


def ask_dialogues(dataset: Dataset, engine, condition: str, mode: str = "hybrid") -> list[TurnResult]:
    """Every dialogue of ``dataset`` asked under ``condition`` (see :data:`CONDITION_HELP`).

    Conversations are stored in the engine's conversation store, so give the engine a throw-away
    ``data_dir``. Unanswerable turns are asked (the user asked them) and recorded, not scored.
    """
    if condition not in CONDITIONS:
        raise ValueError(f"unknown condition {condition!r}: choose from {', '.join(CONDITIONS)}")
    raw = {d.doc_id: d.raw for d in dataset.documents}
    results = []
    for cid, turns in dataset.conversations.items():
        story = dataset.sources[cid]
        conversation_id = f"{condition}-{cid}"
        engine.conversations.delete(conversation_id)
        for q in turns:
            t0 = time.perf_counter()
            if condition == "floor":
                answer = engine.ask(q.question, top_k=RANK_DEPTH, retriever=mode, abstain=False)
            elif condition == "conversation":
                answer = engine.ask(q.question, top_k=RANK_DEPTH, retriever=mode, conversation_id=conversation_id,
                                    create_missing=True, abstain=False)
            else:
                answer = engine.conversations.ask(q.question, conversation_id, top_k=RANK_DEPTH, mode=mode,
                                                  create_missing=True, abstain=False, documents=(story,))
            ms = (time.perf_counter() - t0) * 1000
            judged = judge(q, answer.to_dict(), ms, raw)
            ranks = judged.covered.values()
            first = answer.sentences[0].citation.doc_id if answer.sentences else None
            results.append(TurnResult(cid, q.turn, q.split, q.kind, q.answerable, 1 in ranks,
                                      any(r <= 3 for r in ranks), first == story, ms, answer.understood_as,
                                      judged.top[:120], judged))
    return results


def turn_metrics(results: list[TurnResult]) -> dict[str, float]:
    """Hit@1, Success@3 and right story@1 over the answerable turns of ``results``, with their count."""
    scored = [r for r in results if r.answerable]
    if not scored:
        return {"n": 0}
    n = len(scored)
    return {"n": n, "Hit@1": round(sum(r.hit1 for r in scored) / n, 4),
            "Success@3": round(sum(r.success3 for r in scored) / n, 4),
            "right story@1": round(sum(r.right_story for r in scored) / n, 4)}


def summarize_dialogues(results: list[TurnResult]) -> dict:
    """Per split (and all): openers and follow-ups; per domain; latency of every turn asked."""
    out: dict = {}
    for split in ("tune", "test", "all"):
        part = [r for r in results if split == "all" or r.split == split]
        if not part:
            continue
        domains = sorted({r.domain for r in part})
        out[split] = {
            "opener": turn_metrics([r for r in part if r.position == "opener"]),
            "follow-up": turn_metrics([r for r in part if r.position == "follow-up"]),
            "by_domain": {d: {p: turn_metrics([r for r in part if r.domain == d and r.position == p])
                              for p in ("opener", "follow-up")} for d in domains},
        }
    out["latency"] = latency(results)
    return out


def evaluate_dialogues(dataset: Dataset, engine, conditions: tuple[str, ...] = CONDITIONS,
                       mode: str = "hybrid") -> dict:
    """The report's content for a conversational dataset (no I/O besides the conversation store)."""
    out = {"dataset": dataset.name, "documents": len(dataset.documents), "dialogues": len(dataset.conversations),
           "turns": sum(len(t) for t in dataset.conversations.values()), "retriever": mode,
           "conditions": {}, "failures": {}}
    for condition in conditions:
        results = ask_dialogues(dataset, engine, condition, mode)
        out["conditions"][condition] = summarize_dialogues(results)
        out["failures"][condition] = [
            {"turn": f"{r.conversation}.{r.turn + 1}", "split": r.split, "domain": r.domain,
             "right_story": r.right_story,
             **({"understood_as": r.understood_as, "top": r.top} if dataset.quotable else {})}
            for r in results if r.answerable and not r.hit1][:200]
    return out


def dialogue_markdown(report: dict, chart: str | None = None) -> str:
    lines = [f"# Evaluation: {report['dataset']} (conversations)", "",
             f"{report['dialogues']} dialogues, {report['turns']} turns, {report['documents']} documents, "
             f"{report['retriever']} retriever; unanswerable turns are asked but not scored.", ""]
    lines += [f"- {k}: `{v}`" for k, v in report.get("meta", {}).items()]
    lines += [f"- {c}: {CONDITION_HELP[c]}" for c in report["conditions"]] + [""]
    head = "| condition | split | " + " | ".join(f"{p} {m}" for p in ("opener", "follow-up") for m in TURN_METRICS)
    lines += ["## Openers and follow-ups", "", head + " | n follow-ups | p50 ms | p95 ms |",
              "|---" * (2 + 2 * len(TURN_METRICS) + 3) + "|"]
    for condition, summary in report["conditions"].items():
        lat = summary.get("latency", {})
        for split in ("test", "tune", "all"):
            if split not in summary or (split == "all" and not {"test", "tune"} <= summary.keys()):
                continue  # "all" only when it differs from the one split there is
            s = summary[split]
            cells = [f"{s[p].get(m, 0.0):.3f}" for p in ("opener", "follow-up") for m in TURN_METRICS]
            lines.append(f"| {condition} | {split} | " + " | ".join(cells) + f" | {s['follow-up']['n']} "
                         f"| {lat.get('p50_ms', 0):.1f} | {lat.get('p95_ms', 0):.1f} |")
    split = next((s for s in ("test", "tune", "all") if all(s in v for v in report["conditions"].values())), None)
    if split is not None:
        lines += ["", f"## By domain (follow-ups, {split} split)", "",
                  "| domain | " + " | ".join(f"{c} {m}" for c in report["conditions"] for m in ("Hit@1", "right story@1"))
                  + " | n |", "|---" * (2 + 2 * len(report["conditions"])) + "|"]
        first = next(iter(report["conditions"].values()))
        for domain in first[split]["by_domain"]:
            rows = [report["conditions"][c][split]["by_domain"][domain]["follow-up"] for c in report["conditions"]]
            lines.append(f"| {domain} | " + " | ".join(f"{r.get(m, 0.0):.3f}" for r in rows
                                                       for m in ("Hit@1", "right story@1")) + f" | {rows[0]['n']} |")
    if chart:
        lines += ["", f"![conditions compared]({chart})"]
    return "\n".join(lines) + "\n"


def _dialogue_chart(report: dict, path: Path) -> None:
    bars = [(p, m) for p in ("opener", "follow-up") for m in TURN_METRICS]
    split = next((s for s in ("test", "all") if all(s in v for v in report["conditions"].values())), "tune")
    series = {c: [v.get(split, {}).get(p, {}).get(m, 0.0) for p, m in bars] for c, v in report["conditions"].items()}
    bar_chart(path, series, [f"{p}\n{m}" for p, m in bars], f"{report['dataset']}: conversations, {split} split",
              size=(9, 4))

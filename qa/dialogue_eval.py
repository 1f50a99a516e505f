"""Conversational evaluation (CoQA): each dialogue asked turn by turn under three conditions, so what
the conversation reading adds is measured between a floor (each turn alone) and a ceiling (the dialogue's
own story only)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from qa.datasets import Dataset
from qa.evaluate import RANK_DEPTH, Result, judge, latency

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

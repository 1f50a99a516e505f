import gzip
import json
from pathlib import Path

import numpy as np

import pytest
from typer.testing import CliRunner

from qa.datasets import CandidateQuestion, GoldError, GoldQuestion, Span, load_gold, load_wikiqa
from qa.evaluate import abstention_metrics, evaluate_selection, judge, ranking_metrics, selection_metrics
from qa.ingest import load_corpus
from qa.types import Document

ROOT = Path(__file__).resolve().parent.parent


def test_seed_gold_set_loads_and_every_quote_is_found():
    data = load_gold(ROOT / "eval" / "gold.jsonl", load_corpus(ROOT / "seeds"), ROOT / "eval" / "conversations.jsonl")
    assert len(data.questions) >= 70
    assert sum(not q.answerable for q in data.questions) >= 12
    assert len(data.conversations) >= 8 and all(len(t) >= 3 for t in data.conversations.values())
    raw = {d.doc_id: d.raw for d in data.documents}
    for q in data.questions:
        for span in q.evidence:
            assert 0 <= span.start < span.end <= len(raw[span.doc_id])


def test_a_quote_missing_from_its_document_fails_loudly(tmp_path):
    docs = [Document("a.txt", "A", "Title\n\nThe border reopened on Friday.\n")]
    gold = tmp_path / "gold.jsonl"
    gold.write_text(json.dumps({"id": "x", "kind": "factual", "question": "When?", "answerable": True,
                                "evidence": [{"doc_id": "a.txt", "quote": "reopened on Monday"}]}) + "\n")
    with pytest.raises(GoldError, match="quote not found"):
        load_gold(gold, docs)


def _answer(*groups, answered=True):
    """An answer dict whose sentences are (doc_id, start, end) triples; extra triples go to also_in."""
    sents = []
    for head, *rest in groups:
        sents.append({"doc_id": head[0], "start": head[1], "end": head[2], "text": "x" * (head[2] - head[1]),
                      "also_in": [{"doc_id": d, "start": s, "end": e} for d, s, e in rest]})
    return {"answered": answered, "confidence": 0.5, "sentences": sents}


def test_metric_wiring_on_a_hand_made_run():
    raw = {"d": "x" * 100, "e": "x" * 100}
    q1 = GoldQuestion("q1", "?", "factual", True, (Span("d", 10, 20),))
    q2 = GoldQuestion("q2", "?", "factual", True, (Span("d", 50, 60), Span("e", 0, 5)))
    results = [
        # q1: the evidence is found at rank 2.
        judge(q1, _answer([("d", 0, 9)], [("d", 12, 30)]), 1.0, raw),
        # q2: rank 1 covers the first span, and its also_in covers the second.
        judge(q2, _answer([("d", 55, 70), ("e", 0, 3)], [("d", 80, 90)]), 1.0, raw),
    ]
    m = ranking_metrics(results)
    assert m["Hit@1"] == pytest.approx(0.5)  # q1 misses at rank 1, q2 hits
    assert m["MRR@10"] == pytest.approx((1 / 2 + 1) / 2)
    assert m["Recall@3"] == pytest.approx(1.0)
    assert m["Success@3"] == pytest.approx(1.0)
    assert all(r.citations_exact == r.citations_checked for r in results)


def test_abstention_metrics_by_hand():
    raw = {"d": "x" * 10}
    un = GoldQuestion("u", "?", "unanswerable", False)
    an = GoldQuestion("a", "?", "factual", True, (Span("d", 0, 5),))
    results = [judge(un, _answer(answered=False), 1, raw), judge(un, _answer([("d", 0, 5)]), 1, raw),
               judge(an, _answer([("d", 0, 5)], answered=False), 1, raw), judge(an, _answer([("d", 0, 5)]), 1, raw)]
    a = abstention_metrics(results)
    assert a["abstain_precision"] == 0.5 and a["abstain_recall"] == 0.5 and a["wrongly_refused"] == 0.5


def test_citation_that_does_not_slice_to_its_text_is_counted():
    q = GoldQuestion("q", "?", "factual", True, (Span("d", 0, 3),))
    bad = {"answered": True, "sentences": [{"doc_id": "d", "start": 0, "end": 3, "text": "abd", "also_in": []}]}
    r = judge(q, bad, 1, {"d": "abcdef"})
    assert (r.citations_checked, r.citations_exact) == (1, 0)


def test_qa_eval_end_to_end_on_seeds(tmp_path, seed_settings, seed_engine):
    from qa.cli import app

    result = CliRunner().invoke(app, ["eval", "--limit", "6", "--retriever", "bm25", "--retriever", "hybrid",
                                      "--out", str(tmp_path), "--index-root", str(seed_settings.index_root)])
    assert result.exit_code == 0, result.output
    report = json.loads(next(tmp_path.glob("seeds-*.json")).read_text())
    assert set(report["retrievers"]) == {"bm25", "hybrid"}
    for summary in report["retrievers"].values():
        assert summary["questions"] == 6
        assert summary["citation_integrity"] == 1.0
        assert 0.0 <= summary["overall"]["Hit@1"] <= 1.0
    assert (tmp_path / next(tmp_path.glob("seeds-*.md")).name).read_text().startswith("# Evaluation: seeds")
    assert next(tmp_path.glob("seeds-*.png")).stat().st_size > 1000


def test_selection_metrics_by_hand():
    questions = [CandidateQuestion("a", "q1", ("s0", "s1", "s2"), (0, 1, 0)),
                 CandidateQuestion("b", "q2", ("s0", "s1", "s2"), (1, 0, 1))]
    scores = [np.array([0.9, 0.5, 0.1]), np.array([0.8, 0.9, 0.1])]
    m = selection_metrics(questions, scores)
    # a: the answer at rank 2 → AP 1/2, RR 1/2; b: answers at ranks 2 and 3 → AP (1/2 + 2/3) / 2, RR 1/2
    assert m["MRR"] == pytest.approx(0.5)
    assert m["MAP"] == pytest.approx((0.5 + (0.5 + 2 / 3) / 2) / 2, abs=1e-4)
    perfect = evaluate_selection(questions, {"labels": lambda q, s: [y for c in questions if c.question == q
                                                                      for y in c.labels]})
    assert perfect["labels"]["MAP"] == 1.0 and perfect["labels"]["questions"] == 2


def _write_wikiqa(folder, split: str, rows: list[str]) -> None:
    """A WikiQA file of ``rows`` (tab-separated, under WikiQA's header) in ``folder``/wikiqa/."""
    (folder / "wikiqa").mkdir()
    header = "QuestionID\tQuestion\tDocumentID\tDocumentTitle\tSentenceID\tSentence\tLabel"
    with gzip.open(folder / "wikiqa" / f"WikiQA-{split}.tsv.gz", "wt", encoding="utf-8") as fh:
        fh.write("\n".join([header, *rows]) + "\n")


def test_wikiqa_keeps_the_questions_with_a_correct_sentence(tmp_path):
    _write_wikiqa(tmp_path, "test", ["Q1\thow tall is it\tD1\tTower\tD1-0\tThe tower is old.\t0",
                                     "Q1\thow tall is it\tD1\tTower\tD1-1\tIt is \"300 m\" tall.\t1",
                                     "Q2\twho built it\tD1\tTower\tD1-0\tThe tower is old.\t0"])
    (q,) = load_wikiqa(tmp_path)
    assert (q.qid, q.question, q.labels) == ("Q1", "how tall is it", (0, 1))
    assert q.sentences[1] == 'It is "300 m" tall.'
    with pytest.raises(FileNotFoundError):
        load_wikiqa(tmp_path, "dev")


def test_wikiqa_pages_are_documents_and_unanswered_questions_measure_refusal(tmp_path):
    from qa.datasets import load_wikiqa_pages

    _write_wikiqa(tmp_path, "dev", ["Q1\thow tall is it\tD1\tTower\tD1-1\tIt is 300 m tall.\t1",
                                    "Q1\thow tall is it\tD1\tTower\tD1-0\tThe tower is old.\t0",
                                    "Q2\twho built it\tD1\tTower\tD1-0\tThe tower is old.\t0",
                                    "Q2\twho built it\tD1\tTower\tD1-1\tIt is 300 m tall.\t0"])
    data = load_wikiqa_pages(tmp_path, "dev")
    (doc,) = data.documents
    assert doc.raw == "The tower is old.\nIt is 300 m tall."  # WikiQA's order, one sentence a line
    q1, q2 = data.questions
    assert q1.answerable and q1.split == "tune" and not q2.answerable
    (span,) = q1.evidence
    assert doc.raw[span.start:span.end] == "It is 300 m tall."
    assert not data.layout and not data.quotable


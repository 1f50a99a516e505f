"""Evaluation data: the seed gold set and SQuAD 2.0 as sentence retrieval (ReQA).

Evidence is kept as character spans in the raw documents, never as sentence numbers, so a gold set
survives any change to sentence splitting: a returned sentence is a hit when it overlaps a span.
"""

from __future__ import annotations

import gzip
import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from qa.types import Document

SQUAD_FILE = "squad-v2.0-dev-half.json.gz"


class GoldError(ValueError):
    """The gold set does not match the documents (a quote that is not in its document, say)."""


@dataclass(frozen=True)
class Span:
    doc_id: str
    start: int
    end: int

    def overlaps(self, doc_id: str, start: int, end: int) -> bool:
        return doc_id == self.doc_id and start < self.end and self.start < end


@dataclass(frozen=True)
class GoldQuestion:
    qid: str
    question: str
    kind: str
    answerable: bool
    evidence: tuple[Span, ...] = ()
    split: str = "test"
    conversation: str | None = None  # id of the conversation this turn belongs to
    turn: int = 0


@dataclass
class Dataset:
    name: str
    documents: list[Document]
    questions: list[GoldQuestion]
    layout: bool = True  # documents are scraped pages (title, headings) rather than plain paragraphs
    conversations: dict[str, list[GoldQuestion]] = field(default_factory=dict)

    def select(self, split: str | None) -> "Dataset":
        if split in (None, "all"):
            return self
        keep = [q for q in self.questions if q.split == split]
        convs = {cid: turns for cid, turns in self.conversations.items() if turns and turns[0].split == split}
        return Dataset(self.name, self.documents, keep, self.layout, convs)


def quote_spans(evidence: list[dict], docs: dict[str, Document], where: str) -> tuple[Span, ...]:
    """Locate each ``{"doc_id", "quote"}`` in its raw document; fail loudly when one is missing."""
    spans = []
    for ev in evidence:
        doc = docs.get(ev["doc_id"])
        if doc is None:
            raise GoldError(f"{where}: unknown document {ev['doc_id']!r}")
        at = doc.raw.find(ev["quote"])
        if at < 0:
            raise GoldError(f"{where}: quote not found in {ev['doc_id']}: {ev['quote']!r}")
        spans.append(Span(doc.doc_id, at, at + len(ev["quote"])))
    return tuple(spans)


def load_gold(gold_file: Path, documents: list[Document], conversations_file: Path | None = None,
              name: str = "seeds") -> Dataset:
    docs = {d.doc_id: d for d in documents}
    questions = []
    for n, line in enumerate(gold_file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        item = json.loads(line)
        where = f"{gold_file.name}:{n} ({item.get('id')})"
        spans = quote_spans(item.get("evidence", []), docs, where)
        if item["answerable"] != bool(spans):
            raise GoldError(f"{where}: answerable={item['answerable']} but {len(spans)} evidence quotes")
        questions.append(GoldQuestion(item["id"], item["question"], item["kind"], item["answerable"], spans,
                                      item.get("split", "test")))
    conversations: dict[str, list[GoldQuestion]] = {}
    if conversations_file and conversations_file.exists():
        for n, line in enumerate(conversations_file.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            conv = json.loads(line)
            turns = []
            for t, turn in enumerate(conv["turns"]):
                where = f"{conversations_file.name}:{n} ({conv['id']} turn {t + 1})"
                spans = quote_spans(turn.get("evidence", []), docs, where)
                turns.append(GoldQuestion(f"{conv['id']}.{t + 1}", turn["question"], turn["kind"],
                                          turn.get("answerable", bool(spans)), spans, conv.get("split", "test"),
                                          conv["id"], t))
            conversations[conv["id"]] = turns
    ids = [q.qid for q in questions]
    if len(ids) != len(set(ids)):
        raise GoldError(f"{gold_file.name}: duplicate question ids")
    return Dataset(name, documents, questions, True, conversations)


def load_squad(data_dir: Path, *, limit: int | None = None) -> Dataset:
    """SQuAD 2.0 (dev half) as ReQA: every paragraph is a document; gold = the answer's character span.

    Unanswerable questions keep no evidence and measure abstention.
    """
    path = data_dir / SQUAD_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: set QA_SHARED_DATA_DIR to the folder that holds {SQUAD_FILE}")
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        data = json.load(fh)["data"]
    documents, questions = [], []
    for a, article in enumerate(data):
        title = article["title"].replace("_", " ")
        for p, para in enumerate(article["paragraphs"]):
            doc_id = f"squad-{a:02d}-{p:03d}"
            documents.append(Document(doc_id, title, para["context"]))
            for qa in para["qas"]:
                spans: tuple[Span, ...] = ()
                if not qa.get("is_impossible") and qa["answers"]:
                    ans = qa["answers"][0]
                    start = ans["answer_start"]
                    spans = (Span(doc_id, start, start + max(1, len(ans["text"]))),)
                kind = "answerable" if spans else "unanswerable"
                # A fixed, content-derived split: tune on one half, report on the other.
                split = "tune" if zlib.crc32(qa["id"].encode()) % 2 == 0 else "test"
                questions.append(GoldQuestion(qa["id"], qa["question"], kind, bool(spans), spans, split))
    if limit:
        questions = questions[:limit]
    return Dataset("squad-v2-dev", documents, questions, layout=False)


WIKIQA_DIR = "wikiqa"


@dataclass(frozen=True)
class CandidateQuestion:
    """A question with its own candidate sentences and their 0/1 labels (answer sentence selection)."""

    qid: str
    question: str
    sentences: tuple[str, ...]
    labels: tuple[int, ...]


def load_wikiqa(data_dir: Path, split: str = "test") -> list[CandidateQuestion]:
    """WikiQA's ``split`` (test: 633 questions) kept to the questions with at least one correct sentence,
    the standard answer-sentence-selection protocol (243 on test, as listed by WikiQA-test-filtered.ref).
    Evaluation only: WikiQA's licence is for research, and nothing shipped is trained on it."""
    import csv

    path = data_dir / WIKIQA_DIR / f"WikiQA-{split}.tsv.gz"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: set QA_SHARED_DATA_DIR to the folder that holds {WIKIQA_DIR}/")
    grouped: dict[str, list[dict]] = {}
    with gzip.open(path, "rt", encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE):
            grouped.setdefault(row["QuestionID"], []).append(row)
    return [CandidateQuestion(qid, rows[0]["Question"], tuple(r["Sentence"] for r in rows),
                              tuple(int(r["Label"]) for r in rows))
            for qid, rows in grouped.items() if any(r["Label"] == "1" for r in rows)]

"""Evaluation data: the seed gold set, SQuAD 2.0 as sentence retrieval (ReQA) and CoQA's conversations.

Evidence is kept as character spans in the raw documents, never as sentence numbers, so a gold set
survives any change to sentence splitting: a returned sentence is a hit when it overlaps a span.
"""

from __future__ import annotations

import gzip
import json
import tempfile
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from qa.formats import check_file_id, record_doc_id
from qa.ingest import load_corpus
from qa.types import Document

SQUAD_FILE = "squad-v2.0-dev-half.json.gz"
COQA_FILE = "coqa/coqa-test-610.json.gz"


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
    sources: dict[str, str] = field(default_factory=dict)  # conversation id → the document it is about
    quotable: bool = True  # reports may quote its text; not a shared benchmark's, which never enters the repository

    def select(self, split: str | None) -> "Dataset":
        if split in (None, "all"):
            return self
        keep = [q for q in self.questions if q.split == split]
        convs = {cid: turns for cid, turns in self.conversations.items() if turns and turns[0].split == split}
        return replace(self, questions=keep, conversations=convs,
                       sources={cid: doc for cid, doc in self.sources.items() if cid in convs})

    def first_conversations(self, n: int) -> "Dataset":
        """The first ``n`` conversations and their turns (quick runs); the documents stay all of them."""
        convs = dict(list(self.conversations.items())[:n])
        keep = [q for q in self.questions if q.conversation in convs]
        return replace(self, questions=keep, conversations=convs,
                       sources={cid: doc for cid, doc in self.sources.items() if cid in convs})


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


class EvidenceLine(BaseModel):
    """Where a gold answer is written: a quote copied exactly from a document's canonical text."""

    model_config = ConfigDict(extra="forbid")
    doc_id: str = Field(min_length=1, description="the document's id, as GET /documents lists it")
    quote: str = Field(min_length=1, description="text copied exactly from the document")


class GoldLine(BaseModel):
    """One line of a gold file (docs/QUALITY.md and the README: "Evaluate on your own questions")."""

    model_config = ConfigDict(extra="forbid")
    id: StrictStr | StrictInt
    question: str = Field(min_length=1)
    kind: str = Field("question", min_length=1, description="a label the report breaks the figures down by")
    answerable: bool | None = Field(None, description="default: whether evidence is given")
    evidence: list[EvidenceLine] = []
    split: Literal["tune", "test"] = "test"
    note: str | None = None


class TurnLine(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: str = Field(min_length=1)
    kind: str = Field("question", min_length=1)
    answerable: bool | None = None
    evidence: list[EvidenceLine] = []
    note: str | None = None


class ConversationLine(BaseModel):
    """One line of a conversations file: a dialogue of questions asked in order."""

    model_config = ConfigDict(extra="forbid")
    id: StrictStr | StrictInt
    split: Literal["tune", "test"] = "test"
    turns: list[TurnLine] = Field(min_length=1)


def read_lines(path: Path, model: type[BaseModel]) -> list[tuple[int, BaseModel]]:
    """Each non-blank line of a JSONL file as ``model``, with its line number; a :class:`GoldError` naming
    every bad line (its number, the field and what is wrong) when any is bad."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise GoldError(f"{path.name}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    items, problems = [], []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            items.append((n, model.model_validate_json(line)))
        except ValidationError as exc:
            fields = [(".".join(str(part) for part in e["loc"]), e["msg"]) for e in exc.errors(include_url=False)]
            problems.append(f"{path.name}:{n}: " + ", ".join(f"{f}: {m}" if f else m for f, m in fields))
    if problems:
        shown = problems[:20] + ([f"… and {len(problems) - 20} more"] if len(problems) > 20 else [])
        raise GoldError(f"{len(problems)} bad line(s) in {path.name}: " + "; ".join(shown))
    return items


def _gold_question(qid: str, item: GoldLine | TurnLine, docs: dict[str, Document], where: str, split: str,
                   conversation: str | None = None, turn: int = 0) -> GoldQuestion:
    spans = quote_spans([e.model_dump() for e in item.evidence], docs, where)
    answerable = bool(spans) if item.answerable is None else item.answerable
    if answerable != bool(spans):
        raise GoldError(f"{where}: answerable is {str(answerable).lower()} but {len(spans)} evidence quotes are given")
    return GoldQuestion(qid, item.question, item.kind, answerable, spans, split, conversation, turn)


def load_gold(gold_file: Path, documents: list[Document], conversations_file: Path | None = None,
              name: str = "seeds") -> Dataset:
    """A gold file (one :class:`GoldLine` per line) over ``documents``, and optionally a conversations file
    (one :class:`ConversationLine` per line): every line validated, every quote located in its document."""
    docs = {d.doc_id: d for d in documents}
    problems: list[str] = []

    def located(*args, **kwargs) -> GoldQuestion | None:
        try:
            return _gold_question(*args, **kwargs)
        except GoldError as exc:
            problems.append(str(exc))
            return None

    lines = read_lines(gold_file, GoldLine)
    questions = [located(str(item.id), item, docs, f"{gold_file.name}:{n} ({item.id})", item.split)
                 for n, item in lines]
    ids = [str(item.id) for _, item in lines]
    if duplicates := sorted({i for i in ids if ids.count(i) > 1}):
        problems.append(f"{gold_file.name}: duplicate question ids: {', '.join(duplicates[:10])}")
    conversations: dict[str, list[GoldQuestion]] = {}
    if conversations_file is not None:
        for n, conv in read_lines(conversations_file, ConversationLine):
            cid = str(conv.id)
            conversations[cid] = [
                located(f"{cid}.{t + 1}", turn, docs, f"{conversations_file.name}:{n} ({cid} turn {t + 1})",
                        conv.split, cid, t)
                for t, turn in enumerate(conv.turns)]
    if problems:
        raise GoldError(f"{len(problems)} problem(s) with the gold questions: " + "; ".join(problems[:20])
                        + (f"; … and {len(problems) - 20} more" if len(problems) > 20 else ""))
    return Dataset(name, documents, questions, True, conversations)


@dataclass(frozen=True)
class CorpusRecord:
    """One document to write as a corpus file: ``doc_id`` names it (a file stem, or a .jsonl record id)."""

    doc_id: str
    title: str
    text: str


def write_corpus(records: list[CorpusRecord], folder: Path, fmt: Literal["txt", "jsonl"] = "txt",
                 jsonl_name: str = "corpus.jsonl") -> dict[str, str]:
    """Write ``records`` into ``folder`` as a user would keep them, so that ``load_corpus`` reads them the way
    it reads any folder: one ``<doc_id>.txt`` file each (the text byte for byte; a .txt file has no title),
    or one ``.jsonl`` file of ``{"id", "title", "text"}`` lines. Returns record id → the document id that
    ``load_corpus`` gives it, to place gold spans."""
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "jsonl":
        lines = [json.dumps({"id": r.doc_id, "title": r.title, "text": r.text}, ensure_ascii=False) for r in records]
        (folder / jsonl_name).write_text("\n".join(lines) + "\n", encoding="utf-8")
        return {r.doc_id: record_doc_id(jsonl_name, r.doc_id) for r in records}
    ids = {}
    for r in records:
        name = check_file_id(f"{r.doc_id}.txt").as_posix()
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        write_if_changed(folder / name, r.text)
        ids[r.doc_id] = name
    return ids


def load_squad(data_dir: Path, *, limit: int | None = None, fmt: Literal["txt", "jsonl"] = "txt") -> Dataset:
    """SQuAD 2.0 (dev half) as ReQA: every paragraph is a document; gold = the answer's character span.

    The paragraphs are written to a temporary folder as ``fmt`` files (:func:`write_corpus`) and read back
    with ``load_corpus``, so the evaluation reads documents exactly as a user's folder is read. Unanswerable
    questions keep no evidence and measure abstention.
    """
    path = data_dir / SQUAD_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: set QA_SHARED_DATA_DIR to the folder that holds {SQUAD_FILE}")
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        data = json.load(fh)["data"]
    records, questions = [], []
    for a, article in enumerate(data):
        title = article["title"].replace("_", " ")
        for p, para in enumerate(article["paragraphs"]):
            records.append(CorpusRecord(f"squad-{a:02d}-{p:03d}", title, para["context"]))
            for qa in para["qas"]:
                spans: tuple[tuple[int, int], ...] = ()
                if not qa.get("is_impossible") and qa["answers"]:
                    ans = qa["answers"][0]
                    start = ans["answer_start"]
                    spans = ((start, start + max(1, len(ans["text"]))),)
                questions.append((records[-1].doc_id, qa, spans))
    with tempfile.TemporaryDirectory(prefix="qa-squad-") as tmp:
        doc_ids = write_corpus(records, Path(tmp), fmt, jsonl_name="squad.jsonl")
        documents = load_corpus(Path(tmp))
    if len(documents) != len(records):
        raise GoldError(f"{SQUAD_FILE}: {len(records) - len(documents)} paragraphs could not be read as documents")
    gold = []
    for record_id, qa, spans in questions:
        evidence = tuple(Span(doc_ids[record_id], s, e) for s, e in spans)
        kind = "answerable" if evidence else "unanswerable"
        # A fixed, content-derived split: tune on one half, report on the other.
        split = "tune" if zlib.crc32(qa["id"].encode()) % 2 == 0 else "test"
        gold.append(GoldQuestion(qa["id"], qa["question"], kind, bool(evidence), evidence, split))
    if limit:
        gold = gold[:limit]
    return Dataset("squad-v2-dev", documents, gold, quotable=False)


def load_coqa(path: Path, stories_dir: Path) -> Dataset:
    """CoQA as conversational sentence retrieval: every story is written to ``stories_dir`` as its own plain
    ``.txt`` file (exactly its text, so CoQA's offsets are offsets into the file) and read back by
    :func:`qa.ingest.load_corpus`, as any user's folder is; each story's dialogue is one conversation.

    A turn's evidence is every annotator's span (the main answer and ``additional_answers``), trimmed of the
    whitespace the annotators' spans carry; a turn whose main span is unknown (``span_start == -1``) stays
    in the conversation, as the user asked it, but is unanswerable and left out of the ranking figures.
    ``kind`` is the story's domain; stories are split once into tune and test by a hash of their id.
    """
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: set QA_SHARED_DATA_DIR to the folder that holds {COQA_FILE}")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        stories = json.load(fh)["data"]
    doc_ids = write_corpus([CorpusRecord(story["id"], "", story["story"]) for story in stories], stories_dir)
    docs = {d.doc_id: d for d in load_corpus(stories_dir)}
    conversations: dict[str, list[GoldQuestion]] = {}
    for story in stories:
        doc_id = doc_ids[story["id"]]
        if doc_id not in docs:
            raise GoldError(f"story {story['id']} could not be read back from {stories_dir}")
        split = "tune" if zlib.crc32(story["id"].encode()) % 2 == 0 else "test"
        annotators = [story["answers"], *story.get("additional_answers", {}).values()]
        turns = []
        for t, question in enumerate(story["questions"]):
            main = story["answers"][t]
            spans = () if main["span_start"] < 0 else evidence_spans(
                docs[doc_id], [answers[t] for answers in annotators if t < len(answers)])
            turns.append(GoldQuestion(f"{story['id']}.{question['turn_id']}", question["input_text"],
                                      story["source"], bool(spans), spans, split, story["id"], t))
        conversations[story["id"]] = turns
    questions = [q for turns in conversations.values() for q in turns]
    sources = {cid: doc_ids[cid] for cid in conversations}
    return Dataset("coqa", list(docs.values()), questions, True, conversations, sources, quotable=False)


def evidence_spans(doc: Document, answers: list[dict]) -> tuple[Span, ...]:
    """The distinct non-empty spans of ``answers`` in ``doc``, without their leading and trailing whitespace."""
    spans = set()
    for a in answers:
        start, end = a.get("span_start", -1), a.get("span_end", -1)
        if start < 0 or end <= start:
            continue
        text = doc.raw[start:end]
        lead = len(text) - len(text.lstrip())
        trail = len(text) - len(text.rstrip())
        if end - trail > start + lead:
            spans.add(Span(doc.doc_id, start + lead, end - trail))
    return tuple(sorted(spans, key=lambda s: (s.start, s.end)))


def write_if_changed(path: Path, text: str) -> None:
    """Write ``text`` as UTF-8 without newline translation, unless the file already holds exactly it (an
    untouched file keeps its index fingerprint and modification time)."""
    data = text.encode("utf-8")
    if path.exists() and path.read_bytes() == data:
        return
    path.write_bytes(data)


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


def load_wikiqa_pages(data_dir: Path, split: str = "test") -> Dataset:
    """WikiQA's ``split`` as sentence retrieval with refusal: every Wikipedia summary its questions were asked of
    is written as a document of one candidate sentence per line (in WikiQA's order, read back as plain
    paragraphs), and every question is asked of all of them. A question whose page holds a sentence labelled
    correct is answerable, with those sentences as evidence; the others (about two thirds: the page is about
    the subject but does not answer) are unanswerable and measure refusal. Evaluation only (WikiQA's licence);
    ``dev`` may tune weights, ``test`` never."""
    import csv

    path = data_dir / WIKIQA_DIR / f"WikiQA-{split}.tsv.gz"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: set QA_SHARED_DATA_DIR to the folder that holds {WIKIQA_DIR}/")
    pages: dict[str, tuple[str, dict[str, str]]] = {}  # DocumentID → (title, SentenceID → sentence)
    asked: dict[str, list[dict]] = {}
    with gzip.open(path, "rt", encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE):
            pages.setdefault(row["DocumentID"], (row["DocumentTitle"], {}))[1][row["SentenceID"]] = row["Sentence"]
            asked.setdefault(row["QuestionID"], []).append(row)
    records, where = [], {}  # where: (DocumentID, SentenceID) → (start, end) in the page's text
    for doc_id, (title, sentences) in pages.items():
        ordered = sorted(sentences.items(), key=lambda kv: int(kv[0].rsplit("-", 1)[-1]))
        text, at = [], 0
        for sid, sentence in ordered:
            where[doc_id, sid] = (at, at + len(sentence))
            text.append(sentence)
            at += len(sentence) + 1
        records.append(CorpusRecord(f"wikiqa-{doc_id}", title, "\n".join(text)))
    with tempfile.TemporaryDirectory(prefix="qa-wikiqa-") as tmp:
        doc_ids = write_corpus(records, Path(tmp))
        documents = load_corpus(Path(tmp))
    questions = []
    for qid, rows in asked.items():
        evidence = tuple(Span(doc_ids[f"wikiqa-{r['DocumentID']}"], *where[r["DocumentID"], r["SentenceID"]])
                         for r in rows if r["Label"] == "1")
        questions.append(GoldQuestion(qid, rows[0]["Question"], "answerable" if evidence else "unanswerable",
                                      bool(evidence), evidence, "tune" if split == "dev" else "test"))
    return Dataset(f"wikiqa-{split}", documents, questions, layout=False, quotable=False)

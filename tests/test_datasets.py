import gzip
import json

import pytest

from qa.datasets import SQUAD_FILE, CorpusRecord, load_squad, write_corpus
from qa.formats import DocumentError
from qa.ingest import load_corpus

RECORDS = [CorpusRecord("cnn/story-1", "Storm", "Storm hits coast\r\n\r\nWinds rose. Power failed.\r\n"),
           CorpusRecord("notes", "Notes", "The council met on Tuesday. It approved the budget.")]


@pytest.mark.parametrize("fmt", ["txt", "jsonl"])
def test_written_records_read_back_with_their_exact_text(tmp_path, fmt):
    ids = write_corpus(RECORDS, tmp_path, fmt)
    docs = {d.doc_id: d for d in load_corpus(tmp_path)}
    assert sorted(docs) == sorted(ids.values())
    for r in RECORDS:
        assert docs[ids[r.doc_id]].raw == r.text
    if fmt == "txt":
        assert ids == {"cnn/story-1": "cnn/story-1.txt", "notes": "notes.txt"}
        assert docs["notes.txt"].title == "notes"  # a .txt file keeps no title
    else:
        assert ids == {"cnn/story-1": "corpus.jsonl#cnn/story-1", "notes": "corpus.jsonl#notes"}
        assert docs["corpus.jsonl#notes"].title == "Notes"


def test_record_ids_that_are_not_safe_file_names_are_refused(tmp_path):
    with pytest.raises(DocumentError):
        write_corpus([CorpusRecord("../outside", "", "Text.")], tmp_path, "txt")
    assert not (tmp_path.parent / "outside.txt").exists()


def test_squad_reads_the_same_documents_and_gold_in_both_formats(tmp_path):
    context = "The Normans were a people. They gave their name to Normandy, a region in France."
    data = {"data": [{"title": "Normans", "paragraphs": [{"context": context, "qas": [
        {"id": "q1", "question": "Where is Normandy?", "is_impossible": False,
         "answers": [{"text": "France", "answer_start": context.index("France")}]},
        {"id": "q2", "question": "Who ruled Mars?", "is_impossible": True, "answers": []}]}]}]}
    with gzip.open(tmp_path / SQUAD_FILE, "wt", encoding="utf-8") as fh:
        json.dump(data, fh)
    txt, jsonl = load_squad(tmp_path, fmt="txt"), load_squad(tmp_path, fmt="jsonl")
    assert [d.doc_id for d in txt.documents] == ["squad-00-000.txt"]
    assert [(d.doc_id, d.title) for d in jsonl.documents] == [("squad.jsonl#squad-00-000", "Normans")]
    for dataset in (txt, jsonl):
        assert dataset.documents[0].raw == context
        q1, q2 = dataset.questions
        span = q1.evidence[0]
        assert span.doc_id == dataset.documents[0].doc_id and context[span.start:span.end] == "France"
        assert (q2.answerable, q2.evidence) == (False, ())


# -- the gold format (README: "Evaluate on your own questions") -----------------------------------------

def _gold(tmp_path, *lines):
    path = tmp_path / "mine.jsonl"
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n",
                    encoding="utf-8")
    return path


def _docs():
    from qa.types import Document

    return [Document("harbour.txt", "Harbour", "Harbour reopens\n\nThe harbour reopened on Friday after the storm.\n")]


def test_a_minimal_gold_line_needs_only_an_id_a_question_and_its_evidence(tmp_path):
    from qa.datasets import load_gold

    gold = _gold(tmp_path, {"id": 1, "question": "When did the harbour reopen?",
                            "evidence": [{"doc_id": "harbour.txt", "quote": "reopened on Friday"}]},
                 {"id": "none", "question": "Who owns the harbour?"})
    data = load_gold(gold, _docs(), name="mine")
    first, second = data.questions
    assert (first.qid, first.kind, first.answerable, first.split) == ("1", "question", True, "test")
    assert first.evidence[0].doc_id == "harbour.txt" and not second.answerable and not data.conversations


def test_every_bad_gold_line_is_named_with_its_field(tmp_path):
    from qa.datasets import GoldError, load_gold

    gold = _gold(tmp_path,
                 {"id": "a", "question": "When?", "evidence": [{"doc_id": "harbour.txt", "quote": "reopened"}]},
                 "{not json",
                 {"id": "b"},
                 {"id": "c", "question": "Why?", "split": "train"},
                 {"id": "d", "question": "Who?", "questoin": "typo"},
                 {"id": ["x"], "question": "What?"})
    with pytest.raises(GoldError) as caught:
        load_gold(gold, _docs())
    message = str(caught.value)
    assert "mine.jsonl:2:" in message  # not JSON
    assert "mine.jsonl:3: question: Field required" in message
    assert "mine.jsonl:4: split:" in message and "mine.jsonl:5: questoin:" in message
    assert "mine.jsonl:6: id" in message and "mine.jsonl:1:" not in message  # line 1 is good
    assert message.startswith("5 bad line(s) in mine.jsonl")  # every bad line at once


def test_quotes_and_answerable_are_checked_on_every_line_too(tmp_path):
    from qa.datasets import GoldError, load_gold

    gold = _gold(tmp_path,
                 {"id": "e", "question": "When?", "evidence": [{"doc_id": "harbour.txt", "quote": "on Monday"}]},
                 {"id": "f", "question": "When?", "answerable": True},
                 {"id": "g", "question": "Where?", "evidence": [{"doc_id": "port.txt", "quote": "x"}]},
                 {"id": "e", "question": "Again?"})
    with pytest.raises(GoldError) as caught:
        load_gold(gold, _docs())
    message = str(caught.value)
    assert "mine.jsonl:1 (e): quote not found in harbour.txt" in message
    assert "mine.jsonl:2 (f): answerable is true but 0 evidence quotes" in message
    assert "mine.jsonl:3 (g): unknown document 'port.txt'" in message
    assert "duplicate question ids: e" in message


def test_conversations_are_read_only_when_named(tmp_path):
    from qa.datasets import GoldError, load_gold

    gold = _gold(tmp_path, {"id": 1, "question": "When did the harbour reopen?",
                            "evidence": [{"doc_id": "harbour.txt", "quote": "reopened on Friday"}]})
    dialogues = tmp_path / "conversations.jsonl"  # beside the gold file: not read unless asked for
    dialogues.write_text(json.dumps({"id": "c1", "turns": [
        {"question": "Did the harbour reopen?", "evidence": [{"doc_id": "harbour.txt", "quote": "harbour reopened"}]},
        {"question": "After what?"}]}) + "\n", encoding="utf-8")
    assert load_gold(gold, _docs()).conversations == {}
    turns = load_gold(gold, _docs(), dialogues).conversations["c1"]
    assert [t.qid for t in turns] == ["c1.1", "c1.2"] and [t.answerable for t in turns] == [True, False]
    dialogues.write_text(json.dumps({"id": "c2", "turns": []}) + "\n", encoding="utf-8")
    with pytest.raises(GoldError, match="conversations.jsonl:1: turns:"):
        load_gold(gold, _docs(), dialogues)

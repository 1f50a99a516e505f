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

"""CoQA as conversations: loading stories through the ordinary ingestion, gold spans, and `qa eval --dataset coqa`.

Small stories are made in the test; the shared file is read when present (skipped, saying why, when not).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from qa.config import Settings
from qa.datasets import COQA_FILE, load_coqa

MOUSE = ("People usually hate mice, but one mouse has won the hearts of children everywhere. "
         "Fifty years ago most movies were silent.\n\nA man called Walt Disney made a cartoon mouse that could "
         "talk. He named his mouse Mickey Mouse. Children loved him because he brought them joy.")
TRAIN = ("The night train left Vienna at nine. It carried two hundred passengers to Venice.\n\n"
         "The conductor, Anna Berger, had worked on the line for twelve years. She knew every station by heart.")


def _turn(story: str, evidence: str | None, turn_id: int) -> dict:
    """An answer whose span covers ``evidence``; its leading spaces stand for the whitespace before it."""
    if evidence is None:
        return {"span_start": -1, "span_end": -1, "span_text": "unknown", "input_text": "unknown", "turn_id": turn_id}
    at = story.index(evidence.lstrip()) - (len(evidence) - len(evidence.lstrip()))
    return {"span_start": at, "span_end": at + len(evidence), "span_text": story[at:at + len(evidence)],
            "input_text": evidence, "turn_id": turn_id}


def coqa_file(folder: Path) -> Path:
    """A CoQA-shaped file of two stories: spans with the whitespace annotators leave, one unknown turn."""
    stories = []
    for sid, source, story, turns in [
        ("mouse01", "race", MOUSE, [("Who made a cartoon mouse?", " A man called Walt Disney", "Walt Disney made"),
                                    ("What did he name it?", "He named his mouse Mickey Mouse.", None),
                                    ("What colour was it?", None, None)]),
        ("train02", "mctest", TRAIN, [("Where did the night train go?", "It carried two hundred passengers",
                                       "passengers to Venice"),
                                      ("Who was the conductor?", "Anna Berger", "The conductor, Anna Berger")]),
    ]:
        main = [_turn(story, ev, i + 1) for i, (_, ev, _) in enumerate(turns)]
        extra = [_turn(story, alt, i + 1) for i, (_, _, alt) in enumerate(turns)]
        stories.append({"source": source, "id": sid, "filename": f"{sid}.txt", "story": story, "name": sid,
                        "questions": [{"input_text": q, "turn_id": i + 1} for i, (q, _, _) in enumerate(turns)],
                        "answers": main, "additional_answers": {"0": extra}})
    path = folder / COQA_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        json.dump({"canary": "test data", "version": "1.0", "data": stories}, fh)
    return path


def test_stories_are_plain_files_read_by_the_ordinary_ingestion(tmp_path):
    data = load_coqa(coqa_file(tmp_path), tmp_path / "stories")
    assert sorted(p.name for p in (tmp_path / "stories").glob("*.txt")) == ["mouse01.txt", "train02.txt"]
    assert (tmp_path / "stories" / "mouse01.txt").read_bytes() == MOUSE.encode()
    assert [d.doc_id for d in data.documents] == ["mouse01.txt", "train02.txt"]
    assert data.sources == {"mouse01": "mouse01.txt", "train02": "train02.txt"}
    turns = data.conversations["mouse01"]
    assert [q.turn for q in turns] == [0, 1, 2] and {q.kind for q in turns} == {"race"}
    # the main span's leading space is trimmed; the second annotator's span is kept as well
    who = turns[0].evidence
    assert [MOUSE[s.start:s.end] for s in who] == ["A man called Walt Disney", "Walt Disney made"]
    assert not turns[2].answerable and turns[2].evidence == ()  # span_start == -1: asked, not scored
    assert turns[1].answerable and len(turns[1].evidence) == 1  # an annotator without a span adds nothing


def test_split_is_fixed_by_story_and_limits_keep_whole_dialogues(tmp_path):
    path = coqa_file(tmp_path)
    first = load_coqa(path, tmp_path / "a")
    again = load_coqa(path, tmp_path / "a")  # the files are already there and unchanged
    assert {q.qid: q.split for q in first.questions} == {q.qid: q.split for q in again.questions}
    for turns in first.conversations.values():
        assert len({q.split for q in turns}) == 1
    one = first.first_conversations(1)
    assert list(one.conversations) == ["mouse01"] and len(one.questions) == 3 and len(one.documents) == 2
    tune, test = first.select("tune"), first.select("test")
    assert set(tune.conversations) | set(test.conversations) == {"mouse01", "train02"}
    assert set(tune.sources) == set(tune.conversations)


@pytest.fixture(scope="module")
def coqa_engine(seed_settings, tmp_path_factory):
    from qa.engine import Engine

    folder = tmp_path_factory.mktemp("coqa")
    data = load_coqa(coqa_file(folder), folder / "stories")
    settings = seed_settings.model_copy(update={"index_name": "coqa-test", "data_dir": folder / "var"})
    return data, Engine.open(settings, documents=data.documents)


def test_dialogues_are_asked_as_conversations_with_floor_and_ceiling(coqa_engine, tmp_path):
    from qa import dialogue_eval, reports

    data, engine = coqa_engine
    report = dialogue_eval.evaluate_dialogues(data, engine)
    assert set(report["conditions"]) == {"floor", "conversation", "ceiling"}
    assert report["dialogues"] == 2 and report["turns"] == 5 and report["documents"] == 2
    for summary in report["conditions"].values():
        every = summary["all"]
        assert every["opener"]["n"] == 2 and every["follow-up"]["n"] == 2  # the unknown turn is not scored
        assert summary["latency"]["p50_ms"] > 0
    ceiling = report["conditions"]["ceiling"]["all"]
    assert ceiling["opener"]["right story@1"] == 1.0 and ceiling["follow-up"]["right story@1"] == 1.0
    # both stories are tiny and distinct: an opener alone finds its story, and its answer among the first three
    floor = report["conditions"]["floor"]["all"]["opener"]
    assert floor["right story@1"] == 1.0 and floor["Success@3"] == 1.0
    # each dialogue is stored as one conversation, every turn (the unanswerable one too) in order
    stored = engine.conversations.turns("conversation-mouse01")
    assert [t.question for t in stored] == [q.question for q in data.conversations["mouse01"]]
    paths = reports.write_report(report, tmp_path, "coqa-small")
    assert json.loads(paths["json"].read_text())["turns"] == 5
    # a failed turn is named by its id: CoQA's questions and stories never enter a report
    written = paths["json"].read_text() + paths["md"].read_text()
    assert not data.quotable and not any(q.question in written for q in data.questions)
    assert all(set(row) == {"turn", "split", "domain", "right_story"}
               for rows in report["failures"].values() for row in rows)
    split = data.conversations["mouse01"][0].split
    assert f"| conversation | {split} |" in paths["md"].read_text() and paths["png"].stat().st_size > 0


def test_cli_eval_coqa(seed_settings, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from qa.cli import app

    coqa_file(tmp_path / "shared")
    monkeypatch.setenv("QA_SHARED_DATA_DIR", str(tmp_path / "shared"))
    monkeypatch.setenv("QA_INDEX_ROOT", str(seed_settings.index_root))
    result = CliRunner().invoke(app, ["eval", "--dataset", "coqa", "--limit", "1", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    reports = list((tmp_path / "out").glob("coqa-*-limit1.json"))
    assert len(reports) == 1 and json.loads(reports[0].read_text())["dialogues"] == 1


SHARED = Settings().shared_data_dir / COQA_FILE


@pytest.mark.skipif(not SHARED.exists(), reason=f"the shared CoQA file is not here ({SHARED})")
def test_the_shared_file_gives_610_stories_whose_gold_spans_hold_their_text(tmp_path):
    data = load_coqa(SHARED, tmp_path / "stories")
    assert len(data.documents) == 610 and len(data.conversations) == 610
    assert len(data.questions) == 9578
    raw = {d.doc_id: d.raw for d in data.documents}
    spans = [s for q in data.questions for s in q.evidence]
    assert spans and all(raw[s.doc_id][s.start:s.end].strip() == raw[s.doc_id][s.start:s.end] for s in spans)
    splits = {turns[0].split for turns in data.conversations.values()}
    assert splits == {"tune", "test"}

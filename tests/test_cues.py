"""Word-list cues and name detection (qa/cues.py): anaphora, named entities."""

from __future__ import annotations

import pytest

from qa.cues import anaphora, entities, proper_words_of


@pytest.fixture(scope="module")
def index(seed_engine):
    return seed_engine.index


@pytest.mark.parametrize("question, expected", [
    ("When did it reopen?", ["it"]),
    ("Who did they meet there?", ["they", "there"]),
    ("What about trucks?", ["what about"]),
    ("Who reported that?", ["that"]),
    ("Who did he meet on that trip?", ["he", "that"]),
    ("How does the TTP fund itself?", []),  # reflexive: bound inside the question
    ("Is Pakistan's army able to deal with terrorism on its own?", []),
    ("Who led the Pakistani delegation that went to Kabul?", []),  # relative "that"
    ("Is there a deadline for the talks?", []),  # existential "there"
])
def test_anaphora(question, expected):
    assert anaphora(question) == expected


def test_entities(index):
    assert entities("Who can currently cross at Torkham?", proper_words_of(index)) == ["Torkham"]
    assert "Torkham" in entities("Torkham: why was it closed?", proper_words_of(index))  # capitalised by the corpus
    assert entities("What about trucks?", proper_words_of(index)) == []
    assert entities("What does the UN report say?", proper_words_of(index)) == ["UN"]


def test_subject_that_is_anaphora_only_before_a_verb_after_saying():
    assert anaphora("Do the Taliban say that could still happen now?", subject_that=True) == ["that"]
    assert anaphora("Do the Taliban say that could still happen now?") == []
    assert anaphora("Who led the delegation that was sent to Kabul?", subject_that=True) == []  # relative

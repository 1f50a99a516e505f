"""What a question asks for and what it is about, checked against a sentence and its neighbours
(qa/answer_checks.py): answer kinds on real wordings, and the checks of the best sentence on the fast index."""

from __future__ import annotations

import numpy as np
import pytest

from qa import answer_checks

def test_answer_type_cues():
    asked, typed = answer_checks.answer_type_match("When did the crossing reopen?",
                                          ["It reopened on Friday.", "Trucks were waiting at the border."])
    assert asked == answer_checks.AskedType("date", strict=False) and typed.tolist() == [1.0, 0.0]
    asked, typed = answer_checks.answer_type_match("How many Taliban members were killed?",
                                          ["Two Taliban members were killed.", "The clash began at night."])
    assert asked == answer_checks.AskedType("number", strict=True) and typed.tolist() == [1.0, 0.0]
    asked, _ = answer_checks.answer_type_match("What did the minister say?", ["anything"])
    assert asked.name is None and not asked.strict


@pytest.mark.parametrize("question, kind, strict", [
    ("Exactly how many trucks are lined up at the border?", "number", True),  # a lead-in before the wh-word
    ("On what date did the delegation arrive?", "date", True),
    ("In which year did the war end?", "date", True),
    ("What is the name of the soldier who was wounded?", "person", True),
    ("Who is allowed to cross now?", "person", False),  # often answered by a description, not a name
    ("What is another name for the border crossing?", "person", False),  # often a term, not a proper name
    ("How long did the visit last?", "number", False),
    ("How long ago did the visit take place?", "date", False),  # asks when, answered by "days ago"
    ("What did the minister say when he arrived?", None, False),  # "when" inside the question asks no date
])
def test_asked_type_reads_the_wording(question, kind, strict):
    assert answer_checks.asked_type(question)[0] == answer_checks.AskedType(kind, strict)


def test_a_person_cue_is_a_name_the_question_does_not_hold():
    _, typed = answer_checks.answer_type_match("Who met Khawaja Asif in Kabul?",
                                      ["Khawaja Asif was there.", "He met Mullah Baradar on Wednesday."])
    assert typed.tolist() == [0.0, 1.0]


@pytest.mark.parametrize("question, kind, strict", [
    ("Which militant group claimed the attack?", "organisation", True),
    ("Which country won the 2022 FIFA World Cup?", "place", True),
    ("Where did the delegation meet the Taliban?", "place", False),
    ("Which countries signed the agreement?", "names", True),
    ("Who were the members of the delegation?", "person", False),  # as before the list kind existed
    ("Why was the Torkham crossing closed?", "reason", False),
    ("What caused the floods?", "reason", False),
    ("What is the TTP?", "definition", False),
])
def test_the_other_kinds_a_question_asks_for(question, kind, strict):
    assert answer_checks.asked_type(question)[0] == answer_checks.AskedType(kind, strict)


@pytest.mark.parametrize("kind, question, carrying, not_carrying", [
    ("organisation", "Which group attacked the post?",
     "Tehreek-e-Taliban Pakistan (TTP) claimed the attack.", "Militants attacked the post at night."),
    ("place", "Where did the delegation travel?",
     "The delegation traveled to Kabul on Wednesday.", "The delegation traveled abroad on Wednesday."),
    ("names", "Which countries signed the agreement?",
     "The agreement was signed by Pakistan and Afghanistan.", "The agreement was signed by Pakistan."),
    ("reason", "Why was the crossing closed?",
     "The crossing was closed because of a clash between border forces.", "The crossing was closed on Sunday."),
])
def test_a_sentence_carries_an_answer_of_the_kind_asked(kind, question, carrying, not_carrying):
    assert answer_checks.carries(kind, carrying, question)
    assert not answer_checks.carries(kind, not_carrying, question)


def test_a_name_the_question_already_uses_is_no_answer():
    assert not answer_checks.carries("place", "The delegation went to Kabul.", "Where in Kabul did the delegation go?")


def test_the_checks_of_a_sentence_that_answers(fast_engine):
    index = fast_engine.index
    sid = next(i for i, s in enumerate(index.sentences) if s.text.startswith("Six Taliban fighters were killed"))
    checks = answer_checks.check_best(index, "How many Taliban fighters were killed in the clash?", sid)
    assert checks == {"kind_missing_nearby": 0.0, "subject_missing": 0.0, "terms_missing_nearby": 0.0}
    assert set(checks) == set(answer_checks.CHECKS)


def test_a_sentence_about_the_subject_without_the_asked_kind_fails_the_kind_check(fast_engine):
    index = fast_engine.index
    sid = next(i for i, s in enumerate(index.sentences) if s.text.startswith("Traders on both sides"))
    checks = answer_checks.check_best(index, "How much did the traders at the Torkham crossing lose?", sid)
    # "The crossing reopened on Friday …" before it and nothing after: no quantity anywhere near
    assert checks["kind_missing_nearby"] == 1.0
    assert checks["subject_missing"] == 1.0  # "Torkham" is two sentences before: not its immediate context
    assert 0.0 < checks["terms_missing_nearby"] < 1.0  # nor are "Torkham" and "lose"; "crossing" is


def test_a_sentence_about_another_subject_fails_the_subject_and_term_checks(fast_engine):
    index = fast_engine.index
    sid = next(i for i, s in enumerate(index.sentences) if s.text.startswith("The national cricket final"))
    checks = answer_checks.check_best(index, "What did the Taliban say about the Torkham border?", sid)
    assert checks["subject_missing"] == 1.0  # neither "Taliban" nor "Torkham" is near
    weather = answer_checks.check_best(index, "What was the weather like in Lahore?", sid)
    assert weather["terms_missing_nearby"] > 0.5  # "weather", a term the corpus never uses, weighs the most
    assert weather["subject_missing"] == 0.0  # "Lahore" is there


def test_without_a_candidate_every_check_fails(fast_engine):
    checks = answer_checks.check_best(fast_engine.index, "How many trucks crossed?", None)
    assert checks == {"kind_missing_nearby": 1.0, "subject_missing": 1.0, "terms_missing_nearby": 1.0}


def test_the_window_stays_in_the_sentence_s_document(fast_engine):
    index = fast_engine.index
    for sid in range(len(index.sentences)):
        near = answer_checks.window(index, sid)
        assert sid in near and {index.sentences[i].doc_id for i in near} == {index.sentences[sid].doc_id}
        assert np.all(np.abs(np.array(near) - sid) <= 1)

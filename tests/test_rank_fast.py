"""Sentence ranking, duplicate grouping and abstention on a small index built with the stand-in encoder
(tests/fakes.py): the logic of qa/rank.py and qa/engine.py without the model. The stand-in only knows shared
word pieces, so these questions use the words of the sentence that answers them."""

from __future__ import annotations

import numpy as np
import pytest

from qa import rank
from qa.config import RETRIEVERS
from qa.engine import NOT_FOUND, Engine

KILLED = "How many Taliban fighters were killed in the clash?"


def _raw(engine: Engine, doc_id: str) -> str:
    return engine.index.documents[doc_id].raw


@pytest.mark.parametrize("mode", RETRIEVERS)
def test_the_sentence_holding_the_answer_comes_first(fast_engine, mode):
    answer = fast_engine.ask(KILLED, retriever=mode, top_k=3)
    assert answer.answered and answer.retriever == mode
    first = answer.sentences[0]
    assert first.text.startswith("Six Taliban fighters were killed")
    for s in answer.sentences:
        assert _raw(fast_engine, s.citation.doc_id)[s.citation.start:s.citation.end] == s.text
    scores = [s.score for s in answer.sentences]
    assert scores == sorted(scores, reverse=True)


def test_the_same_statement_in_two_articles_is_one_answer_with_both_citations(fast_engine):
    first = fast_engine.ask(KILLED, top_k=3).sentences[0]
    places = {first.citation.doc_id, *(c.doc_id for c in first.also_in)}
    assert places == {"torkham.txt", "wire.txt"}
    texts = [s.text for s in fast_engine.ask(KILLED, top_k=5).sentences]
    assert len(texts) == len(set(texts))  # the copy is not listed again as its own answer


def test_top_k_defaults_to_the_settings(fast_engine, monkeypatch):
    monkeypatch.setattr(fast_engine, "settings", fast_engine.settings.model_copy(update={"top_k": 2,
                                                                                          "retriever": "bm25"}))
    answer = fast_engine.ask("Who led the Pakistani delegation that visited Kabul?")
    assert answer.retriever == "bm25" and len(answer.sentences) == 2


def test_a_number_question_is_refused_when_no_candidate_holds_a_number(fast_engine):
    """The strict answer-type veto: "how many" over sentences that name no quantity."""
    question = "How many tents did the relief agencies send?"
    scored = fast_engine.score(fast_engine.query(question, "hybrid"), "hybrid")
    features = rank.abstention_features(scored, fast_engine.profile.abstention.token_match_centre)
    assert features["strict_type_missing"] == 1.0
    answer = fast_engine.ask(question)
    assert not answer.answered and answer.message == NOT_FOUND and answer.sentences == []
    # Asked without the number, the same sentence answers.
    plain = fast_engine.ask("What did the relief agencies send?")
    assert plain.answered and plain.sentences[0].text.startswith("Relief agencies sent tents")


def test_a_question_naming_what_the_corpus_never_mentions_is_refused(fast_engine):
    assert rank.names_unseen(fast_engine.index, "Who won the FIFA World Cup?")
    assert not rank.names_unseen(fast_engine.index, "Who met Mullah Baradar?")
    assert not fast_engine.ask("Who won the FIFA World Cup?").answered


def test_abstain_false_keeps_the_ranking(fast_engine):
    answer = fast_engine.ask("How many tents did the relief agencies send?", abstain=False, top_k=3)
    assert not answer.answered and answer.sentences
    assert answer.sentences[0].citation.doc_id == "sindh.txt"


def test_confidence_is_the_logistic_model_over_the_features(fast_engine):
    ranked = fast_engine.ranked(fast_engine.query(KILLED, "hybrid"), "hybrid")
    abstention = fast_engine.profile.abstention
    model = abstention.models["hybrid"]
    features = fast_engine.decision_features(ranked, KILLED)
    assert set(features) == set(rank.DECISION_FEATURES)
    z = model["bias"] + sum(w * features[name] for name, w in model.items() if name != "bias")
    expected = 1 / (1 + np.exp(-z))
    if fast_engine.reader is None or not abstention.reader_weight:
        assert fast_engine.confidence(ranked, KILLED, "hybrid", exact=True) == pytest.approx(expected)
    assert rank.confidence(0.0, ranked.scored, abstention) == pytest.approx(0.5)  # not read: no reader term


def test_a_question_answered_within_given_sentences_has_a_threshold_of_its_own(fast_engine):
    engine = fast_engine.with_index(fast_engine.index, fast_engine.settings.model_copy(
        update={"abstain_threshold": 0.0, "abstain_threshold_within": 0.5}))
    query = engine.query("How many tents did the relief agencies send?", "hybrid")  # vetoed: no number
    assert engine.answer(query, top_k=3, mode="hybrid").answered  # threshold 0: every question is answered
    within = engine.index.document_sentences["sindh.txt"]  # a follow-up kept to its topic's document
    assert not engine.answer(query, top_k=3, mode="hybrid", within=within).answered

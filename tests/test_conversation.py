"""Conversations: how follow-ups are read with their history (qa/conversation/expansion.py), which documents
they are answered from and how their candidates are re-ranked (qa/conversation/followup.py), and the
service end to end through the engine (qa/conversation/service.py). The store is in
tests/test_conversation_store.py, the word-list cues in tests/test_cues.py.

The engine tests use the real seed index under index/ (built on first use) and the real model; only the
conversation store lives in a temporary folder.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from qa import conversation as conv
from qa.conversation import Turn, UnknownConversation
from qa.cues import anaphora
from qa.engine import Engine
from qa.types import Answer, Citation
from tests.fakes import TORKHAM, cite, turn

# -- reading a question with its history -------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine(seed_settings, seed_engine, tmp_path_factory):
    """The test session's seed index (tests/conftest.py) with a conversation store of this module's own."""
    return Engine.open(seed_settings.model_copy(update={"data_dir": tmp_path_factory.mktemp("qa-data")}))


def test_history_terms_take_salient_terms_by_recency(engine):
    history = [turn("Why was the Torkham crossing closed?"), turn("When did it reopen?", "…")]
    added = conv.history_terms("Who is allowed to cross now?", history, engine.index)
    stems = [t for t, _, _ in added]
    weights = dict((t, w) for t, _, w in added)
    assert "torkham" in stems and "reopen" in stems
    assert "cross" not in stems  # already in the question
    assert "did" not in stems  # words that frame a question are never carried over
    assert {w for _, w, _ in added} >= {"Torkham"}  # the surface form is kept for display
    # decay 1.0: every turn of the topic weighs alike, so a term's weight is its idf over the corpus's largest
    assert conv.DEFAULT_READING.decay == 1.0
    max_idf = max(engine.index.sentence_idf.values())
    for stem in ("torkham", "reopen"):
        assert weights[stem] == pytest.approx(engine.index.sentence_idf[stem] / max_idf)
    # with a decay, the older question's terms weigh less (down to topic_floor for the turn that opened it)
    halved = conv.history_terms("Who is allowed to cross now?", history, engine.index,
                                replace(conv.DEFAULT_READING, decay=0.5, topic_floor=0.0, min_salience=0.0))
    decayed = {t: w for t, _, w in halved}
    assert decayed["reopen"] == pytest.approx(weights["reopen"])
    assert decayed["torkham"] == pytest.approx(weights["torkham"] * 0.5)


def test_history_is_cut_at_a_new_topic():
    history = [turn("Why was the Torkham crossing closed?"), turn("When did it reopen?", "… [+ Torkham]"),
               turn("What did Bilawal Bhutto say in Munich?"), turn("What was his concern?", "… [+ Bhutto]")]
    assert [t.question for t in conv.topic_turns(history)] == [h.question for h in history[2:]]


def test_follow_up_is_read_with_history(engine):
    history = [turn("Why was the Torkham crossing closed?")]
    query = conv.understand("When did it reopen?", history, engine)
    assert query.understood_as is not None and query.understood_as.startswith("When did it reopen? [+ ")
    assert "Torkham" in query.understood_as
    assert {"reopen", "torkham"} <= set(query.terms) and query.terms.count("reopen") >= 1  # its own terms, once
    assert query.vector is not None and abs(float(query.vector @ query.vector) - 1.0) < 1e-4
    # the word-piece match and a neighbour's cosine are for standalone questions: a follow-up's words are too few
    assert query.tokens is None and not query.neighbour_cosine


def test_elliptical_question_without_entity_uses_history(engine):
    history = [turn("What happened in the clash between the Taliban and Pakistani border forces?")]
    assert not conv.self_contained("Was anyone hurt?", engine.index, history=history)
    assert "clash" in conv.understand("Was anyone hurt?", history, engine).terms


def test_topic_change_is_not_dragged_back(engine):
    history = [turn("Why was the Torkham crossing closed?"), turn("When did it reopen?", "… [+ Torkham]")]
    question = "What did Bilawal Bhutto say at the Munich Security Conference?"
    assert conv.self_contained(question, engine.index, history=history)
    query = conv.understand(question, history, engine)
    assert query.understood_as is None
    assert query.terms == engine.index.analyzer.terms(question)
    assert query.tokens is not None  # read as a standalone question, word pieces included


def test_definite_phrase_points_back(engine):
    history = [turn("Since when has the TTP intensified its attacks?", None,
                    ["TTP is a group that has intensified attacks in Pakistan."])]
    assert conv.definite_references("What does the UN say the group is doing?", history, engine.index) == ["the group"]
    assert conv.definite_references("What does the UN report say?", history, engine.index) == []  # named
    # only the head noun counts: "two" was said ("two months"), but "sides" was not
    later = [turn("When did Hamid go back?", None, ["Hamid again traveled to Afghanistan two months after."])]
    assert conv.definite_references("What did the two sides agree?", later, engine.index) == []
    assert conv.definite_references("Where did the second trip go?", later, engine.index) == []
    assert conv.definite_references("How long were the two months?", later, engine.index) == ["the two months"]
    assert not conv.self_contained("What does the UN say the group is doing?", engine.index, history=history)


def test_bm25_mode_needs_no_vector(engine):
    query = conv.understand("When did it reopen?", [turn("Why was the Torkham crossing closed?")], engine, mode="bm25")
    assert query.vector is None and "torkham" in query.terms


# -- the engine, end to end ---------------------------------------------------------------------------------

# From gold conversations c08 and c02 (eval/conversations.jsonl): a question, a follow-up whose answer is in
# the same sentence, a change of topic, and a follow-up on the new topic ("his" = Bhutto).
CONVERSATION = [
    ("What did Pakistan present to the Afghan Taliban about TTP hideouts?",
     "Pakistan has presented “irrefutable evidence”", False),
    ("Who reported that?", "The Express Tribune reported", True),
    ("What did Bilawal Bhutto say at the Munich Security Conference?", "groups impose a threat to the region", False),
    ("What was his concern about the Taliban government?", "The concern is that if we do not take", True),
]


def test_four_turn_conversation(engine):
    cid = engine.conversations.create()
    for question, expected, reads_history in CONVERSATION:
        answer = engine.ask(question, conversation_id=cid)
        assert answer.answered, question
        assert expected in answer.sentences[0].text, (question, answer.understood_as, answer.sentences[0].text)
        # the change of subject is read on its own words (answered from the topic's article or, when its
        # evidence is elsewhere, as a new topic); the follow-ups add history terms ("[+ …]")
        assert ("[+ " in (answer.understood_as or "")) == reads_history, (question, answer.understood_as)
        assert answer.conversation_id == cid and answer.to_dict()["conversation_id"] == cid
        doc = engine.document(answer.sentences[0].citation.doc_id)
        c = answer.sentences[0].citation
        assert doc.raw[c.start:c.end] == answer.sentences[0].text
    turns = engine.conversations.turns(cid)
    assert [t.question for t in turns] == [q for q, _, _ in CONVERSATION]
    assert turns[3].understood_as and ("Bhutto" in turns[3].understood_as or "Bilawal" in turns[3].understood_as)
    assert turns[0].texts[0] == engine.document(turns[0].citations[0].doc_id).raw[
        turns[0].citations[0].start:turns[0].citations[0].end]


def test_conversation_survives_a_new_engine(engine):
    cid = engine.conversations.create()
    engine.ask("Who is Faiz Hamid?", conversation_id=cid)
    restarted = Engine(engine.settings, engine.index)  # a new process would see the same file
    assert restarted.conversations is not engine.conversations
    assert [t.question for t in restarted.conversations.turns(cid)] == ["Who is Faiz Hamid?"]
    answer = restarted.ask("When did he go back to Afghanistan?", conversation_id=cid)
    assert answer.understood_as and "Hamid" in answer.understood_as
    assert "Hamid again traveled to Afghanistan" in answer.sentences[0].text
    assert len(engine.conversations.turns(cid)) == 2


def test_unknown_conversation_and_create_missing(engine):
    with pytest.raises(UnknownConversation):
        engine.ask("When did it reopen?", conversation_id="never-created")
    answer = engine.ask("Who is Faiz Hamid?", conversation_id="work", create_missing=True)
    assert answer.conversation_id == "work" and engine.conversations.exists("work")
    plain = engine.ask("Who is Faiz Hamid?")
    assert plain.conversation_id is None and "conversation_id" not in plain.to_dict()


def test_cli_chat(engine, monkeypatch):
    from typer.testing import CliRunner

    from qa.cli import app

    monkeypatch.setenv("QA_DATA_DIR", str(engine.settings.data_dir))
    result = CliRunner().invoke(app, ["chat", "--conversation", "cli-chat",
                                      "--index-root", str(engine.settings.index_root)],
                                input="/help\nWho is Faiz Hamid?\n/sources\n/new\n/sources\n")  # then EOF
    assert result.exit_code == 0, result.output
    assert "/sources" in result.output and "Faiz Hamid" in result.output
    assert "sentence 25" in result.output and "no sources yet" in result.output
    assert [t.question for t in engine.conversations.turns("cli-chat")] == ["Who is Faiz Hamid?"]


# -- the previous answer and repeated answers, elliptical and 'that' follow-ups (Reading.same_last, repeats, ...) --


def test_elliptical_question_takes_the_previous_answers_terms(engine):
    assert conv.is_elliptical("Why?", engine.index)
    assert not conv.is_elliptical("Who brokered it?", engine.index)  # an unknown word still says what it asks
    history = [turn("What was the mood in Pakistan at the time?", None,
                    ["Pakistan's delegation's visit took place amid increasing anger in Pakistan."])]
    stems = [t for t, _, _ in conv.history_terms("Why?", history, engine.index)]
    assert "anger" in stems
    off = replace(conv.DEFAULT_READING, elliptical=0.0)
    assert "anger" not in [t for t, _, _ in conv.history_terms("Why?", history, engine.index, off)]


def _ranked(*places: int) -> Answer:
    from qa.types import AnswerSentence

    return Answer("q", True, [AnswerSentence(f"s{i}", cite(index=i), 1.0) for i in places], "hybrid")


# -- a follow-up about the previous answer itself (Reading.about_previous) ------------------------------------


def test_a_follow_up_can_ask_about_the_previous_answer_itself(engine):
    # 30: "On Friday, the Torkham border crossing reopened – …"; 31: "However, Friday's reopening came with
    # conditions."; 32: "Only people with family living in Pakistan … are allowed to cross."
    index = engine.index
    assert conv.asks_about_previous(index, "When did it reopen?", TORKHAM, 30)  # "reopen" is in 30 (and 31)
    assert not conv.asks_about_previous(index, "Who is allowed to cross now?", TORKHAM, 30)  # 32 holds it
    off = replace(conv.DEFAULT_READING, about_previous=0.0)
    assert not conv.asks_about_previous(index, "When did it reopen?", TORKHAM, 30, off)
    # the next sentence holds more of the question than the previous answer: it is asked for what follows
    ceasefire = next(s for s in index.sentences if s.text.startswith("Since the end of the ceasefire"))
    assert not conv.asks_about_previous(index, "What have Pakistani officials said since it ended?",
                                        ceasefire.doc_id, ceasefire.index - 1)


# -- bound possessives (Reading.bound_possessives) --------------------------------------------------------------


def test_his_or_her_after_a_name_in_the_question_is_bound_by_it(engine):
    question = "Who did Faiz Hamid meet on his second trip to Afghanistan?"
    assert anaphora(question) == ["his"]
    assert anaphora(question, bound_possessives=True) == []
    assert anaphora("What did he say about his concern?", bound_possessives=True) == ["he", "his"]
    assert anaphora("What was his concern about the Taliban government?", bound_possessives=True) == ["his"]
    history = [turn("What did Bilawal Bhutto say about Afghanistan?", None, ["Terrorist groups impose a threat"])]
    assert conv.self_contained(question, engine.index, conv.DEFAULT_READING, history)  # a new topic
    off = replace(conv.DEFAULT_READING, bound_possessives=False)
    assert not conv.self_contained(question, engine.index, off, history)


# -- the learned follow-up ranker (the profile's followup_model) ---------------------------------------------------


def _column(name: str) -> int:
    return conv.FOLLOWUP_FEATURES.index(name)


def test_followup_features_say_where_each_candidate_lies(engine):
    # the topic was answered with sentence 10, then with sentence 30 (the previous answer)
    history = [Turn("Why was the Torkham crossing closed?", None, True, [cite(TORKHAM, 10)], conv.utc_now(), ["a"]),
               Turn("When did it reopen?", "… [+ Torkham]", True, [cite(TORKHAM, 30)], conv.utc_now(), ["b"])]
    plain = engine.query("Who is allowed to cross now?", "hybrid")
    answer = _ranked(30, 31, 32, 29, 11, 9, 10)
    x = conv.followup_features(engine, plain, history, answer)
    assert x.shape == (7, len(conv.FOLLOWUP_FEATURES))
    rows = {s.citation.sentence_index: row for s, row in zip(answer.sentences, x)}
    expected = {30: "previous answer", 31: "1 after it", 32: "2 after it", 29: "1 before it",
                10: "older answer", 11: "1 after an older", 9: "1 before an older"}
    places = [_column(n) for n in expected.values()]
    for sentence, name in expected.items():
        assert [rows[sentence][c] for c in places] == [float(c == _column(name)) for c in places], sentence
    assert np.all(x[:, _column("same article")] == 1.0)
    assert np.all(x[:, _column("with history")] == 0.0)  # every candidate had the same score: each is the best
    # relevance of the question alone: relative to the best sentence of the corpus (≤ 0); sentence 32
    # ("Only people with family … are allowed to cross") holds more of the question than sentence 9
    assert np.all(x[:, _column("alone")] <= 0.0)
    assert rows[32][_column("alone coverage")] > rows[9][_column("alone coverage")]
    assert rows[32][_column("alone cosine")] == pytest.approx(
        float(engine.index.sentence_vectors[engine.index.sentence_ids[(TORKHAM, 32)]] @ plain.vector),
        abs=1e-5)


def test_followup_features_of_a_question_about_the_previous_answer_and_of_an_elliptical_one(engine):
    history = [Turn("Why was the Torkham crossing closed?", None, True, [cite(TORKHAM, 30)], conv.utc_now(), ["a"])]
    about = conv.followup_features(engine, engine.query("When did it reopen?", "hybrid"), history, _ranked(30, 31))
    assert list(about[:, _column("about previous × 1 after")]) == [0.0, 1.0]
    assert not about[:, _column("elliptical × previous")].any()
    why = conv.followup_features(engine, engine.query("Why?", "hybrid"), history, _ranked(30, 31))
    assert list(why[:, _column("elliptical × previous")]) == [1.0, 0.0]
    assert list(why[:, _column("elliptical × 1 after")]) == [0.0, 1.0]
    assert not why[:, _column("about previous × 1 after")].any()


def test_a_sentence_that_answered_twice_is_marked(engine):
    history = [Turn(q, u, True, [cite(TORKHAM, 30)], conv.utc_now(), ["a"]) for q, u in (("q1", None),
                                                                                          ("q2", "q2 [+ …]"))]
    x = conv.followup_features(engine, engine.query("Who is allowed to cross now?", "hybrid"), history,
                               _ranked(30, 31))
    assert list(x[:, _column("answered twice")]) == [1.0, 0.0]


def test_rank_followup_orders_by_the_models_log_odds():
    answer = _ranked(1, 2, 3)
    features = np.zeros((3, len(conv.FOLLOWUP_FEATURES)))
    features[:, :2] = [[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]
    weights = dict(zip(conv.FOLLOWUP_FEATURES, [2.0, -0.5] + [7.0] * (len(conv.FOLLOWUP_FEATURES) - 2)))
    conv.rank_followup(answer, features, weights)
    assert [s.citation.sentence_index for s in answer.sentences] == [2, 3, 1]
    assert [s.score for s in answer.sentences] == pytest.approx([2.0, 1.5, -0.5])
    with pytest.raises(ValueError, match="re-fit"):
        conv.rank_followup(answer, features, {k: v for k, v in weights.items() if k != "same article"})


def test_the_learned_ranker_answers_a_follow_up(engine):
    history = []
    for question in ("Why was the Torkham crossing closed?", "When did it reopen?"):
        answer = conv.answer_turn(engine, question, history, top_k=3, mode="hybrid")
        history.append(Turn.from_answer(question, answer))
    assert "On Friday, the Torkham border crossing reopened" in history[1].texts[0]
    assert history[1].understood_as and "Torkham" in history[1].understood_as
    answer = conv.answer_turn(engine, "Who is allowed to cross now?", history, top_k=3, mode="hybrid")
    assert answer.sentences[0].text.startswith("Only people with family") and len(answer.sentences) == 3
    # weights that ignore everything but the question alone's coverage rank by it
    only = {name: float(name == "alone coverage") for name in conv.FOLLOWUP_FEATURES}
    answer = conv.answer_turn(engine, "Who is allowed to cross now?", history, top_k=3, mode="hybrid",
                              reading=replace(conv.DEFAULT_READING, followup_model=only))
    scores = [s.score for s in answer.sentences]
    assert scores == sorted(scores, reverse=True) and all(0.0 <= v <= 1.0 for v in scores)


# -- keeping the topic's documents ----------------------------------------------------------------------------

ISLAMABAD = "000_f45c79c16f6a0511.txt"


def answered_in(doc_id: str, question: str, engine: Engine, sentence_index: int = 5) -> Turn:
    """A turn answered with one sentence of ``doc_id`` (as if the engine had chosen it)."""
    sentence = next(s for s in engine.index.sentences if s.doc_id == doc_id and s.index == sentence_index)
    citation = Citation(doc_id, engine.document(doc_id).title, sentence.index, sentence.start, sentence.end)
    return Turn(question, None, True, [citation], conv.utc_now(), [sentence.text])


def test_topic_documents_are_where_the_topics_answers_came_from(engine):
    history = [answered_in(ISLAMABAD, "Who visited Kabul?", engine),
               replace(answered_in(TORKHAM, "And then?", engine), understood_as="And then? [+ Kabul]")]
    assert conv.topic_documents(history) == [TORKHAM, ISLAMABAD]  # most recent first
    new = replace(answered_in(TORKHAM, "Who won?", engine), understood_as=conv.NEW_TOPIC + "Who won?")
    assert conv.starts_topic(new.understood_as) and conv.topic_documents([*history, new]) == [TORKHAM]


def test_a_follow_up_is_answered_from_the_topics_document(engine):
    history = [answered_in(ISLAMABAD, "What did Pakistan present to the Afghan Taliban?", engine)]
    single = replace(conv.DEFAULT_READING, story_cosine=None)  # the topic's own document only
    answer = conv.answer_turn(engine, "Who reported that?", history, top_k=5, mode="hybrid", abstain=False,
                              reading=single)
    assert answer.sentences and {s.citation.doc_id for s in answer.sentences} == {ISLAMABAD}
    assert answer.understood_as is not None and not conv.starts_topic(answer.understood_as)
    # without topic keeping the same follow-up searches the whole corpus
    free = conv.answer_turn(engine, "Who reported that?", history, top_k=5, mode="hybrid", abstain=False,
                            reading=replace(conv.DEFAULT_READING, keep_topic=False))
    assert len({s.citation.doc_id for s in free.sentences}) == 2
    # the two seed articles tell one story (mean-vector cosine 0.875 ≥ story_cosine): the topic holds both
    kept = conv.focus(engine, "Who reported that?", engine.query("Who reported that?", "hybrid"), history,
                      mode="hybrid")
    assert kept.documents == (ISLAMABAD, TORKHAM)


def test_a_named_question_whose_evidence_is_elsewhere_starts_a_new_topic_and_says_so(engine):
    history = [answered_in(ISLAMABAD, "What did Pakistan present to the Afghan Taliban?", engine)]
    question = "Why was the Torkham border crossing closed?"  # Torkham is named only in the other article
    reading = replace(conv.DEFAULT_READING, new_topic_margin=0.0, story_cosine=None)  # one document a topic
    assert conv.focus(engine, question, engine.query(question, "hybrid"), history, mode="hybrid",
                      reading=reading).new_topic
    answer = conv.answer_turn(engine, question, history, top_k=5, mode="hybrid", reading=reading)
    assert answer.understood_as == conv.NEW_TOPIC + question
    assert answer.sentences[0].citation.doc_id == TORKHAM
    # a named question that its topic's document answers stays there, read on its own words
    stay = "What did Pakistan's delegation discuss with Mullah Baradar's office?"
    single = replace(conv.DEFAULT_READING, story_cosine=None)
    kept = conv.focus(engine, stay, engine.query(stay, "hybrid"), history, mode="hybrid", reading=single)
    assert kept.documents == (ISLAMABAD,) and kept.named and not kept.new_topic
    answer = conv.answer_turn(engine, stay, history, top_k=5, mode="hybrid", abstain=False, reading=single)
    assert f"[{conv.SAME_DOCUMENTS}]" in answer.understood_as


def test_a_follow_up_whose_evidence_is_in_another_document_moves_there(engine):
    # The opener was answered from the wrong article: the follow-up's best sentence is in the other one.
    history = [answered_in(ISLAMABAD, "Why was the Torkham border crossing closed?", engine)]
    reading = replace(conv.DEFAULT_READING, switch_margin=0.0, story_cosine=None)  # one document a topic
    answer = conv.answer_turn(engine, "When did it reopen?", history, top_k=5, mode="hybrid", reading=reading,
                              abstain=False)
    assert answer.sentences[0].citation.doc_id == TORKHAM
    assert "[now in" in answer.understood_as and engine.document(TORKHAM).title[:20] in answer.understood_as
    stay = conv.answer_turn(engine, "When did it reopen?", history, top_k=5, mode="hybrid", abstain=False,
                            reading=replace(reading, switch_margin=99.0))
    assert {s.citation.doc_id for s in stay.sentences} == {ISLAMABAD} and "[now in" not in stay.understood_as
    # past its first refocus_turns turns a topic's story is settled: the same follow-up stays
    settled = conv.answer_turn(engine, "When did it reopen?", history, top_k=5, mode="hybrid", abstain=False,
                               reading=replace(reading, refocus_turns=0))
    assert {s.citation.doc_id for s in settled.sentences} == {ISLAMABAD}
    assert "[now in" not in (settled.understood_as or "")


def test_documents_fix_where_a_turn_is_answered(engine):
    answer = conv.answer_turn(engine, "Why was the Torkham border crossing closed?", [], top_k=3, mode="hybrid",
                              abstain=False, documents=(ISLAMABAD,))
    assert answer.sentences and {s.citation.doc_id for s in answer.sentences} == {ISLAMABAD}


def test_a_topic_that_holds_every_document_is_not_searched_for_another(engine):
    everything = tuple(engine.index.document_sentences)
    assert conv.covers_corpus(engine.index, everything) and not conv.covers_corpus(engine.index, everything[:1])
    question = "When did it reopen?"
    assert conv.outside_evidence(engine, engine.query(question, "hybrid"), "hybrid", everything) == conv.Evidence()

"""Follow-up questions read with the conversation so far, on the stand-in encoder's small index
(tests/conftest.py ``fast_engine``): history expansion, topic changes and the stored turns, without the model."""

from __future__ import annotations

from qa import conversation as conv


def test_a_follow_up_is_read_with_the_topic_of_the_conversation(fast_engine):
    first = fast_engine.ask("Why was the Torkham crossing closed?", conversation_id="fast-1", create_missing=True)
    assert first.understood_as is None and first.sentences[0].citation.doc_id == "torkham.txt"
    follow = fast_engine.ask("When did it reopen?", conversation_id="fast-1")
    assert follow.understood_as is not None and follow.understood_as.startswith("When did it reopen? [+ ")
    assert "Torkham" in follow.understood_as
    assert follow.answered and {s.citation.doc_id for s in follow.sentences[:2]} == {"torkham.txt"}


def test_a_self_contained_question_starts_a_new_topic(fast_engine):
    fast_engine.ask("Why was the Torkham crossing closed?", conversation_id="fast-2", create_missing=True)
    other = fast_engine.ask("Which villages flooded in Sindh province?", conversation_id="fast-2")
    assert other.understood_as == conv.NEW_TOPIC + "Which villages flooded in Sindh province?"  # nothing added
    assert other.sentences[0].citation.doc_id == "sindh.txt"
    turns = fast_engine.conversations.turns("fast-2")
    assert [t.question for t in turns] == ["Why was the Torkham crossing closed?",
                                           "Which villages flooded in Sindh province?"]
    assert conv.topic_turns(turns)[-1].question == "Which villages flooded in Sindh province?"


def test_history_terms_come_from_the_topic_and_skip_the_question_s_own(fast_engine):
    history = fast_engine.conversations.turns("fast-1")
    added = {stem for stem, _, _ in conv.history_terms("Who was allowed to cross?", history, fast_engine.index)}
    assert "torkham" in added
    assert "cross" not in added  # already in the question

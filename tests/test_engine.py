"""End to end on the real seed corpus: the sentence a reader would cite comes first."""

import json

import pytest

from qa.config import RETRIEVERS
from qa.engine import NOT_FOUND, InvalidQuestion

SEED_A = "000_f45c79c16f6a0511.txt"
SEED_B = "004_efe84b1d27e376f8.txt"

CASES = [
    ("Who led the Pakistani delegation that visited Kabul?", "Asif"),
    ("When did the Torkham border crossing reopen?", "On Friday, the Torkham border crossing reopened"),
    ("How many Taliban members were killed in the clash?", "two Taliban members were killed"),
    ("Which conditions came with Friday's reopening of the border?", "Friday’s reopening came with conditions"),
    ("Who can cross the border to get medical treatment?", "urgent need of medical treatment"),
    ("Where did the Afghan Taliban host talks between TTP members and Pakistani officials?",
     "hosted several rounds of talks between TTP members and Pakistani officials in Kabul"),
    ("Who did the delegation meet in Kabul according to Pakistan's foreign ministry?", "Sirajuddin Haqqani"),
    ("What did Pakistan present to the Afghan Taliban about TTP hideouts?", "irrefutable evidence"),
    ("Who is Shinkai Karokhail?", "former Afghan ambassador to Canada"),
    ("Who visited Kabul a day after the Taliban returned to power?", "Faiz Hamid"),
]


@pytest.mark.parametrize("question,expected", CASES)
def test_expected_sentence_first(seed_engine, question, expected):
    answer = seed_engine.ask(question, top_k=3)
    assert answer.answered, answer.confidence
    first = answer.sentences[0]
    assert expected in first.text
    raw = seed_engine.index.documents[first.citation.doc_id].raw
    assert raw[first.citation.start:first.citation.end] == first.text


# Off-corpus questions: no topic shared with the articles, or a name they never use. The rule refuses 97 % of
# SQuAD's questions asked of the seed corpus (docs/DECISIONS.md); "Who won the 2022 football World Cup?"
# finds "the world", which a rule without the unseen-name term let through; "Cup" is a name the corpus never uses.
@pytest.mark.parametrize("question", ["What is the capital of France?", "Who painted the Mona Lisa?",
                                      "Who won the 2022 football World Cup?", "Who won the Wimbledon final last year?"])
def test_unanswerable_questions_are_refused(seed_engine, question):
    answer = seed_engine.ask(question)
    assert not answer.answered
    assert answer.sentences == [] and answer.message == NOT_FOUND


def test_repeated_fact_is_one_answer_with_both_citations(seed_engine):
    answer = seed_engine.ask("What did Bilawal Bhutto say at the Munich Security Conference?", top_k=3)
    first = answer.sentences[0]
    docs = {first.citation.doc_id, *(c.doc_id for c in first.also_in)}
    assert docs == {SEED_A, SEED_B}
    for c in [first.citation, *first.also_in]:
        s = seed_engine.index.documents[c.doc_id].raw[c.start:c.end]
        assert "Munich Security Conference" in s


@pytest.mark.parametrize("retriever", RETRIEVERS)
def test_every_retriever_answers_with_exact_citations(seed_engine, retriever):
    answer = seed_engine.ask("Why did the Taliban close the Torkham crossing?", top_k=5, retriever=retriever)
    assert answer.retriever == retriever and answer.sentences
    scores = [s.score for s in answer.sentences]
    assert scores == sorted(scores, reverse=True)
    for s in answer.sentences:
        assert seed_engine.index.documents[s.citation.doc_id].raw[s.citation.start:s.citation.end] == s.text


@pytest.mark.parametrize("bad", ["", "   ", "x" * 1001])
def test_invalid_questions_are_rejected(seed_engine, bad):
    with pytest.raises(InvalidQuestion):
        seed_engine.ask(bad)


def test_unknown_retriever_is_rejected(seed_engine):
    with pytest.raises(InvalidQuestion):
        seed_engine.ask("Who is Bilawal Bhutto?", retriever="magic")


def test_a_profile_naming_an_unknown_feature_is_refused_at_start(seed_engine, tmp_path):
    from qa.engine import Engine
    from qa.profile import ProfileError, load_profile

    data = load_profile().to_dict()
    data["abstention"]["models"]["hybrid"]["cosine"] = 6.0  # a feature that is not one
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ProfileError, match="unknown features"):
        Engine(seed_engine.settings.model_copy(update={"profile": str(path)}), seed_engine.index)

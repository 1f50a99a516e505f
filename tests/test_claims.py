"""qa/claims.py: the names, numbers and dates of a sentence, and whether two sentences make the same claim.

The pairs are real news sentences (the seed articles) and the changed versions a disagreeing source would
print."""

from __future__ import annotations

import pytest

from qa import claims
from qa.claims import Vocabulary, compare, slots

SOLDIER = "The Pakistani diplomat added that a Pakistani soldier was wounded during the skirmish."
KILLED = "However, sources from the Taliban told Amu TV that two Taliban members were killed in the clash."
CEASEFIRE = ("Pakistan’s delegation’s visit meanwhile took place amid increasing anger in Pakistan after a "
             "months-long ceasefire between the TTP militants and Islamabad ended in late November.")
TORKHAM = "Six days back, the Taliban closed the Torkham border crossing and accused Pakistan of not adhering to its commitments."
AUGUST = "TTP is a hot issue as it ramped up their attacks, seemingly embolden by the return of Taliban to power in August 2021."
KHAR = ("In late November, Pakistan’s State Minister for Foreign Affairs Hina Rabbani Khar visited Kabul and held "
        "talks with Taliban officials.")


def kinds(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for s in slots(text):
        out.setdefault(s.kind, []).append(s.text)
    return out


def test_slots_of_a_news_sentence():
    found = kinds(AUGUST)
    assert found["date"] == ["August 2021"]
    assert "TTP" in found["name"] and "Taliban" in found["name"]
    assert kinds(KHAR)["name"] == ["Pakistan’s State Minister for Foreign Affairs Hina Rabbani Khar", "Kabul", "Taliban"]


def test_every_slot_keeps_its_offsets():
    for text in (AUGUST, KHAR, KILLED, TORKHAM):
        for s in slots(text):
            assert text[s.start:s.end] == s.text


def test_the_same_sentence_is_the_same_claim():
    for text in (SOLDIER, KILLED, CEASEFIRE, TORKHAM, AUGUST, KHAR):
        assert compare(text, text).verdict == "same"


def test_number_words_and_digits_are_equal():
    assert compare(KILLED, KILLED.replace("two", "2")).verdict == "same"
    assert compare("Police said 1,000 people marched.", "Police said 1000 people marched.").verdict == "same"
    assert compare("The fund lost $2.5 million.", "The fund lost $2,500,000.").verdict == "same"
    assert compare("Turnout was 45 percent.", "Turnout was 45%.").verdict == "same"


def test_a_changed_number_is_a_disagreement():
    result = compare(KILLED, KILLED.replace("two", "five"))
    assert result.verdict == "differs" and result.differs == (("two", "five"),)
    assert compare(TORKHAM, TORKHAM.replace("Six", "Three")).differs == (("Six days", "Three days"),)
    assert compare("The fund lost $2.5 million.", "The fund lost $3.5 million.").verdict == "differs"
    assert compare("The march lasted 3 days.", "The march lasted 3 weeks.").verdict == "differs"


def test_a_changed_date_is_a_disagreement():
    result = compare(AUGUST, AUGUST.replace("2021", "2020"))
    assert result.verdict == "differs" and result.differs == (("August 2021", "August 2020"),)
    assert compare(CEASEFIRE, CEASEFIRE.replace("November", "October")).differs == (("November", "October"),)
    later = compare("On Friday, the Torkham border crossing reopened.", "On Sunday, the Torkham border crossing reopened.")
    assert later.differs == (("Friday", "Sunday"),)


def test_a_changed_name_is_a_disagreement():
    glenhaven = "The mayor of Glenhaven said on Tuesday that the bridge will reopen in March."
    result = compare(glenhaven, glenhaven.replace("Glenhaven", "Dunmarrow"))
    assert result.verdict == "differs" and result.differs == (("Glenhaven", "Dunmarrow"),)
    assert compare(KHAR, KHAR.replace("Kabul", "Kandahar")).differs == (("Kabul", "Kandahar"),)
    assert compare(SOLDIER, SOLDIER.replace("Pakistani diplomat", "Afghan diplomat")).verdict == "differs"


def test_a_paraphrase_with_the_same_slots_is_the_same_claim():
    paraphrase = "Two Taliban members died in the clash, Taliban sources told Amu TV, however."
    assert compare(KILLED, paraphrase).verdict == "same"
    moved = "The Taliban shut the Torkham border crossing six days back, accusing Pakistan of failing to keep its commitments."
    assert compare(TORKHAM, moved).verdict == "same"


def test_a_paraphrase_that_changes_a_slot_is_not_called_a_disagreement():
    """Worded differently, the sentences may be about different events: neither the same nor a disagreement."""
    other = "Five Taliban members died in a clash, Taliban sources told Amu TV."
    assert compare(KILLED, other).verdict == "other"


def test_a_slot_said_by_one_sentence_only_is_neither():
    """More or less said is not a contradiction, and not the same claim either."""
    result = compare("Two Taliban members were killed in the clash.",
                     "Two Taliban members were killed in the clash on Sunday.")
    assert result.verdict == "other" and result.differs == ()


def test_a_partial_name_matches_the_full_one():
    assert compare("Imran Khan met Mullah Baradar in Kabul on Tuesday.",
                   "Former prime minister Imran Khan met Mullah Baradar in Kabul on Tuesday.").verdict == "same"


def test_the_first_word_is_a_name_when_the_corpus_says_so():
    a, b = "Torkham reopened on Friday.", "Chaman reopened on Friday."
    assert compare(a, b).verdict == "same"  # nothing says these opening words are names
    assert compare(a, b, Vocabulary(frozenset({"torkham", "chaman"}))).differs == (("Torkham", "Chaman"),)
    assert compare("Pakistan's army said six soldiers died.", "Afghanistan's army said six soldiers died.").verdict \
        == "differs"  # a possessive marks a name


@pytest.mark.parametrize("text, kind, value", [
    ("They met on December 5, 2023.", "date", "date:2023-12-05"),
    ("They met on 5 December 2023.", "date", "date:2023-12-05"),
    ("The talks began at 5 p.m.", "date", "time:17:00"),
    ("It rained yesterday.", "date", "relative:yesterday"),
    ("Twelve people were hurt.", "number", "12"),
    ("Three hundred and forty-two people were hurt.", "number", "342"),
    ("It cost $1,000.", "number", "USD1000"),
    ("He came third.", "number", "3th"),
])
def test_values_are_normalised(text, kind, value):
    assert [(s.kind, s.value) for s in slots(text) if s.kind == kind] == [(kind, value)]


def test_may_the_verb_is_no_date():
    assert kinds("The Taliban may reopen the crossing.").get("date") is None
    assert kinds("The crossing closed on May 3.")["date"] == ["May 3"]


def test_wording_overlap_separates_a_copy_from_a_paraphrase():
    assert claims.wording_overlap(KILLED, KILLED.replace("two", "five")) == 1.0
    paraphrase = "Two Taliban members died in the clash, Taliban sources told Amu TV, however."
    assert claims.wording_overlap(KILLED, paraphrase) < claims.NEAR_WORDING


def test_a_wording_key_is_shared_by_copies_that_change_a_slot():
    beck = "On social media, some younger people were even wondering aloud: Um, who is Beck?"
    assert claims.wording_key(beck) == claims.wording_key(beck.replace("Beck", "Conference")) != 0
    assert claims.wording_key(KILLED) == claims.wording_key(KILLED.replace("two", "five"))
    assert claims.wording_key(KILLED) != claims.wording_key(SOLDIER)
    assert claims.wording_key("Beck said.") == 0  # too little wording to tell one claim from another
    assert claims.wording_key("The talks were frank and useful.") == 0  # no slot to differ in


def test_number_words_that_are_not_one_number_are_read_word_by_word():
    result = compare("Oscar played a one-two with Eden Hazard.", "Oscar played a one-three with Eden Hazard.")
    assert result.differs == (("one-two", "one-three"),)


def test_may_capitalised_inside_a_sentence_is_the_month():
    assert compare("The ship sank in the dark March night.", "The ship sank in the dark May night.").differs \
        == (("March", "May"),)


def test_a_short_name_does_not_excuse_a_changed_longer_one():
    a = ("Morales said an assistant named by the Bolivian Information Agency violated the rights of Bolivian "
         "citizens, the agency reported Monday.")
    assert compare(a, a.replace("Information", "Lebanese")).differs == (("Bolivian Information Agency",
                                                                         "Bolivian Lebanese Agency"),)

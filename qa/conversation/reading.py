"""How a conversation's history is used: the :class:`Reading` settings, passed explicitly to every function
of the package that reads one. Their values are the ranking profile's ``conversation`` section (qa/profile.py:
the combination chosen by measurement, docs/CONVERSATIONS.md and docs/COQA.md); benchmarks vary them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

# The learned follow-up model's features (qa/conversation/followup.py computes them), by name: the profile's
# ``followup_model`` gives each a weight.
FOLLOWUP_FEATURES = ("with history", "alone", "alone cosine", "alone coverage", "previous answer", "1 after it",
                     "2 after it", "1 before it", "older answer", "1 after an older", "1 before an older",
                     "same article", "answered twice", "about previous × 1 after", "elliptical × previous",
                     "elliptical × 1 after")


@dataclass(frozen=True)
class Reading:
    """How history is used.

    History expansion (qa/conversation/expansion.py):

    - ``decay``: weight of a turn ``d`` turns back is ``decay ** (d - 1)``; the turn that opened the
      topic keeps at least ``topic_floor`` (HQE's "topic keywords").
    - ``max_terms`` / ``min_salience``: at most this many added terms, each with weight × idf share at
      least this (drops words like "said" that are everywhere).
    - ``detect_topic_change``: read self-contained questions without history.
    - ``definite_phrases``: "the group" counts as anaphora when "group" was said earlier in the topic.
    - ``subject_that``: "that" before an auxiliary after a verb of saying is a pronoun ("Do the Taliban say
      that could still happen now?"), so the question is read with history although it names the Taliban.
    - ``bound_possessives``: "his"/"her" after a name in the question is bound by it, so the question can
      start a new topic ("Who did Faiz Hamid meet on his second trip?").
    - ``elliptical``/``elliptical_terms``: a follow-up with at most ``elliptical_terms`` content words of
      its own ("Why?") carries too little for the topic's questions to pick a sentence; it also takes the
      previous answer's salient terms at weight ``elliptical`` (as HQE weighs a question).
    A history-read follow-up's own words are few and vague ("When did it reopen?"): its sentences are not
    scored by their word-piece match or by a neighbour's closer cosine, as a standalone question's are (on the
    tune split both pulled follow-ups away from their answers: docs/DECISIONS.md).

    Re-ranking a history-read follow-up's ``extra_candidates`` more candidates than asked for, with the
    hybrid retriever (qa/conversation/followup.py): by the learned model (the profile's ``followup_model``,
    or ``followup_model`` here: weights by :data:`FOLLOWUP_FEATURES` name, which benchmarks fit) over where
    each candidate lies against the topic's earlier answers. ``about_previous``: a follow-up whose own content
    words are already in the previous answer (at least this share of their idf mass), and no more so in the
    sentence after it, asks about that answer, not about what follows it ("When did it reopen?" after "On
    Friday, the crossing reopened…"): a feature of the model.

    Topic keeping (qa/conversation/followup.py):

    - ``keep_topic``: a follow-up is answered from the documents the topic's answers came from (the
      ``focus_documents`` most recent of them), not from the whole corpus (``focus``). A question that
      names its own entity starts a new topic only when the best sentence for it alone, over the whole
      corpus, is in another document and outscores the topic's best by ``new_topic_margin``; a follow-up
      moves to another document when that holds by ``switch_margin`` for the topic's questions asked
      together (``refocus``: the opener had chosen the wrong story). Chosen on CoQA's tune stories
      (docs/COQA.md).
    - ``story_cosine``: the topic's documents also take every document whose mean sentence vector is within
      this cosine of theirs (``qa.conversation.followup.same_story``: news articles that tell the same story); None: the
      topic's own documents only.
    - ``refocus_turns``: a topic's story is checked against its questions asked together (``refocus``) only
      in its first turns (None: every turn): it is settled by then, and each check encodes that long text
      and searches the whole corpus (CoQA tune: 12 keeps Hit@1 and right story and saves about 30 % of a
      turn's time; docs/COQA.md).
    """

    decay: float
    topic_floor: float
    max_terms: int
    min_salience: float
    detect_topic_change: bool
    definite_phrases: bool
    subject_that: bool
    bound_possessives: bool
    elliptical: float
    elliptical_terms: int
    extra_candidates: int
    about_previous: float
    keep_topic: bool
    new_topic_margin: float
    switch_margin: float
    focus_documents: int
    story_cosine: float | None
    refocus_turns: int | None
    followup_model: dict[str, float] | None = None  # None: the profile's


def default_reading() -> Reading:
    """The reading of the profile in service by default (qa/profiles/default.json)."""
    return _default_reading()


@lru_cache(maxsize=1)
def _default_reading() -> Reading:
    from qa.profile import load_profile

    return Reading(**load_profile().conversation)


def __getattr__(name: str):
    if name == "DEFAULT_READING":  # read from the profile on first use, not at import
        return default_reading()
    raise AttributeError(name)

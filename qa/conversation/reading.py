"""How a conversation's history is used: the :class:`Reading` settings, passed explicitly to every function
of the package that reads one. The defaults are the combination chosen by measurement
(docs/CONVERSATIONS.md, docs/COQA.md); benchmarks vary them.
"""

from __future__ import annotations

from dataclasses import dataclass


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
    - ``token_match``: score a history-read follow-up's sentences by the word-piece match of its own words
      too (rank.token_match), as a standalone question is. Off: a follow-up's own words are few and vague
      ("When did it reopen?"), and the match outweighed the history's terms (tune split, measured).
    - ``neighbour_cosine``: let a neighbour's cosine raise a history-read follow-up's sentences, as it does a
      standalone question's (settings.w_context_dense). Off: on the tune split it pulled follow-ups to the
      sentences beside their answers (Hit@1 0.72 → 0.62, measured).

    Re-ranking a history-read follow-up's ``extra_candidates`` more candidates than asked for
    (qa/conversation/followup.py):

    - ``learned``: with the hybrid retriever, by the logistic model of ``settings.followup_model`` (or
      ``followup_model``: weights other than the settings', which benchmarks fit) over
      FOLLOWUP_FEATURES (fitted by benchmarks/conversation_ltr.py). Otherwise (``learned`` off, or the
      bm25 and dense retrievers, for which the model was not fitted) by the hand-set gains below.
    - ``locality``/``locality_scale``/``same``/``backward``: a follow-up's answer is usually in or just
      after the previous answer in the same article (conversational QA's "dialogue flow"): a sentence
      ``k ≥ 1`` sentences after an earlier first answer of the topic gains
      ``locality × exp(-(k-1)/locality_scale)`` (× that turn's recency weight); ``same`` scales the gain
      of the earlier answer itself (negative: a novelty penalty, waived when the sentence holds at least
      ``repeat_coverage`` of the question's own idf mass: it answers this question too), ``backward`` that
      of sentences before it. ``locality`` 0: no re-ranking.
    - ``same_last``: the ``same`` of the most recent answer (None: ``same``). Positive (0.5: half the gain of
      the next sentence): the answer to a follow-up is often in the sentence that answered the previous one
      ("Who made that claim?" after "According to the diplomat, …").
    - ``repeats``: scales the gain of a sentence that already answered two or more turns of the topic (0: it
      gains nothing).
    - ``about_previous``: a follow-up whose own content words are already in the previous answer (at least
      this share of their idf mass), and no more so in the sentence after it, asks about that answer, not
      about what follows it ("When did it reopen?" after "On Friday, the crossing reopened…"). A feature of
      the learned model; in the hand-set gains the sentences after the previous answer then gain nothing.
      0: off.

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

    decay: float = 1.0
    topic_floor: float = 0.5
    max_terms: int = 4
    min_salience: float = 0.2
    detect_topic_change: bool = True
    definite_phrases: bool = True
    subject_that: bool = True
    bound_possessives: bool = True
    elliptical: float = 1.0
    elliptical_terms: int = 0
    token_match: bool = False
    neighbour_cosine: bool = False
    extra_candidates: int = 10
    learned: bool = True
    followup_model: tuple[float, ...] | None = None
    locality: float = 0.15
    locality_scale: float = 2.0
    same: float = -0.05
    backward: float = 0.3
    repeat_coverage: float = 0.5
    same_last: float | None = 0.5
    repeats: float = 0.0
    about_previous: float = 0.75
    keep_topic: bool = True
    new_topic_margin: float = 1.0
    switch_margin: float = 0.0
    focus_documents: int = 1
    story_cosine: float | None = 0.85
    refocus_turns: int | None = 12


DEFAULT_READING = Reading()

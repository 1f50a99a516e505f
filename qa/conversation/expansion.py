"""Reading a follow-up with its history: topic boundaries and historical query expansion.

A question that stands on its own (it names its own entity and has no anaphora such as it/they/there or
"what about") is read without history, so it is never dragged back to the old topic's words; history is
also cut at the last self-contained turn. Otherwise salient terms of the topic's earlier questions are
added to the BM25 query (historical query expansion, Lin et al. 2020), and a question with no content word
of its own ("Why?") also takes the previous answer's salient terms. ``understood_as`` shows the terms
that were added ("When did it reopen? [+ Torkham, closed, crossing]").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from qa.conversation.answerer import Answerer
from qa.conversation.reading import DEFAULT_READING, Reading
from qa.conversation.store import Turn
from qa.cues import QUESTION_VERBS, anaphora, content_terms, entities, proper_words_of
from qa.text import words
from qa.types import Query

if TYPE_CHECKING:
    from qa.index import Catalogue

NEW_TOPIC = "new topic: "  # how ``understood_as`` starts when a follow-up was read as a new topic


def starts_topic(understood_as: str | None) -> bool:
    """Whether a turn read this way was read on its own: a first question, or one that started a new topic."""
    return understood_as is None or understood_as.startswith(NEW_TOPIC)


def topic_turns(history: Sequence[Turn]) -> list[Turn]:
    """The turns of the current topic: from the last one read on its own (:func:`starts_topic`)."""
    start = 0
    for i, turn in enumerate(history):
        if starts_topic(turn.understood_as):
            start = i
    return list(history[start:])


def definite_references(question: str, history: Sequence[Turn], index: "Catalogue") -> list[str]:
    """Definite noun phrases that point back: "the group" when "group" was said earlier in the topic.
    Only the head noun (the phrase's last word, up to two words after "the") counts.

    A phrase anchored by a name ("the UN report", "the Taliban") identifies itself and does not count.
    """
    if not history:
        return []
    earlier = set()
    for turn in topic_turns(history):
        earlier.update(index.analyzer.terms(turn.question))
        for text in turn.texts[:1]:
            earlier.update(index.analyzer.terms(text))
    named = {e.casefold() for e in entities(question, proper_words_of(index))}
    said = words(question)
    found = []
    for i, w in enumerate(said):
        if w.casefold() != "the":
            continue
        phrase = []
        for nxt in said[i + 1: i + 3]:
            if nxt.casefold() in named:
                phrase = []
                break
            if not index.analyzer.terms(nxt):
                break
            phrase.append(nxt)
        # The phrase refers back when its head, the last word ("the border crossing"), was said before;
        # a modifier alone ("the two sides" after "two months") does not make it the same thing.
        if phrase and any(t in earlier for t in index.analyzer.terms(phrase[-1])):
            found.append("the " + " ".join(phrase))
    return found


def self_contained(question: str, index: "Catalogue", reading: Reading = DEFAULT_READING,
                   history: Sequence[Turn] = ()) -> bool:
    """Whether ``question`` can be read without history: no anaphora (pronouns, "what about", or a
    definite phrase naming something said before), and an entity of its own."""
    if anaphora(question, subject_that=reading.subject_that, bound_possessives=reading.bound_possessives) \
            or (reading.definite_phrases and definite_references(question, history, index)):
        return False
    return bool(entities(question, proper_words_of(index)))


def _surface_terms(text: str, index: "Catalogue") -> list[tuple[str, str]]:
    """(stem, surface word) for each index term of ``text``, in order, first surface form per stem."""
    seen: dict[str, str] = {}
    for w in words(text):
        for t in index.analyzer.terms(w):
            seen.setdefault(t, w)
    return list(seen.items())


def history_terms(question: str, history: Sequence[Turn], index: "Catalogue",
                  reading: Reading = DEFAULT_READING) -> list[tuple[str, str, float]]:
    """HQE: salient terms of the topic's earlier questions (and, for an elliptical question, of the previous
    answer), as (stem, surface, weight), best first. Weight = recency weight × idf share; terms of the
    question itself are not repeated."""
    idf = index.sentence_idf
    max_idf = index.max_sentence_idf or 1.0
    own = set(index.analyzer.terms(question))
    turns = topic_turns(history)
    last_answer = next((t for t in reversed(turns) if t.answered and t.texts), None)
    elliptical = reading.elliptical > 0 and is_elliptical(question, index, reading)
    score: dict[str, float] = {}
    surface: dict[str, str] = {}
    for d, turn in enumerate(reversed(turns), start=1):
        w = reading.decay ** (d - 1)
        if d == len(turns):
            w = max(w, reading.topic_floor)
        sources = [(turn.question, w)]
        if elliptical and turn is last_answer:
            sources.append((turn.texts[0], reading.elliptical))
        for text, weight in sources:
            for stem, word in _surface_terms(text, index):
                if stem in own or stem not in idf or word.casefold() in QUESTION_VERBS:
                    continue
                s = weight * max(idf[stem], 0.0) / max_idf
                if s > score.get(stem, 0.0):
                    score[stem] = s
                    surface.setdefault(stem, word)
    ranked = sorted(((t, surface[t], s) for t, s in score.items() if s >= reading.min_salience),
                    key=lambda x: -x[2])
    return ranked[: reading.max_terms]


def is_elliptical(question: str, index: "Catalogue", reading: Reading = DEFAULT_READING) -> bool:
    """Whether the question has at most ``reading.elliptical_terms`` content words ("Why?"): then the
    topic's questions alone cannot tell which of their sentences it asks for."""
    return len(content_terms(question, index.analyzer)) <= reading.elliptical_terms


def understand(question: str, history: Sequence[Turn], engine: Answerer, *, mode: str = "hybrid",
               reading: Reading = DEFAULT_READING, plain: Query | None = None, continues: bool = False) -> Query:
    """The :class:`qa.types.Query` for ``question`` read with ``history`` (oldest turn first).

    ``understood_as`` is None when history was not used (first turn, or a self-contained new topic);
    otherwise it is the question followed by the terms history added, e.g.
    "When did it reopen? [+ Torkham, crossing, closed]". The dense query stays the question's own vector.
    ``plain`` is ``engine.query(question, mode)`` when the caller already has it (the learned follow-up
    ranker needs it too: one model run, not two). ``continues``: the caller already knows the question
    continues the topic (``focus`` kept it there), so it is read with history even when it names its own
    entity.
    """
    plain = plain or engine.query(question, mode)  # the question as it would be read on its own
    if not history or (not continues and reading.detect_topic_change
                       and self_contained(question, engine.index, reading, history)):
        return plain
    added = history_terms(question, history, engine.index, reading)
    surfaces = [surface for _, surface, _ in added]
    text = f"{question} {' '.join(surfaces)}" if surfaces else question
    vector = plain.vector.astype(np.float32) if mode != "bm25" else None
    # Never None here: the turn continues the topic (see topic_turns), even when it added no term.
    understood = f"{question} [+ {', '.join(surfaces)}]" if surfaces else f"{question} [with the previous turns]"
    return replace(plain, question=question, text=text, terms=plain.terms + [stem for stem, _, _ in added],
                   vector=vector, understood_as=understood, tokens=None,
                   neighbour_cosine=False)  # a follow-up is not scored by these (Reading)

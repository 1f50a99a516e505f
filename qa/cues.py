"""Word-list cues and name detection: which words of a question point back into a conversation, which
name something, and which only frame the question. Shared by the ranker (qa/rank.py), the index's
per-corpus lookups (qa/index/corpus.py) and the reading of follow-ups (qa/conversation/).
"""

from __future__ import annotations

import re
import threading
import weakref
from collections import Counter
from collections.abc import Iterable, Iterator
from functools import cached_property

from qa.text import Analyzer, words

# Words that point back into the conversation. Reflexives ("itself", "on its own") point inside the question.
PRONOUNS = frozenset({"he", "she", "him", "her", "his", "hers", "it", "its", "they", "them", "their", "theirs",
                      "these", "those"})
DEMONSTRATIVES = frozenset({"this", "that"})  # anaphoric only as a pronoun or after a preposition
DEIXIS = frozenset({"there", "then", "else"})
OPENERS = (("what", "about"), ("how", "about"), ("and",), ("what", "else"), ("also",), ("but",), ("so",))
BE = frozenset({"is", "are", "was", "were", "be", "been", "being"})
PREPOSITIONS = frozenset({"on", "in", "at", "about", "after", "before", "during", "since", "from", "to", "for",
                          "with", "by", "of", "like", "than", "under", "over", "into"})
WH = frozenset({"who", "whom", "whose", "what", "which", "when", "where", "why", "how", "is", "are", "was",
                "were", "do", "does", "did", "can", "could", "will", "would", "should", "has", "have", "had"})
NOT_NAMES = frozenset({"i"}) | WH
# Verbs that need a subject right before them: "that could", "that is" make "that" the subject.
AUXILIARIES = frozenset({"could", "would", "will", "can", "might", "may", "should", "must", "has", "had"}) | BE
# Verbs that frame a question rather than name its topic: never worth carrying into the next turn's query.
QUESTION_VERBS = frozenset({"do", "does", "did", "done", "say", "says", "said", "saying", "tell", "tells", "told",
                            "think", "thinks", "happen", "happens", "happened", "mention", "mentioned", "describe",
                            "described", "mean", "means", "know", "known", "ask", "asked", "claim", "claims"})

NAME = re.compile(r"(?<!^)\b[A-Z][\w’'-]*")  # a capitalised word that does not open the question


def anaphora(question: str, *, subject_that: bool = False, bound_possessives: bool = False) -> list[str]:
    """The words of ``question`` that refer to something said before ("it", "they", "there", "what about").

    ``subject_that``: also "that" as the subject of a verb after a verb of saying ("Do they say that could
    happen?"); after a noun ("the group that is") it stays a relative pronoun. ``bound_possessives``: "his"
    or "her" after a name in the question refers to that name ("Who did Faiz Hamid meet on his second
    trip?"), not back into the conversation."""
    raw = words(question)
    lowered = [w.casefold() for w in raw]
    found: list[str] = []
    for opener in OPENERS:
        if tuple(lowered[: len(opener)]) == opener:
            found.append(" ".join(opener))
    for i, w in enumerate(lowered):
        nxt = lowered[i + 1] if i + 1 < len(lowered) else None
        prev = lowered[i - 1] if i else None
        if w in PRONOUNS:
            if w in ("its", "their", "his", "her") and nxt == "own":
                continue  # "on its own": bound inside the question
            if bound_possessives and w in ("his", "her") and any(
                    r[:1].isupper() and r.casefold() not in NOT_NAMES for r in raw[1:i]):
                continue
            found.append(w)
        elif w in DEMONSTRATIVES:
            # "Who reported that?", "on that trip" — not "the delegation that went", "said that …".
            if nxt is None or prev in PREPOSITIONS or (prev in WH and i <= 2) \
                    or (subject_that and nxt in AUXILIARIES and (prev in QUESTION_VERBS or prev in WH)):
                found.append(w)
        elif w in DEIXIS:
            if w == "there" and (prev in BE or nxt in BE):
                continue  # existential "is there", "there were"
            found.append(w)
    return found


class ProperWordCounts:
    """How often each casefolded word is written capitalised mid-sentence and in lower case: what
    :func:`proper_words` decides from, kept so that an index changed by a few documents is counted again from
    those documents' sentences only (:meth:`changed`)."""

    def __init__(self, upper: Counter, lower: Counter):
        self.upper, self.lower = upper, lower

    @classmethod
    def of_texts(cls, texts: Iterable[str]) -> "ProperWordCounts":
        counts = cls(Counter(), Counter())
        counts._add(texts, 1)
        return counts

    def changed(self, removed: Iterable[str], added: Iterable[str]) -> "ProperWordCounts":
        """The counts of the texts less ``removed`` plus ``added`` (a new object: this one stays as it is)."""
        counts = ProperWordCounts(self.upper.copy(), self.lower.copy())
        counts._add(removed, -1)
        counts._add(added, 1)
        return counts

    def _add(self, texts: Iterable[str], sign: int) -> None:
        upper, lower = self.upper, self.lower
        for text in texts:
            for i, w in enumerate(words(text)):
                key = w.casefold()
                if w[:1].isupper():
                    if i > 0:
                        upper[key] += sign
                else:
                    lower[key] += sign

    @cached_property
    def words(self) -> frozenset[str]:
        lower = self.lower
        return frozenset(k for k, n in self.upper.items() if n > 0 and n >= lower.get(k, 0))


def proper_words(texts: Iterable[str]) -> frozenset[str]:
    """Casefolded words that ``texts`` write capitalised mid-sentence at least as often as in lower case."""
    return ProperWordCounts.of_texts(texts).words


_proper_counts: "weakref.WeakKeyDictionary[object, ProperWordCounts]" = weakref.WeakKeyDictionary()
_proper_words_lock = threading.Lock()


def proper_words_of(index, previous=None) -> frozenset[str]:
    """:func:`proper_words` of an index's sentences, computed once per index and kept as long as the index is.
    With ``previous`` (an index this one replaces, whose words were computed), only the documents that
    differ between the two are read: their old sentences' counts taken out, their new ones' put in."""
    with _proper_words_lock:
        counts = _proper_counts.get(index)
        before = _proper_counts.get(previous) if previous is not None else None
    if counts is None:
        changes = _changed_documents(previous, index) if before is not None else None
        if changes is None:
            counts = ProperWordCounts.of_texts(_texts_of(index, list(index.document_sentences)))  # live ones
        else:
            counts = before.changed(_texts_of(previous, changes[0]), _texts_of(index, changes[1]))
        with _proper_words_lock:
            _proper_counts[index] = counts
    return counts.words


def _changed_documents(previous, index) -> tuple[list[str], list[str]] | None:
    """The documents of ``previous`` that ``index`` no longer holds as they were, and those it holds anew
    (by each document's fingerprint chunk); None when most of the corpus changed (counting it all is cheaper)."""
    old, new = previous.fingerprint_chunks, index.fingerprint_chunks
    gone = [d for d, chunk in old.items() if new.get(d) != chunk]
    came = [d for d, chunk in new.items() if old.get(d) != chunk]
    if len(gone) + len(came) > len(new) // 2:
        return None
    return gone, came


def _texts_of(index, doc_ids: list[str]) -> Iterator[str]:
    by_doc = index.document_sentences
    for d in doc_ids:
        for i in by_doc.get(d, ()):
            yield index.sentences[int(i)].text


def entities(question: str, proper: frozenset[str]) -> list[str]:
    """Named entities of the question: capitalised words after the first, acronyms, and words the corpus
    writes capitalised (``proper``, :func:`proper_words`; so "Torkham" counts at the start of a question too)."""
    out = []
    for i, w in enumerate(words(question)):
        key = w.casefold()
        if key in NOT_NAMES:
            continue
        if (w[:1].isupper() and i > 0) or (len(w) > 1 and w.isupper()) or key in proper:
            out.append(w)
    return out


def content_terms(question: str, analyzer: Analyzer) -> set[str]:
    """The question's own index terms, without the verbs that only frame a question ("did", "say")."""
    return {t for w in words(question) if w.casefold() not in QUESTION_VERBS for t in analyzer.terms(w)}

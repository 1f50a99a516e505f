"""Does this sentence answer this question?

Two readings of a question, each checked against a sentence and its immediate context (the sentences before
and after it in its document):

- **what it asks for** (:func:`asked_type`): a quantity, a date or time, a person, an organisation, a place,
  a list of names, a reason or a definition, read from its wording; and whether a sentence carries an answer
  of that kind (:func:`carries`);
- **what it is about**: its key entities (the names it uses) and its rarest terms, and whether the sentence
  and its neighbours hold them.

A sentence that mentions the subject but holds no answer of the asked kind, or that speaks of another
subject, is not an answer. The checks are named features (:data:`CHECKS`) of the best sentence that join the
abstention model of :mod:`qa.rank` with weights fitted on the tune splits (benchmarks/fit_abstention.py);
none decides alone. The kind cues also nudge the ranking (the profile's ``answer_type`` weight).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from qa import cues

# Expected answer types, from the question's wording, and the surface cue that a sentence carries one.
# Deliberately small and general (no corpus names). A *strict* wording asks for the thing itself ("how
# many", "what year", "the name of"): a sentence without one cannot answer it. A *loose* one ("when", "who",
# "where", "why", "how long") is often answered otherwise ("who is allowed to cross" → "people with family in
# Pakistan"), so its cue only nudges. The question's lead-in ("On what date…", "Exactly how many…") may come
# first. On SQuAD's answerable questions the gold sentence lacks the cue for 3 % of strict number questions,
# 7 % of strict date and 23 % of strict name ones, against 11 % of "when" and 33 % of "who" ones
# (docs/DECISIONS.md).
_MONTHS = "january|february|march|april|may|june|july|august|september|october|november|december"
_DAYS = "monday|tuesday|wednesday|thursday|friday|saturday|sunday"
_NUMBER_WORDS = ("one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty|fifty|"
                 "dozens?|hundreds?|thousands?|millions?|billions?|half|several")
_LEAD = (r"^\W*(?:(?:and|so|but|then|exactly|precisely|roughly|approximately|about|on|in|at|by|during|since|"
         r"until|from|for|to|after|before|around)\s+)*")
# A proper name of two or more capitalised words, not opening a sentence ("Khawaja Asif", "Hina Rabbani Khar").
_FULL_NAME = re.compile(r"(?<![.!?“\"]\s)(?<!^)\b[A-Z][a-z]+(?:\s+(?:[A-Z][a-z]+|of|de|von|van|al|bin))*\s+[A-Z][a-z]+")
# Any proper noun: a capitalised word not opening a sentence, or an acronym ("Kabul", "TTP", "ISI"); not a day
# or a month.
_PROPER = re.compile(rf"(?<![.!?“\"]\s)(?<!^)\b(?!(?i:{_MONTHS}|{_DAYS})\b)[A-Z][a-z]+(?:[-’'][A-Za-z]+)*\b"
                     r"|\b[A-Z]{2,}s?\b")
_GROUP_NOUNS = ("group|organi[sz]ation|party|company|agency|institution|ministry|department|union|team|army|"
                "militia|movement|network|body|force|faction|government|council|committee|court|newspaper|"
                "channel|outlet|bank|university|school|club|firm|corporation|alliance")
_PLACE_NOUNS = ("country|countries|city|cities|town|province|region|place|state|area|district|village|capital|"
                "continent|island|border crossing|crossing|location|site|river|mountain")


@dataclass(frozen=True)
class AnswerType:
    name: str
    strict: re.Pattern | None  # a wording that asks for this type itself
    loose: re.Pattern | None  # a wording usually, not always, answered by it
    cue: re.Pattern  # a sentence carries one
    names: bool = False  # the cue is a name, which must not be one the question already uses
    at_least: int = 1  # names of the cue a sentence must hold (a list of names: two)


ANSWER_TYPES = (
    AnswerType("number",
               re.compile(r"\bhow (many|much)\b|\b(what|which) (number|percentage|percent|proportion|amount|sum|total)\b", re.I),
               re.compile(_LEAD + r"how (long(?! ago)|old|far|big|large|tall|high|often)\b", re.I),
               re.compile(rf"\b(\d[\d,.]*|{_NUMBER_WORDS})\b|%", re.I)),
    AnswerType("date",
               re.compile(r"\b(what|which) (date|day|year|month|decade|century)\b|\bwhat time\b", re.I),
               re.compile(_LEAD + r"(when|how long ago)\b", re.I),
               re.compile(rf"\b({_MONTHS}|{_DAYS}|\d{{3,4}}s?|\d+(st|nd|rd|th) century|yesterday|today|tonight|"
                          rf"tomorrow|(last|this|next|previous|following) (week|month|year|weekend|decade)|"
                          rf"\w+ (days?|weeks?|months?|years?|decades?) (ago|back|later|after|before|earlier))\b", re.I)),
    AnswerType("person",  # a proper name: two capitalised words not opening a sentence
               re.compile(r"\bnames? of\b", re.I),  # "another name for", "name a…" often ask for a term
               re.compile(_LEAD + r"(who|whom|whose)\b|\bnames?\b|\bnamed\b", re.I),
               _FULL_NAME, names=True),
    AnswerType("names",  # a list: "which countries", "who were the members", "name the two"
               re.compile(r"\b(which|what) (other )?(countries|groups|organi[sz]ations|parties|people|members|leaders|"
                          r"officials|nations|cities|companies|states)\b|\bname (the|all|two|three|four|five)\b", re.I),
               None,  # "who were the …" is read as a person question, as before this kind existed
               _PROPER, names=True, at_least=2),
    AnswerType("organisation",
               re.compile(rf"\b(which|what) (\w+ )?({_GROUP_NOUNS})\b", re.I),
               None, _PROPER, names=True),
    AnswerType("place",
               re.compile(rf"\b(which|what) ({_PLACE_NOUNS})\b|\bin what (country|city|province|region|state)\b", re.I),
               re.compile(_LEAD + r"where\b", re.I), _PROPER, names=True),
    AnswerType("reason",
               None,
               re.compile(r"\bwhy\b|\bwhat (caused|led to|prompted|triggered|was behind)\b|\bfor what (reason|purpose)\b|"
                          r"\bhow come\b|\bwhat was the (reason|cause|purpose)\b", re.I),
               re.compile(r"\b(because|due to|as a result|in order to|so that|owing to|amid|following|caused|led to|"
                          r"reasons?|causes?|purpose|aims? to|to (protest|prevent|avoid|stop|secure|ensure|discuss))\b", re.I)),
    AnswerType("definition",
               None,
               re.compile(r"^\W*what (is|are|was|were) (an? |the )?[\w’'-]+( [\w’'-]+)?\?*$|\bwhat does [\w’' -]+ mean\b", re.I),
               re.compile(r"\b(is|are|was|were) (an?|the) \w+|\brefers? to\b|\bmeans?\b|\bknown as\b|\bdefined as\b|"
                          r"\bstands? for\b|\b(is|are) (called|named)\b", re.I)),
)
_BY_NAME = {t.name: t for t in ANSWER_TYPES}


def kind_names() -> tuple[str, ...]:
    """The names of the kinds of answer a question can ask for, in the order they are tried."""
    return tuple(_BY_NAME)
# The kinds whose missing cue the ranking reports itself (qa.rank's ``type_missing`` and ``strict_type_missing``,
# with the weights of the hand-set rule); the kinds after them are read only for questions none of these
# match, and weigh through ``kind_missing_nearby``.
RANKED_KINDS = ("number", "date", "person")


@dataclass(frozen=True)
class AskedType:
    """The answer type a question asks for (``name`` None: none) and whether its wording is strict."""

    name: str | None = None
    strict: bool = False


def asked_type(question: str) -> tuple[AskedType, AnswerType | None]:
    """The first answer type whose strict, then loose, wording the question uses."""
    for kind in ANSWER_TYPES:
        if kind.strict is not None and kind.strict.search(question):
            return AskedType(kind.name, True), kind
        if kind.loose is not None and kind.loose.search(question):
            return AskedType(kind.name, False), kind
    return AskedType(), None


def carries(kind: str, text: str, question: str) -> bool:
    """Whether ``text`` holds an answer of ``kind`` to ``question``: its cue, and for a name kind enough names
    (``AnswerType.at_least``) that the question does not already use."""
    answer_type = _BY_NAME[kind]
    if not answer_type.names:
        return _carries(kind, text)
    asked = question.casefold()
    fresh = {name for name in _names_in(kind, text) if name not in asked}
    return len(fresh) >= answer_type.at_least


def answer_type_match(question: str, texts: list[str]) -> tuple[AskedType, np.ndarray]:
    """The type the question asks for, and 1 for each text carrying an answer of that type (:func:`carries`)."""
    asked, kind = asked_type(question)
    out = np.zeros(len(texts), dtype=np.float32)
    if kind is not None:
        for i, t in enumerate(texts):
            out[i] = carries(kind.name, t, question)
    return asked, out


# A sentence's cues do not depend on the question: read once per sentence (the same candidates come back).
@lru_cache(maxsize=100_000)
def _carries(kind: str, text: str) -> bool:
    return _BY_NAME[kind].cue.search(text) is not None


@lru_cache(maxsize=100_000)
def _names_in(kind: str, text: str) -> tuple[str, ...]:
    return tuple(m.group().casefold() for m in _BY_NAME[kind].cue.finditer(text))


# -- the best sentence and its context -----------------------------------------------------------------

# The named checks of the best sentence, each in [0, 1] (1: the check fails), in the abstention model.
CHECKS = ("kind_missing_nearby", "subject_missing", "terms_missing_nearby")


def window(index, sid: int) -> list[int]:
    """The sentence ``sid`` with the sentences just before and after it in its document."""
    sentences, doc = index.sentences, index.sentences[sid].doc_id
    return [i for i in (sid - 1, sid, sid + 1) if 0 <= i < len(sentences) and sentences[i].doc_id == doc]


def check_best(index, question: str, sid: int | None) -> dict[str, float]:
    """The :data:`CHECKS` of sentence ``sid`` of ``index`` (None: no candidate, every check fails):

    - ``kind_missing_nearby``: the question asks for a kind of answer that neither the sentence nor its
      neighbours carry (the sentence alone is ``rank``'s ``type_missing``);
    - ``subject_missing``: the share of the idf mass of the question's key entities (:func:`qa.cues.entities`)
      that the sentence and its neighbours do not hold: it speaks of another subject;
    - ``terms_missing_nearby``: the share of the idf mass of the question's content terms (without the verbs that
      only frame a question) that the sentence and its neighbours do not hold ("weather" asked of articles
      about a visit); a term the corpus never uses weighs as the rarest possible one.
    """
    asked, kind = asked_type(question)
    if sid is None:
        return {"kind_missing_nearby": float(kind is not None), "subject_missing": 1.0, "terms_missing_nearby": 1.0}
    near = window(index, sid)
    missing_kind = kind is not None and not any(carries(kind.name, index.sentences[i].text, question) for i in near)
    entity_terms = [t for w in cues.entities(question, cues.proper_words_of(index)) for t in index.analyzer.terms(w)]
    content = sorted(cues.content_terms(question, index.analyzer))
    terms = list(dict.fromkeys(entity_terms + content))
    if not terms:
        return {"kind_missing_nearby": float(missing_kind), "subject_missing": 0.0, "terms_missing_nearby": 0.0}
    held = index.lexical_sentences.contains(np.asarray(near, dtype=np.int64), terms).any(axis=0)
    salience = term_salience(index, terms)
    absent = dict(zip(terms, ~held))
    entity_weight = sum(salience[t] for t in set(entity_terms))
    subject = sum(salience[t] for t in set(entity_terms) if absent[t]) / entity_weight if entity_weight > 0 else 0.0
    content_weight = sum(salience[t] for t in content)
    terms = sum(salience[t] for t in content if absent[t]) / content_weight if content_weight > 0 else 0.0
    return {"kind_missing_nearby": float(missing_kind), "subject_missing": float(subject),
            "terms_missing_nearby": float(terms)}


def term_salience(index, terms: list[str]) -> dict[str, float]:
    """Each term's idf over sentences as a share of the highest possible one (a term the corpus never uses: 1)."""
    lex = index.lexical_sentences
    top = float(np.log((lex.n_docs + 0.5) / 0.5))
    out = {}
    for t in terms:
        idf = lex.idf_of(t)
        out[t] = 1.0 if idf is None or top <= 0 else float(min(max(idf, 0.0) / top, 1.0))
    return out

"""Conversations: follow-up questions understood from the history, with retrieval-side methods only.

No model writes or rewrites anything. A follow-up such as "When did it reopen?" is *read* with the earlier
turns: salient terms of the topic's earlier questions are added to the BM25 query (historical query
expansion, Lin et al. 2020), and the ranking prefers the previous answer and the sentences just after the
topic's answers in the same article (the "dialogue flow" of conversational QA), but not a sentence that has
already answered twice, nor the sentences after the previous answer when that answer already holds the
follow-up's own words (then the follow-up asks about it, not about what comes next). A question with no
content word of its own ("Why?") also takes the previous answer's salient terms. The answer is still a
list of exact source sentences; ``understood_as`` shows the terms that were added ("When did it reopen?
[+ Torkham, closed, crossing]") so a user can see why a sentence was returned.

A question that stands on its own (it names its own entity and has no anaphora such as it/they/there or
"what about") is read without history, so it is never dragged back to the old topic's words. History is
also cut at the last self-contained turn: an earlier topic does not leak into the next one.

A conversation also keeps to its documents: a follow-up is answered from the document its topic's
answers came from, unless it names its own subject and its evidence is clearly in another document (then
it starts a new topic and ``understood_as`` says "new topic: …"), or the topic's questions asked together
point to another document (the opener had chosen the wrong one; ``understood_as`` says "[now in …]").
Measured on CoQA's held-out stories (docs/COQA.md).

The chosen combination and its measurement are in docs/CONVERSATIONS.md (benchmarks/conversation_bench.py).

Public API: :class:`Turn`, :class:`ConversationStore`, :class:`UnknownConversation`, :func:`understand`,
:func:`ask` (what ``Engine.ask(..., conversation_id=...)`` runs) and :class:`Reading` (its knobs).
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from qa import rank
from qa.types import Answer, Citation

if TYPE_CHECKING:
    from qa.config import Settings
    from qa.engine import Engine, Query
    from qa.index import CorpusIndex

STORE_FILE = "conversations.sqlite3"
# Conversations live in one store per namespace: the CLI's (named by the user, e.g. `qa ask -c work`) and
# the HTTP service's (random ids only), so that no name chosen in the CLI can be read or deleted over HTTP.
CLI_NAMESPACE, HTTP_NAMESPACE = "cli", "http"
MAX_ID_CHARS = 128


class UnknownConversation(KeyError):
    """No conversation with this id (never created, deleted, or dropped after ``max_age_days`` idle)."""

    def __init__(self, conversation_id: str):
        super().__init__(conversation_id)
        self.conversation_id = conversation_id

    def __str__(self) -> str:
        return f"unknown conversation {self.conversation_id!r}"


# -- data -----------------------------------------------------------------------------------------


@dataclass
class Turn:
    """One question and what we answered. ``texts`` are the cited sentences' texts (same order as
    ``citations``): kept with the turn because history expansion reads them, and a rebuilt index must
    not change what an old turn meant."""

    question: str
    understood_as: str | None  # None: the question was read on its own (it starts a topic)
    answered: bool
    citations: list[Citation]
    asked_at: str  # ISO-8601, UTC
    texts: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"question": self.question, "understood_as": self.understood_as, "answered": self.answered,
                "citations": [c.to_dict() for c in self.citations], "texts": list(self.texts),
                "asked_at": self.asked_at}

    @classmethod
    def from_dict(cls, data: dict) -> "Turn":
        return cls(question=data["question"], understood_as=data.get("understood_as"),
                   answered=bool(data["answered"]), citations=[Citation(**c) for c in data.get("citations", [])],
                   asked_at=data["asked_at"], texts=list(data.get("texts", [])))

    @classmethod
    def from_answer(cls, question: str, answer: Answer, *, asked_at: str | None = None) -> "Turn":
        """The turn to store after answering: the head citation of each returned sentence, in rank order."""
        return cls(question=question, understood_as=answer.understood_as, answered=answer.answered,
                   citations=[s.citation for s in answer.sentences], asked_at=asked_at or utc_now(),
                   texts=[s.text for s in answer.sentences])


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# -- the store ------------------------------------------------------------------------------------


class ConversationStore:
    """Conversations in SQLite (WAL: readers never block the writer, and the CLI and a server can share
    the file). One connection behind a lock, so the HTTP server's thread pool can call it freely.

    Bounded: a conversation keeps its last ``max_turns`` turns, and conversations idle longer than
    ``max_age_days`` are dropped (on open, then by create and append at most every ``PRUNE_EVERY_S``
    seconds, so that a busy server does not pay a delete per question; reads already ignore them).
    """

    PRUNE_EVERY_S = 60.0

    def __init__(self, path: Path, max_turns: int = 50, max_age_days: float = 30.0, *,
                 clock: Callable[[], float] = time.time):
        if max_turns < 1 or max_age_days <= 0:
            raise ValueError("max_turns must be ≥ 1 and max_age_days > 0")
        self.path = Path(path)
        self.max_turns = max_turns
        self.max_age_days = max_age_days
        self._clock = clock  # injectable so tests can age conversations without sleeping
        self._lock = threading.Lock()
        self._pruned_at = float("-inf")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30.0)
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(
                """
                CREATE TABLE IF NOT EXISTS conversations (
                    id TEXT PRIMARY KEY,
                    created_at TEXT NOT NULL,
                    updated_at REAL NOT NULL
                );
                CREATE INDEX IF NOT EXISTS conversations_updated ON conversations(updated_at);
                CREATE TABLE IF NOT EXISTS turns (
                    conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
                    seq INTEGER NOT NULL,
                    data TEXT NOT NULL,
                    PRIMARY KEY (conversation_id, seq)
                );
                """
            )
        self.prune()

    @classmethod
    def from_settings(cls, settings: "Settings", namespace: str = CLI_NAMESPACE) -> "ConversationStore":
        """The store of ``namespace`` under ``settings.data_dir`` (a file of its own per namespace)."""
        name = STORE_FILE if namespace == CLI_NAMESPACE else f"conversations-{namespace}.sqlite3"
        return cls(Path(settings.data_dir) / name, settings.max_turns, settings.max_age_days)

    # -- helpers

    def _cutoff(self) -> float:
        return self._clock() - self.max_age_days * 86400.0

    def _write(self, fn):
        """Run ``fn(db)`` in one immediate transaction under the lock."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                result = fn(self._db)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return result

    def _live(self, db: sqlite3.Connection, cid: str) -> bool:
        row = db.execute("SELECT 1 FROM conversations WHERE id = ? AND updated_at >= ?",
                         (cid, self._cutoff())).fetchone()
        return row is not None

    # -- API

    def create(self, conversation_id: str | None = None) -> str:
        """A new conversation; ``conversation_id`` (e.g. a CLI name like "work") is used as given, a uuid4
        hex when None. Creating an id that already exists keeps it and its turns."""
        cid = uuid.uuid4().hex if conversation_id is None else validate_id(conversation_id)
        self._prune_if_due()
        self._write(lambda db: self._insert(db, cid))
        return cid

    def _insert(self, db: sqlite3.Connection, cid: str) -> None:
        # An expired conversation not yet pruned starts afresh under its name, without its old turns.
        db.execute("DELETE FROM conversations WHERE id = ? AND updated_at < ?", (cid, self._cutoff()))
        db.execute("INSERT OR IGNORE INTO conversations (id, created_at, updated_at) VALUES (?, ?, ?)",
                   (cid, utc_now(), self._clock()))

    def exists(self, conversation_id: str) -> bool:
        with self._lock:
            return self._live(self._db, conversation_id)

    def turns(self, conversation_id: str) -> list[Turn] | None:
        """The kept turns, oldest first; None when the conversation is unknown."""
        with self._lock:
            if not self._live(self._db, conversation_id):
                return None
            rows = self._db.execute("SELECT data FROM turns WHERE conversation_id = ? ORDER BY seq",
                                    (conversation_id,)).fetchall()
        return [Turn.from_dict(json.loads(data)) for (data,) in rows]

    def append(self, conversation_id: str | None, turn: Turn, *, create: bool = False) -> str:
        """Add a turn, keeping only the last ``max_turns``, and return the conversation's id.

        With ``create`` the conversation is created first if needed (a new uuid4 id when
        ``conversation_id`` is None), in the same transaction: a service that starts a conversation with
        every first question pays one write, and no empty conversation is left when answering fails.
        Otherwise an unknown id raises :class:`UnknownConversation`.
        """
        if conversation_id is None and not create:
            raise ValueError("a conversation id is needed unless create=True")
        cid = uuid.uuid4().hex if conversation_id is None else validate_id(conversation_id)
        data = json.dumps(turn.to_dict(), ensure_ascii=False)

        def run(db):
            if create:
                self._insert(db, cid)
            elif not self._live(db, cid):
                raise UnknownConversation(cid)
            (last,) = db.execute("SELECT COALESCE(MAX(seq), -1) FROM turns WHERE conversation_id = ?",
                                 (cid,)).fetchone()
            seq = last + 1
            db.execute("INSERT INTO turns (conversation_id, seq, data) VALUES (?, ?, ?)", (cid, seq, data))
            db.execute("DELETE FROM turns WHERE conversation_id = ? AND seq <= ?", (cid, seq - self.max_turns))
            db.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", (self._clock(), cid))

        self._write(run)
        self._prune_if_due()
        return cid

    def delete(self, conversation_id: str) -> bool:
        """Forget a conversation; False when there was none."""
        return self._write(lambda db: db.execute("DELETE FROM conversations WHERE id = ?",
                                                 (conversation_id,)).rowcount > 0)

    def prune(self) -> int:
        """Drop conversations idle longer than ``max_age_days``; returns how many."""
        self._pruned_at = self._clock()
        cutoff = self._cutoff()
        return self._write(lambda db: db.execute("DELETE FROM conversations WHERE updated_at < ?",
                                                 (cutoff,)).rowcount)

    def _prune_if_due(self) -> None:
        if self._clock() - self._pruned_at >= self.PRUNE_EVERY_S:
            self.prune()

    def close(self) -> None:
        with self._lock:
            self._db.close()


def validate_id(conversation_id: str) -> str:
    if not isinstance(conversation_id, str) or not conversation_id.strip() or len(conversation_id) > MAX_ID_CHARS \
            or not conversation_id.isprintable():
        raise ValueError(f"a conversation id is 1–{MAX_ID_CHARS} printable characters")
    return conversation_id


_STORE_LOCK = threading.Lock()


def store_of(engine: "Engine") -> ConversationStore:
    """The engine's store, opened on first use (asking without a conversation never touches the disk)."""
    with _STORE_LOCK:
        store = engine.__dict__.get("_conversation_store")
        if store is None:
            store = engine.__dict__["_conversation_store"] = ConversationStore.from_settings(engine.settings)
        return store


def attach_store(engine: "Engine", store: ConversationStore) -> None:
    """Make ``store`` the one ``engine.conversations`` (and so ``engine.ask``) uses: the HTTP service gives
    every engine it serves its own namespace's store, which outlives an engine swapped out by a reload."""
    with _STORE_LOCK:
        engine.__dict__["_conversation_store"] = store


# -- reading a question with its history ------------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    """How history is used. The defaults are the combination chosen by measurement (docs/CONVERSATIONS.md).

    - ``question_rep``: copies of the question's own terms in the BM25 query (history terms get one
      copy each).
    - ``decay``: weight of a turn ``d`` turns back is ``decay ** (d - 1)``; the turn that opened the
      topic keeps at least ``topic_floor`` (HQE's "topic keywords").
    - ``answer_weight``: weight of the terms of the sentence we answered with (0: questions only).
    - ``max_terms`` / ``min_salience``: at most this many added terms, each with weight × idf share at
      least this (drops words like "said" that are everywhere).
    - ``dense``: "expanded" encodes the question plus the added terms; "question" the question alone.
    - ``mix``: adds ``mix`` × the recency-weighted vectors of the earlier questions to the dense query.
    - ``answer_mix``: adds this × the vector of the previous answer's top sentence (prefers its passage).
    - ``entities_only``: add only the named entities of earlier turns (pronoun → entity resolution
      without a parser) instead of all salient terms.
    - ``locality``/``locality_scale``/``same``/``backward``: a follow-up's answer is usually in or just
      after the previous answer in the same article (conversational QA's "dialogue flow"): a sentence
      ``k ≥ 1`` sentences after an earlier first answer of the topic gains
      ``locality × exp(-(k-1)/locality_scale)`` (× that turn's recency weight); ``same`` scales the gain
      of the earlier answer itself (negative: a novelty penalty, waived when the sentence holds at least
      ``repeat_coverage`` of the question's own idf mass: it answers this question too), ``backward`` that of sentences before
      it; ``anchors`` limits how many earlier answers count (most recent first; None: the whole
      topic). ``extra_candidates`` more sentences than asked for are re-scored this way.
    - ``detect_topic_change``: read self-contained questions without history.
    - ``definite_phrases``: "the group" counts as anaphora when "group" was said earlier in the topic.
    - ``entity_required``: a question without anaphora counts as self-contained only if it names an
      entity; otherwise two known content terms are enough.
    - ``token_match``: score a history-read follow-up's sentences by the word-piece match of its own words
      too (rank.token_match), as a standalone question is. Off: a follow-up's own words are few and vague
      ("When did it reopen?"), and the match outweighed the history's terms (tune split, measured).
    - ``neighbour_cosine``: let a neighbour's cosine raise a history-read follow-up's sentences, as it does a
      standalone question's (settings.w_context_dense). Off: on the tune split it pulled follow-ups to the
      sentences beside their answers (Hit@1 0.72 → 0.62, measured).
    - ``same_last``: the ``same`` of the most recent answer (None: ``same``). Positive (0.5: half the gain of
      the next sentence): the answer to a follow-up is often in the sentence that answered the previous one
      ("Who made that claim?" after "According to the diplomat, …").
    - ``repeats``: scales the gain of a sentence that already answered two or more turns of the topic (0: it
      gains nothing). Once a sentence has answered twice, the bonus for following an older answer would keep
      returning it, while the next question asks for what comes after it.
    - ``fresh_only``: stronger than ``repeats``: a sentence that answered any turn of the topic gains only
      its ``same`` (off: it lost the follow-ups whose answer is the previous answer, measured).
    - ``duplicates``: an earlier answer also anchors its near-duplicates in other articles (cosine ≥
      settings.duplicate_threshold), and a candidate counts at each of its ``also_in`` places (off: measured
      no better).
    - ``elliptical``/``elliptical_terms``/``elliptical_mix``: a follow-up with at most ``elliptical_terms``
      content words of its own ("Why?") carries too little for the topic's questions to pick a sentence; it
      also takes the previous answer's salient terms at weight ``elliptical`` (as HQE weighs a question) and
      mixes ``elliptical_mix`` × that answer's vector into the dense query. ``elliptical_known``: count only
      words the corpus uses (then "Who brokered it?" would count as elliptical).
    - ``subject_that``: "that" before an auxiliary after a verb of saying is a pronoun ("Do the Taliban say
      that could still happen now?"), so the question is read with history although it names the Taliban.
    - ``known_entities``: a question counts as a new topic only if it names an entity the topic's turns have
      not named (off: on this corpus, where nearly every question names the Taliban or Pakistan, it dragged
      genuine topic changes back, measured).
    - ``about_previous``: a follow-up whose own content words are already in the previous answer (at least
      this share of their idf mass), and no more so in the sentence after it, asks about that answer, not
      about what follows it: the sentences after the previous answer then gain nothing from it ("When did
      it reopen?" after "On Friday, the crossing reopened…" is not answered by "However, Friday's reopening
      came with conditions."). 0: off. Measured on the tune split.
    - ``bound_possessives``: "his"/"her" after a name in the question is bound by it, so the question can
      start a new topic ("Who did Faiz Hamid meet on his second trip?"). Chosen together with ``backward``
      0.3 (an answer just before an earlier answer: "Why have they stepped up their attacks?" after the UN
      report's sentence) and ``same`` −0.05 (an older answer, not the previous one, loses a little unless it
      holds the new question's words); measured on the tune split of 36 conversations.
    - ``learned``: rank a history-read follow-up's candidates by the logistic model of
      ``settings.followup_model`` over :data:`FOLLOWUP_FEATURES` (fitted by benchmarks/conversation_ltr.py)
      instead of the hand-set gains above (``locality``, ``same``, ``backward``, ``same_last``, ``repeats``,
      ``about_previous``; the HQE terms, the topic-change test and the dense reading stay as they are).
      Fitted on c01–c36 and played on the 16 conversations written blind after them (c37–c52), 0.60
      against the hand-set gains' 0.40; 6-fold by conversation over all 150 follow-ups, 0.65 against 0.64
      (docs/CONVERSATIONS.md). ``followup_model``: weights other than the settings' (benchmarks fit them).
    - ``keep_topic``: a follow-up is answered from the documents the topic's answers came from (the
      ``focus_documents`` most recent of them), not from the whole corpus (:func:`focus`). A question that
      names its own entity starts a new topic only when the best sentence for it alone, over the whole
      corpus, is in another document and outscores the topic's best by ``new_topic_margin``; a follow-up
      moves to another document when that holds by ``switch_margin`` for the topic's questions asked
      together (:func:`refocus`: the opener had chosen the wrong story). ``named_history``: read a named question
      that stays with HQE's history terms too (off: its own words, within the topic's documents, ranked by
      the follow-up model). Chosen on CoQA's tune stories (docs/COQA.md).
    """

    question_rep: int = 1
    decay: float = 1.0
    topic_floor: float = 0.5
    answer_weight: float = 0.0
    max_terms: int = 4
    min_salience: float = 0.2
    dense: str = "question"
    mix: float = 0.0
    answer_mix: float = 0.0
    entities_only: bool = False
    locality: float = 0.15
    locality_scale: float = 2.0
    same: float = -0.05
    backward: float = 0.3
    anchors: int | None = None
    repeat_coverage: float = 0.5
    extra_candidates: int = 10
    detect_topic_change: bool = True
    definite_phrases: bool = True
    entity_required: bool = True
    token_match: bool = False
    neighbour_cosine: bool = False
    same_last: float | None = 0.5
    repeats: float = 0.0
    fresh_only: bool = False
    duplicates: bool = False
    elliptical: float = 1.0
    elliptical_terms: int = 0
    elliptical_mix: float = 0.0
    elliptical_known: bool = False
    subject_that: bool = True
    known_entities: bool = False
    about_previous: float = 0.75
    bound_possessives: bool = True
    learned: bool = True
    followup_model: tuple[float, ...] | None = None
    keep_topic: bool = True
    new_topic_margin: float = 1.0
    switch_margin: float = 0.0
    focus_documents: int = 1
    named_history: bool = False


DEFAULT_READING = Reading()

_WORD = re.compile(r"[0-9]+(?:[.,][0-9]+)*|[^\W\d_]+(?:['’][^\W\d_]+)*", re.UNICODE)
_POSSESSIVE = re.compile(r"['’]s$", re.IGNORECASE)

# Words that point back into the conversation. Reflexives ("itself", "on its own") point inside the question.
_PRONOUNS = frozenset({"he", "she", "him", "her", "his", "hers", "it", "its", "they", "them", "their", "theirs",
                       "these", "those"})
_DEMONSTRATIVES = frozenset({"this", "that"})  # anaphoric only as a pronoun or after a preposition
_DEIXIS = frozenset({"there", "then", "else"})
_OPENERS = (("what", "about"), ("how", "about"), ("and",), ("what", "else"), ("also",), ("but",), ("so",))
_BE = frozenset({"is", "are", "was", "were", "be", "been", "being"})
_PREPOSITIONS = frozenset({"on", "in", "at", "about", "after", "before", "during", "since", "from", "to", "for",
                           "with", "by", "of", "like", "than", "under", "over", "into"})
_WH = frozenset({"who", "whom", "whose", "what", "which", "when", "where", "why", "how", "is", "are", "was",
                 "were", "do", "does", "did", "can", "could", "will", "would", "should", "has", "have", "had"})
_NOT_ENTITIES = frozenset({"i"}) | _WH
# Verbs that need a subject right before them: "that could", "that is" make "that" the subject.
_AUXILIARIES = frozenset({"could", "would", "will", "can", "might", "may", "should", "must", "has", "had"}) | _BE
# Verbs that frame a question rather than name its topic: never worth carrying into the next turn's query.
_QUESTION_VERBS = frozenset({"do", "does", "did", "done", "say", "says", "said", "saying", "tell", "tells", "told",
                             "think", "thinks", "happen", "happens", "happened", "mention", "mentioned", "describe",
                             "described", "mean", "means", "know", "known", "ask", "asked", "claim", "claims"})


def _words(text: str) -> list[str]:
    """Word tokens with their case and without a possessive 's (so "Pakistan's" → "Pakistan")."""
    return [_POSSESSIVE.sub("", m.group()).replace("’", "'") for m in _WORD.finditer(text)]


def anaphora(question: str, *, subject_that: bool = False, bound_possessives: bool = False) -> list[str]:
    """The words of ``question`` that refer to something said before ("it", "they", "there", "what about").

    ``subject_that``: also "that" as the subject of a verb after a verb of saying ("Do they say that could
    happen?"); after a noun ("the group that is") it stays a relative pronoun. ``bound_possessives``: "his"
    or "her" after a name in the question refers to that name ("Who did Faiz Hamid meet on his second
    trip?"), not back into the conversation."""
    raw = _words(question)
    words = [w.casefold() for w in raw]
    found: list[str] = []
    for opener in _OPENERS:
        if tuple(words[: len(opener)]) == opener:
            found.append(" ".join(opener))
    for i, w in enumerate(words):
        nxt = words[i + 1] if i + 1 < len(words) else None
        prev = words[i - 1] if i else None
        if w in _PRONOUNS:
            if w in ("its", "their", "his", "her") and nxt == "own":
                continue  # "on its own": bound inside the question
            if bound_possessives and w in ("his", "her") and any(
                    r[:1].isupper() and r.casefold() not in _NOT_ENTITIES for r in raw[1:i]):
                continue
            found.append(w)
        elif w in _DEMONSTRATIVES:
            # "Who reported that?", "on that trip" — not "the delegation that went", "said that …".
            if nxt is None or prev in _PREPOSITIONS or (prev in _WH and i <= 2) \
                    or (subject_that and nxt in _AUXILIARIES and (prev in _QUESTION_VERBS or prev in _WH)):
                found.append(w)
        elif w in _DEIXIS:
            if w == "there" and (prev in _BE or nxt in _BE):
                continue  # existential "is there", "there were"
            found.append(w)
    return found


@dataclass
class _Lexicon:
    """Corpus facts the reader needs, computed once per loaded index."""

    proper: frozenset[str]  # casefolded words the corpus writes capitalised mid-sentence
    sid_of: dict[tuple[str, int], int]  # (doc_id, sentence index) → global sentence id
    max_idf: float
    doc_sentences: dict[str, np.ndarray]  # doc_id → its global sentence ids, in order


def _lexicon(index: "CorpusIndex") -> _Lexicon:
    lex = index.__dict__.get("_conversation_lexicon")
    if lex is None:
        upper: dict[str, int] = {}
        lower: dict[str, int] = {}
        for s in index.sentences:
            for i, w in enumerate(_words(s.text)):
                key = w.casefold()
                if w[:1].isupper():
                    if i > 0:
                        upper[key] = upper.get(key, 0) + 1
                else:
                    lower[key] = lower.get(key, 0) + 1
        proper = frozenset(k for k, n in upper.items() if n >= lower.get(k, 0))
        sid_of = {(s.doc_id, s.index): i for i, s in enumerate(index.sentences)}
        idf = index.sentence_idf
        by_doc: dict[str, list[int]] = {}
        for i, sentence in enumerate(index.sentences):
            by_doc.setdefault(sentence.doc_id, []).append(i)
        lex = _Lexicon(proper, sid_of, max(idf.values()) if idf else 1.0,
                       {d: np.array(ids, dtype=np.int64) for d, ids in by_doc.items()})
        index.__dict__["_conversation_lexicon"] = lex
    return lex


def entities(question: str, index: "CorpusIndex") -> list[str]:
    """Named entities of the question: capitalised words after the first, acronyms, and words the corpus
    itself capitalises (so "Torkham" counts at the start of a question too)."""
    lex = _lexicon(index)
    out = []
    for i, w in enumerate(_words(question)):
        key = w.casefold()
        if key in _NOT_ENTITIES:
            continue
        if (w[:1].isupper() and i > 0) or (len(w) > 1 and w.isupper()) or key in lex.proper:
            out.append(w)
    return out


def definite_references(question: str, history: Sequence[Turn], index: "CorpusIndex") -> list[str]:
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
    named = {e.casefold() for e in entities(question, index)}
    words = _words(question)
    found = []
    for i, w in enumerate(words):
        if w.casefold() != "the":
            continue
        phrase = []
        for nxt in words[i + 1: i + 3]:
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


def self_contained(question: str, index: "CorpusIndex", reading: Reading = DEFAULT_READING,
                   history: Sequence[Turn] = ()) -> bool:
    """Whether ``question`` can be read without history: no anaphora (pronouns, "what about", or a
    definite phrase naming something said before), and its own entity (or, when ``entity_required`` is
    off, at least two content terms the corpus knows)."""
    if anaphora(question, subject_that=reading.subject_that, bound_possessives=reading.bound_possessives) \
            or (reading.definite_phrases and definite_references(question, history, index)):
        return False
    named = entities(question, index)
    if named and reading.known_entities and history:
        said = {e.casefold() for turn in topic_turns(history) for text in [turn.question, *turn.texts[:1]]
                for e in entities(text, index)}
        return any(e.casefold() not in said for e in named)
    if named:
        return True
    if reading.entity_required:
        return False
    idf = index.sentence_idf
    return sum(1 for t in set(index.analyzer.terms(question)) if t in idf) >= 2


NEW_TOPIC = "new topic: "  # how ``understood_as`` starts when a follow-up was read as a new topic
SAME_DOCUMENTS = "in the same documents"  # a follow-up that names its subject, answered where the topic is


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


def _surface_terms(text: str, index: "CorpusIndex") -> list[tuple[str, str]]:
    """(stem, surface word) for each index term of ``text``, in order, first surface form per stem."""
    seen: dict[str, str] = {}
    for w in _words(text):
        for t in index.analyzer.terms(w):
            seen.setdefault(t, w)
    return list(seen.items())


def history_terms(question: str, history: Sequence[Turn], index: "CorpusIndex",
                  reading: Reading = DEFAULT_READING) -> list[tuple[str, str, float]]:
    """HQE: salient terms of the topic's earlier questions (and answers), as (stem, surface, weight), best
    first. Weight = recency weight × idf share; terms of the question itself are not repeated."""
    idf = index.sentence_idf
    max_idf = _lexicon(index).max_idf or 1.0
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
        if reading.answer_weight > 0 and turn.answered and turn.texts:
            sources.append((turn.texts[0], w * reading.answer_weight))
        if elliptical and turn is last_answer:
            sources.append((turn.texts[0], reading.elliptical))
        for text, weight in sources:
            named = {e.casefold() for e in entities(text, index)} if reading.entities_only else None
            for stem, word in _surface_terms(text, index):
                if stem in own or stem not in idf or word.casefold() in _QUESTION_VERBS \
                        or (named is not None and word.casefold() not in named):
                    continue
                s = weight * max(idf[stem], 0.0) / max_idf
                if s > score.get(stem, 0.0):
                    score[stem] = s
                    surface.setdefault(stem, word)
    ranked = sorted(((t, surface[t], s) for t, s in score.items() if s >= reading.min_salience),
                    key=lambda x: -x[2])
    return ranked[: reading.max_terms]


def _content_terms(question: str, index: "CorpusIndex") -> set[str]:
    """The question's own index terms, without the verbs that only frame a question ("did", "say")."""
    return {t for w in _words(question) if w.casefold() not in _QUESTION_VERBS for t in index.analyzer.terms(w)}


def is_elliptical(question: str, index: "CorpusIndex", reading: Reading = DEFAULT_READING) -> bool:
    """Whether the question has at most ``reading.elliptical_terms`` content words ("Why?", "Who went
    first?"): then the topic's questions alone cannot tell which of their sentences it asks for. A word the
    corpus never uses counts unless ``reading.elliptical_known`` ("Who brokered it?" still says what it asks,
    and the dense vector reads it)."""
    idf = index.sentence_idf
    terms = _content_terms(question, index)
    return sum(1 for t in terms if t in idf or not reading.elliptical_known) <= reading.elliptical_terms


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return (v / n).astype(np.float32) if n > 0 else v.astype(np.float32)


def understand(question: str, history: Sequence[Turn], engine: "Engine", *, mode: str = "hybrid",
               reading: Reading = DEFAULT_READING, plain: "Query | None" = None, continues: bool = False) -> "Query":
    """The :class:`qa.engine.Query` for ``question`` read with ``history`` (oldest turn first).

    ``understood_as`` is None when history was not used (first turn, or a self-contained new topic);
    otherwise it is the question followed by the terms history added, e.g.
    "When did it reopen? [+ Torkham, crossing, closed]". ``plain`` is ``engine.query(question, mode)`` when
    the caller already has it (the learned follow-up ranker needs it too: one model run, not two).
    ``continues``: the caller already knows the question continues the topic (:func:`focus` kept it there),
    so it is read with history even when it names its own entity.
    """
    from qa.engine import Query

    index = engine.index
    uses_dense = mode != "bm25"
    plain = plain or engine.query(question, mode)  # the question as it would be read on its own
    own_terms = plain.terms
    if not history or (not continues and reading.detect_topic_change
                       and self_contained(question, index, reading, history)):
        return plain
    added = history_terms(question, history, index, reading)
    turns = topic_turns(history)
    words = [surface for _, surface, _ in added]
    text = f"{question} {' '.join(words)}" if words else question
    terms = own_terms * reading.question_rep + [stem for stem, _, _ in added]
    vector = None
    if uses_dense:
        vector = engine.encode_query(text) if reading.dense == "expanded" and words else plain.vector
        vector = vector.astype(np.float32)
        if reading.mix > 0:
            prev = np.stack([engine.encode_query(t.question) for t in turns])
            weights = np.array([reading.decay ** (len(turns) - 1 - i) for i in range(len(turns))], dtype=np.float32)
            vector = _unit(_unit(vector) + reading.mix * _unit(weights @ prev))
        answer_mix = reading.answer_mix
        if reading.elliptical_mix > 0 and is_elliptical(question, index, reading):
            answer_mix += reading.elliptical_mix
        if answer_mix > 0:
            last = next((t for t in reversed(turns) if t.answered and t.citations), None)
            sid = _lexicon(index).sid_of.get((last.citations[0].doc_id, last.citations[0].sentence_index)) \
                if last else None
            if sid is not None:
                vector = _unit(_unit(vector) + answer_mix * index.sentence_vectors[sid])
    # Never None here: the turn continues the topic (see topic_turns), even when it added no term.
    understood = f"{question} [+ {', '.join(words)}]" if words else f"{question} [with the previous turns]"
    return Query(question=question, text=text, terms=terms, vector=vector, understood_as=understood,
                 tokens=plain.tokens if reading.token_match else None, names=plain.names,
                 neighbour_cosine=reading.neighbour_cosine)


# -- asking in a conversation -------------------------------------------------------------------------


@dataclass(frozen=True)
class Focus:
    """Where a turn is answered from: ``documents`` (empty: the whole corpus), whether it starts a new
    topic, and ``note``, what its ``understood_as`` adds about a change of document."""

    documents: tuple[str, ...] = ()
    new_topic: bool = False
    note: str = ""
    named: bool = False  # the question names its own entity (self_contained) yet stays with the documents


def topic_documents(history: Sequence[Turn]) -> list[str]:
    """The documents the current topic's answers came from (each answer's first sentence), most recent first."""
    docs: list[str] = []
    for turn in reversed(topic_turns(history)):
        if turn.answered and turn.citations and turn.citations[0].doc_id not in docs:
            docs.append(turn.citations[0].doc_id)
    return docs


def outside_evidence(engine: "Engine", query: "Query", mode: str, documents: Sequence[str]) -> tuple[str | None, float]:
    """The document outside ``documents`` that holds the best sentence for ``query`` over the whole corpus,
    and by how much that sentence outscores the best one inside ``documents`` (None, 0 when the best is
    inside). Sentence scores, not passage counts: one sentence that answers outweighs many that touch it."""
    everywhere = engine.score(query, mode)
    if not len(everywhere.ids):
        return None, 0.0
    best = engine.index.sentences[int(everywhere.ids[0])].doc_id
    if best in documents:
        return None, 0.0
    inside = engine.score(query, mode, sentences_of(engine.index, documents))
    held = float(inside.scores[0]) if len(inside.scores) else float("-inf")
    return best, float(everywhere.scores[0]) - held


def sentences_of(index: "CorpusIndex", documents: Sequence[str]) -> np.ndarray:
    """The global sentence ids of ``documents`` (those the index holds), document by document."""
    lex = _lexicon(index)
    parts = [lex.doc_sentences[d] for d in documents if d in lex.doc_sentences]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def _label(engine: "Engine", doc_id: str, limit: int = 60) -> str:
    doc = engine.document(doc_id)
    title = doc.title if doc is not None else doc_id
    return title if len(title) <= limit else title[: limit - 1].rstrip() + "…"


def focus(engine: "Engine", question: str, plain: "Query", history: Sequence[Turn], *, mode: str,
          reading: Reading = DEFAULT_READING) -> Focus:
    """Whether a follow-up stays with the documents its topic is about (:func:`topic_documents`).

    A question that names its own entity (:func:`self_contained`) starts a new topic only when its best
    evidence is clearly in another document (:func:`outside_evidence`): "What did Jessica do?" in a story
    about Jessica stays; "Who won the 1998 World Cup?" after a story about mice does not. Without
    ``reading.keep_topic`` every such question starts a new topic and follow-ups search the whole corpus.
    """
    if not history:
        return Focus()
    named = reading.detect_topic_change and self_contained(question, engine.index, reading, history)
    docs = topic_documents(history)[: reading.focus_documents]
    if not reading.keep_topic or not docs:
        return Focus(new_topic=named)
    if named:
        elsewhere, margin = outside_evidence(engine, plain, mode, docs)
        if elsewhere is not None and margin >= reading.new_topic_margin:
            return Focus(new_topic=True)
    return Focus(tuple(docs), named=named)


def topic_question(question: str, history: Sequence[Turn], limit: int = 1000) -> str:
    """The topic's questions and this one as one text, the opener first and then the most recent ones that
    fit in ``limit`` characters: what the whole conversation asks about, for choosing its document."""
    earlier = [t.question for t in topic_turns(history)]
    if not earlier:
        return question[:limit]
    kept = [question]
    room = limit - len(question) - len(earlier[0]) - 1
    for q in reversed(earlier[1:]):
        if len(q) + 1 > room:
            break
        kept.insert(0, q)
        room -= len(q) + 1
    return " ".join([earlier[0], *kept])[:limit]


def refocus(engine: "Engine", question: str, history: Sequence[Turn], chosen: Focus, *, mode: str,
            reading: Reading = DEFAULT_READING) -> Focus:
    """The conversation's questions together may show that the topic's document was the wrong one (the
    opener answered from another story about a similar thing): when the best sentence for the topic's
    questions asked together (:func:`topic_question`) is in another document and outscores the topic's
    best by ``reading.switch_margin``, the turn moves there and says so. One question is a weak pointer to
    a document; the topic's questions together name it far more often (docs/COQA.md)."""
    if not chosen.documents:
        return chosen
    together = engine.query(topic_question(question, history), mode)
    best, margin = outside_evidence(engine, together, mode, chosen.documents)
    if best is None or margin < reading.switch_margin:
        return chosen
    return Focus((best,), note=f" [now in {_label(engine, best)!r}, not {_label(engine, chosen.documents[0])!r}]",
                 named=chosen.named)


def answer_turn(engine: "Engine", question: str, history: Sequence[Turn], *, top_k: int, mode: str,
                reading: Reading = DEFAULT_READING, abstain: bool = True,
                documents: Sequence[str] | None = None) -> Answer:
    """Understand ``question`` with ``history`` and answer it (nothing is stored). ``abstain=False``
    returns the ranking even below the engine's confidence threshold (for evaluation). ``documents``
    fixes where the turn is answered from (an evaluation's ceiling: the gold story) instead of
    :func:`focus` choosing."""
    plain = engine.query(question, mode)
    chosen = Focus(tuple(documents)) if documents is not None else focus(engine, question, plain, history,
                                                                         mode=mode, reading=reading)
    if documents is None and history and not chosen.new_topic:
        chosen = refocus(engine, question, history, chosen, mode=mode, reading=reading)
    if chosen.named and not reading.named_history:  # its own words say what it asks; the documents stay
        query = replace(plain, understood_as=f"{question} [{SAME_DOCUMENTS}]")
    else:
        query = understand(question, history, engine, mode=mode, reading=reading, plain=plain,
                           continues=bool(chosen.documents))
    if chosen.new_topic and query.understood_as is None and history and reading.keep_topic:
        query.understood_as = NEW_TOPIC + question
    within = sentences_of(engine.index, chosen.documents) if chosen.documents else None
    extra = {} if abstain else {"abstain": False}
    learned = reading.learned and mode == "hybrid"  # the model was fitted on hybrid scores only
    if not history or starts_topic(query.understood_as) or (reading.locality == 0 and not learned):
        return engine.answer(query, top_k=top_k, mode=mode, within=within, **extra)
    answer = engine.answer(query, top_k=top_k + reading.extra_candidates, mode=mode, within=within, **extra)
    if learned:
        weights = reading.followup_model or engine.settings.followup_model
        rank_followup(answer, followup_features(engine, plain, history, answer, within=within), weights)
    else:
        prefer_previous_answers(answer, history, reading, index=engine.index, question=question,
                                duplicate_threshold=engine.settings.duplicate_threshold)
    answer.sentences = answer.sentences[:top_k]
    if chosen.note and answer.understood_as is not None:
        answer.understood_as += chosen.note
    return answer



# What the learned follow-up ranker sees of each candidate sentence; settings.followup_model weighs them in
# this order (benchmarks/conversation_ltr.py fits them).
FOLLOWUP_FEATURES = ("with history", "alone", "alone cosine", "alone coverage", "previous answer", "1 after it",
                     "2 after it", "1 before it", "older answer", "1 after an older", "1 before an older",
                     "same article", "answered twice", "about previous × 1 after", "elliptical × previous",
                     "elliptical × 1 after")
_F = {name: i for i, name in enumerate(FOLLOWUP_FEATURES)}  # column of each feature
# The columns that mark a candidate k sentences after (k < 0: before) the previous answer, then an older one.
_PLACES = {0: "previous answer", 1: "1 after it", 2: "2 after it", -1: "1 before it"}
_OLDER_PLACES = {0: "older answer", 1: "1 after an older", -1: "1 before an older"}


def followup_features(engine: "Engine", plain: "Query", history: Sequence[Turn], answer: Answer,
                      within: np.ndarray | None = None) -> np.ndarray:
    """One row of :data:`FOLLOWUP_FEATURES` per sentence of ``answer`` (the candidates of the question read
    with history, scores as the engine gave them); ``plain`` is the question read alone (hybrid), scored
    over the same sentences ``within`` when the turn keeps to its documents.

    Two views of relevance, because history terms find the topic but pull back to the earlier answers,
    while the question's own words pick the new sentence: the score with history, and the score, cosine
    and idf coverage of the question alone (scores relative to the best, so that they compare across
    questions). Then where the sentence lies against the topic's answers (the previous one, older ones),
    whether it answered twice already, and two crossings with the question's form (it asks about the
    previous answer itself; it is elliptical).
    """
    index = engine.index
    lex = _lexicon(index)
    x = np.zeros((len(answer.sentences), len(FOLLOWUP_FEATURES)), dtype=np.float64)
    if not answer.sentences:
        return x
    sids = np.array([lex.sid_of[(s.citation.doc_id, s.citation.sentence_index)] for s in answer.sentences])
    own = np.array([s.score for s in answer.sentences], dtype=np.float64)
    x[:, _F["with history"]] = own - own.max()
    scored = engine.score(plain, "hybrid", within)
    alone = np.full(len(index.sentences), float(scored.scores.min()) if len(scored.scores) else 0.0)
    alone[scored.ids] = scored.scores
    x[:, _F["alone"]] = alone[sids] - alone.max()
    x[:, _F["alone cosine"]] = index.sentence_vectors[sids] @ plain.vector
    x[:, _F["alone coverage"]] = rank.query_coverage(index, plain.terms, sids).own
    anchors = [(t.citations[0].doc_id, t.citations[0].sentence_index)
               for t in reversed(topic_turns(history)) if t.answered and t.citations]
    docs = np.array([s.citation.doc_id for s in answer.sentences])
    pos = np.array([s.citation.sentence_index for s in answer.sentences])
    for j, (doc, at) in enumerate(anchors):
        k = np.where(docs == doc, pos - at, np.iinfo(np.int64).max)  # sentences after the anchor
        for offset, name in (_PLACES if j == 0 else _OLDER_PLACES).items():
            x[:, _F[name]] = np.maximum(x[:, _F[name]], k == offset)
        x[:, _F["same article"]] = np.maximum(x[:, _F["same article"]], docs == doc)
    times = Counter(anchors)
    x[:, _F["answered twice"]] = [times[(d, p)] >= 2 for d, p in zip(docs.tolist(), pos.tolist())]
    if anchors and asks_about_previous(index, plain.question, *anchors[0]):
        x[:, _F["about previous × 1 after"]] = x[:, _F["1 after it"]]
    if is_elliptical(plain.question, index):
        x[:, _F["elliptical × previous"]] = x[:, _F["previous answer"]]
        x[:, _F["elliptical × 1 after"]] = x[:, _F["1 after it"]]
    return x


def rank_followup(answer: Answer, features: np.ndarray, weights: Sequence[float]) -> None:
    """Re-score ``answer``'s sentences in place as ``features @ weights`` (the learned model's log-odds that
    a sentence answers the follow-up) and re-sort them."""
    if len(weights) != len(FOLLOWUP_FEATURES):
        raise ValueError(f"followup_model has {len(weights)} weights for {len(FOLLOWUP_FEATURES)} features: "
                         "re-fit it with benchmarks/conversation_ltr.py")
    if not answer.sentences:
        return
    scores = features @ np.asarray(weights, dtype=np.float64)
    for s, score in zip(answer.sentences, scores.tolist()):
        s.score = score
    answer.sentences.sort(key=lambda s: -s.score)


def _covers(index: "CorpusIndex", question: str, doc_id: str, sentence_index: int) -> float:
    """Share of the idf mass of the question's content words (not "did", "say", …) in one sentence; a word
    the corpus never uses weighs like the rarest one."""
    sid = _lexicon(index).sid_of.get((doc_id, sentence_index))
    terms = _content_terms(question, index)
    if sid is None or not terms:
        return 0.0
    idf = index.sentence_idf
    rare = _lexicon(index).max_idf
    weight = {t: max(idf.get(t, rare), 0.0) for t in terms}
    total = sum(weight.values())
    present = set(index.analyzer.terms(index.sentences[sid].text))
    return sum(w for t, w in weight.items() if t in present) / total if total > 0 else 0.0


def asks_about_previous(index: "CorpusIndex", question: str, doc_id: str, sentence_index: int,
                        reading: Reading = DEFAULT_READING) -> bool:
    """Whether ``question`` asks about the previous answer (``doc_id``, ``sentence_index``) itself rather than
    about what follows it: the answer holds at least ``reading.about_previous`` of the idf mass of the
    question's own content words, and the sentence after it no more ("When did it reopen?" after "On Friday,
    the crossing reopened…"; not "What have officials said since it ended?" when the next sentence says
    "since the end"). False when ``about_previous`` is 0."""
    if reading.about_previous <= 0:
        return False
    held = _covers(index, question, doc_id, sentence_index)
    return held >= reading.about_previous and _covers(index, question, doc_id, sentence_index + 1) <= held


def prefer_previous_answers(answer: Answer, history: Sequence[Turn], reading: Reading = DEFAULT_READING, *,
                            index: "CorpusIndex | None" = None, question: str | None = None,
                            duplicate_threshold: float | None = None) -> None:
    """Re-score ``answer``'s sentences in place by their distance to the topic's earlier first answers
    (see :class:`Reading`), then re-sort them by score.

    An earlier answer escapes the novelty penalty when it contains at least ``repeat_coverage`` of the
    idf mass of the new question's own content words: then it answers the new question too. Likewise, the
    sentences after the previous answer gain nothing from it when the question asks about that answer itself
    (:func:`asks_about_previous`). Both need ``index`` and ``question``.
    """
    turns = topic_turns(history)
    anchors: list[tuple[str, int, float, bool]] = []  # (doc_id, sentence index, recency weight, most recent)
    for d, turn in enumerate(reversed(turns), start=1):
        if turn.answered and turn.citations:
            c = turn.citations[0]
            anchors.append((c.doc_id, c.sentence_index, reading.decay ** (d - 1), not anchors))
        if reading.anchors is not None and len(anchors) >= reading.anchors:
            break
    if not anchors:
        return
    if reading.duplicates and index is not None and duplicate_threshold is not None:
        anchors += [(doc, i, w, last) for doc, idx, w, last in anchors
                    for doc, i in _duplicates(index, doc, idx, duplicate_threshold)]
    answered = Counter((doc, idx) for doc, idx, _, _ in anchors)
    about = asks_about_previous(index, question, *anchors[0][:2], reading) \
        if index is not None and question is not None else False
    for s in answer.sentences:
        places = [s.citation, *(s.also_in if reading.duplicates else [])]
        times = max(answered[(c.doc_id, c.sentence_index)] for c in places)
        repeat = reading.fresh_only and times > 0
        gains = [0.0]
        for doc_id, idx, weight, last in anchors:
            for c in places:
                if c.doc_id != doc_id or (repeat and c.sentence_index != idx):
                    continue
                k = c.sentence_index - idx
                same = reading.same_last if last and reading.same_last is not None else reading.same
                shape = same if k == 0 else float(np.exp(-(abs(k) - 1) / reading.locality_scale))
                if k > 0 and about and last:
                    shape = 0.0  # the follow-up asks about the previous answer, not what comes after it
                if k == 0 and shape < 0 and index is not None and question is not None \
                        and _covers(index, question, doc_id, idx) >= reading.repeat_coverage:
                    shape = 0.0
                gains.append(reading.locality * weight * shape * (reading.backward if k < 0 else 1.0)
                             * (reading.repeats if times >= 2 else 1.0))
        s.score = float(s.score) + (min(gains) if min(gains) < 0 else max(gains))
    answer.sentences.sort(key=lambda s: -s.score)


def _duplicates(index: "CorpusIndex", doc_id: str, sentence_index: int, threshold: float) -> list[tuple[str, int]]:
    """The places in other articles that say the same as one sentence (cosine ≥ ``threshold``, as
    rank.group_duplicates merges them in an answer)."""
    sid = _lexicon(index).sid_of.get((doc_id, sentence_index))
    if sid is None:
        return []
    cosines = index.sentence_vectors @ index.sentence_vectors[sid]
    return [(index.sentences[j].doc_id, index.sentences[j].index) for j in np.flatnonzero(cosines >= threshold).tolist()
            if index.sentences[j].doc_id != doc_id]


def ask(engine: "Engine", question: str, conversation_id: str | None, *, top_k: int, mode: str,
        create_missing: bool = False, reading: Reading = DEFAULT_READING, abstain: bool = True,
        documents: Sequence[str] | None = None) -> Answer:
    """Answer ``question`` as the next turn of ``conversation_id`` and record the turn.

    ``conversation_id`` None starts a new conversation with this question (its id is the answer's
    ``conversation_id``). An id not in the store raises :class:`UnknownConversation`, unless
    ``create_missing`` (the CLI's ``--conversation NAME`` starts the conversation on first use).
    ``documents``: answer from these documents only (see :func:`answer_turn`).
    """
    store = engine.conversations
    history = store.turns(conversation_id) if conversation_id is not None else []
    if history is None and not create_missing:
        raise UnknownConversation(conversation_id)
    answer = answer_turn(engine, question, history or [], top_k=top_k, mode=mode, reading=reading, abstain=abstain,
                         documents=documents)
    answer.conversation_id = store.append(conversation_id, Turn.from_answer(question, answer),
                                          create=conversation_id is None or create_missing)
    return answer


__all__ = ["FOLLOWUP_FEATURES", "NEW_TOPIC", "ConversationStore", "DEFAULT_READING", "Focus", "Reading", "Turn",
           "UnknownConversation", "anaphora", "focus", "outside_evidence", "refocus", "sentences_of", "starts_topic",
           "topic_documents", "topic_question",
           "answer_turn", "ask", "followup_features", "rank_followup",
           "asks_about_previous", "definite_references",
           "entities", "history_terms", "is_elliptical", "prefer_previous_answers", "self_contained", "store_of",
           "topic_turns", "understand", "utc_now", "validate_id"]

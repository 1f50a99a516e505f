"""Answering a follow-up: which documents it is answered from (topic keeping) and how its candidates are
re-ranked by the dialogue flow.

A conversation keeps to its documents: a follow-up is answered from the document its topic's answers came
from, unless it names its own subject and its evidence is clearly in another document (then it starts a
new topic and ``understood_as`` says "new topic: …"), or the topic's questions asked together point to
another document (the opener had chosen the wrong one; ``understood_as`` says "[now in …]"). Measured on
CoQA's held-out stories (docs/COQA.md).

A history-read follow-up's candidates are then re-ranked: a follow-up's answer is usually the previous
answer or a sentence just after it in the same article (the "dialogue flow" of conversational QA), but not
a sentence that has already answered twice, nor the sentences after the previous answer when that answer
already holds the follow-up's own words. With the hybrid retriever a logistic model weighs these signals
(:func:`followup_features`, :func:`rank_followup`; the profile's ``followup_model``); bm25 and dense, for
which it was not fitted, keep their own order.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from qa import rank
from qa.conversation.answerer import Answerer
from qa.conversation.expansion import NEW_TOPIC, is_elliptical, self_contained, starts_topic, topic_turns, understand
from qa.conversation.reading import DEFAULT_READING, FOLLOWUP_FEATURES, Reading
from qa.conversation.store import Turn
from qa.cues import content_terms
from qa.types import Answer, Query

if TYPE_CHECKING:
    from qa.index import Catalogue, SentenceSet

SAME_DOCUMENTS = "in the same documents"  # a follow-up that names its subject, answered where the topic is


@dataclass(frozen=True)
class Focus:
    """Where a turn is answered from: ``documents`` (empty: the whole corpus), whether it starts a new
    topic, and ``note``, what its ``understood_as`` adds about a change of document."""

    documents: tuple[str, ...] = ()
    new_topic: bool = False
    note: str = ""
    named: bool = False  # the question names its own entity (self_contained) yet stays with the documents
    degraded: bool = False  # a search of the whole corpus behind the choice missed part of it (a shard)


@dataclass(frozen=True)
class Evidence:
    """Where the best sentence for a question lies against a topic's documents: the document outside them
    that holds it (None: it is inside), by how much it outscores the best inside, and whether the search of
    the whole corpus missed part of it."""

    elsewhere: str | None = None
    margin: float = 0.0
    degraded: bool = False


def topic_documents(history: Sequence[Turn]) -> list[str]:
    """The documents the current topic's answers came from (each answer's first sentence), most recent first."""
    return list(dict.fromkeys(doc for doc, _ in topic_answers(history)))


def topic_answers(history: Sequence[Turn]) -> list[tuple[str, int]]:
    """The current topic's answers, most recent first: (doc_id, sentence index) of each one's first sentence."""
    return [(t.citations[0].doc_id, t.citations[0].sentence_index)
            for t in reversed(topic_turns(history)) if t.answered and t.citations]


def outside_evidence(engine: Answerer, query: Query, mode: str, documents: Sequence[str]) -> Evidence:
    """The document outside ``documents`` that holds the best sentence for ``query`` over the whole corpus,
    and by how much that sentence outscores the best one inside ``documents``. Sentence scores, not passage
    counts: one sentence that answers outweighs many that touch it."""
    if covers_corpus(engine.index, documents):
        return Evidence()
    everywhere = engine.score(query, mode)
    if not len(everywhere.ids):
        return Evidence(degraded=everywhere.degraded)
    best = engine.index.sentences[int(everywhere.ids[0])].doc_id
    if best in documents:
        return Evidence(degraded=everywhere.degraded)
    inside = engine.score(query, mode, sentences_of(engine.index, documents))
    held = float(inside.scores[0]) if len(inside.scores) else float("-inf")
    return Evidence(best, float(everywhere.scores[0]) - held, everywhere.degraded or inside.degraded)


def story_of(engine: Answerer, documents: Sequence[str], reading: Reading) -> list[str]:
    """``documents`` and the articles that tell the same story (``reading.story_cosine``; none when None)."""
    if reading.story_cosine is None:
        return list(documents)
    return same_story(engine.index, documents, reading.story_cosine)


def same_story(index: "Catalogue", documents: Sequence[str], min_cosine: float) -> list[str]:
    """``documents`` and, after them, every other document of ``index`` whose mean vector
    (``Catalogue.document_vectors``) is within ``min_cosine`` of one of theirs: the articles that tell the
    same story, best first."""
    rows, vectors = index.document_vectors
    known = [rows[d] for d in documents if d in rows]
    if not known:
        return list(documents)
    best = (vectors @ vectors[known].T).max(axis=1)
    best[known] = -np.inf
    names = list(rows)
    return [*documents, *(names[r] for r in np.argsort(-best, kind="stable") if best[r] >= min_cosine)]


def covers_corpus(index: "Catalogue", documents: Sequence[str]) -> bool:
    """Whether ``documents`` are all the documents of ``index``: there is nowhere else for a turn to go."""
    return len(documents) >= len(index.document_sentences) and set(index.document_sentences) <= set(documents)


def sentences_of(index: "Catalogue", documents: Sequence[str]) -> np.ndarray:
    """The global sentence ids of ``documents`` (those the index holds), document by document."""
    by_doc = index.document_sentences
    parts = [by_doc[d] for d in documents if d in by_doc]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def _label(engine: Answerer, doc_id: str, limit: int = 60) -> str:
    doc = engine.document(doc_id)
    title = doc.title if doc is not None else doc_id
    return title if len(title) <= limit else title[: limit - 1].rstrip() + "…"


def focus(engine: Answerer, question: str, plain: Query, history: Sequence[Turn], *, mode: str,
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
    docs = story_of(engine, docs, reading)
    if not named:
        return Focus(tuple(docs))
    evidence = outside_evidence(engine, plain, mode, docs)
    if evidence.elsewhere is not None and evidence.margin >= reading.new_topic_margin:
        return Focus(new_topic=True, degraded=evidence.degraded)
    return Focus(tuple(docs), named=True, degraded=evidence.degraded)


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


def refocus(engine: Answerer, question: str, history: Sequence[Turn], chosen: Focus, *, mode: str,
            reading: Reading = DEFAULT_READING) -> Focus:
    """The conversation's questions together may show that the topic's document was the wrong one (the
    opener answered from another story about a similar thing): when the best sentence for the topic's
    questions asked together (:func:`topic_question`) is in another document and outscores the topic's
    best by ``reading.switch_margin``, the turn moves there and says so. One question is a weak pointer to
    a document; the topic's questions together name it far more often (docs/COQA.md)."""
    if not chosen.documents or covers_corpus(engine.index, chosen.documents):
        return chosen
    together = engine.query(topic_question(question, history), mode)
    evidence = outside_evidence(engine, together, mode, chosen.documents)
    degraded = chosen.degraded or evidence.degraded
    if evidence.elsewhere is None or evidence.margin < reading.switch_margin:
        return replace(chosen, degraded=degraded)
    best = evidence.elsewhere
    return Focus(tuple(story_of(engine, [best], reading)),
                 note=f" [now in {_label(engine, best)!r}, not {_label(engine, chosen.documents[0])!r}]",
                 named=chosen.named, degraded=degraded)


def answer_turn(engine: Answerer, question: str, history: Sequence[Turn], *, top_k: int, mode: str,
                reading: Reading = DEFAULT_READING, abstain: bool = True,
                documents: Sequence[str] | None = None) -> Answer:
    """Understand ``question`` with ``history`` and answer it (nothing is stored). ``abstain=False``
    returns the ranking even below the engine's confidence threshold (for evaluation). ``documents``
    fixes where the turn is answered from (an evaluation's ceiling: the gold story) instead of
    :func:`focus` choosing."""
    plain = engine.query(question, mode)
    chosen = Focus(tuple(documents)) if documents is not None else focus(engine, question, plain, history,
                                                                         mode=mode, reading=reading)
    if documents is None and history and not chosen.new_topic \
            and (reading.refocus_turns is None or len(topic_turns(history)) <= reading.refocus_turns):
        chosen = refocus(engine, question, history, chosen, mode=mode, reading=reading)
    if chosen.named:  # its own words say what it asks; the documents stay
        query = replace(plain, understood_as=f"{question} [{SAME_DOCUMENTS}]")
    else:
        query = understand(question, history, engine, mode=mode, reading=reading, plain=plain,
                           continues=bool(chosen.documents))
    if chosen.new_topic and query.understood_as is None and history and reading.keep_topic:
        query.understood_as = NEW_TOPIC + question
    within = sentences_of(engine.index, chosen.documents) if chosen.documents else None
    extra = {} if abstain else {"abstain": False}
    # The follow-up model was fitted on hybrid scores: the other retrievers keep their order.
    flows = bool(history) and not starts_topic(query.understood_as) and mode == "hybrid"
    answer = engine.answer(query, top_k=top_k + (reading.extra_candidates if flows else 0), mode=mode,
                           within=within, **extra)
    read = not flows or follow_the_dialogue(engine, answer, plain, history, within, reading)
    # a shard was missing: the topic's documents chosen without it, or answered without the dialogue's flow
    answer.degraded = answer.degraded or chosen.degraded or not read
    if flows:
        answer.sentences = answer.sentences[:top_k]
        if chosen.note and answer.understood_as is not None:
            answer.understood_as += chosen.note
    return answer


def follow_the_dialogue(engine: Answerer, answer: Answer, plain: Query, history: Sequence[Turn],
                        within: np.ndarray | None, reading: Reading) -> bool:
    """Re-rank a follow-up's candidates in place by the dialogue's flow (the learned model). False when the
    sentences it reads could not be gathered (a sharded front missing a shard); the candidates then keep the
    engine's order."""
    features = followup_features(engine, plain, history, answer, within=within, reading=reading)
    if features is not None:
        rank_followup(answer, features, reading.followup_model or engine.profile.followup_model)
    return features is not None


_F = {name: i for i, name in enumerate(FOLLOWUP_FEATURES)}  # column of each feature
# The columns that mark a candidate k sentences after (k < 0: before) the previous answer, then an older one.
_PLACES = {0: "previous answer", 1: "1 after it", 2: "2 after it", -1: "1 before it"}
_OLDER_PLACES = {0: "older answer", 1: "1 after an older", -1: "1 before an older"}


def followup_features(engine: Answerer, plain: Query, history: Sequence[Turn], answer: Answer,
                      within: np.ndarray | None = None, *, reading: Reading = DEFAULT_READING) -> np.ndarray | None:
    """One row of :data:`FOLLOWUP_FEATURES` per sentence of ``answer`` (the candidates of the question read
    with history, scores as the engine gave them); ``plain`` is the question read alone (hybrid), scored
    over the same sentences ``within`` when the turn keeps to its documents.

    Two views of relevance, because history terms find the topic but pull back to the earlier answers,
    while the question's own words pick the new sentence: the score with history, and the score, cosine
    and idf coverage of the question alone (scores relative to the best, so that they compare across
    questions). Then where the sentence lies against the topic's answers (the previous one, older ones),
    whether it answered twice already, and two crossings with the question's form (it asks about the
    previous answer itself; it is elliptical), read as ``reading`` reads them. None when the sentences
    cannot be read (a sharded front missing a shard: ``Answerer.view_of``).
    """
    x = np.zeros((len(answer.sentences), len(FOLLOWUP_FEATURES)), dtype=np.float64)
    if not answer.sentences:
        return x
    corpus = engine.index
    sids = np.array([corpus.sentence_ids[(s.citation.doc_id, s.citation.sentence_index)] for s in answer.sentences])
    anchors = topic_answers(history)
    seen = _view(engine, sids, anchors, [*plain.terms, *content_terms(plain.question, corpus.analyzer)])
    if seen is None:
        return None
    index, rows = seen[0], seen[1][: len(sids)]
    own = np.array([s.score for s in answer.sentences], dtype=np.float64)
    x[:, _F["with history"]] = own - own.max()
    scored = engine.score(plain, "hybrid", within)
    floor, best = (float(scored.scores.min()), float(scored.scores.max())) if len(scored.scores) else (0.0, 0.0)
    alone = dict(zip(scored.ids.tolist(), scored.scores.tolist()))
    x[:, _F["alone"]] = np.array([alone.get(i, floor) for i in sids.tolist()]) - best
    x[:, _F["alone cosine"]] = index.sentence_vectors[rows] @ plain.vector
    x[:, _F["alone coverage"]] = rank.query_coverage(index, plain.terms, rows).own
    docs = np.array([s.citation.doc_id for s in answer.sentences])
    pos = np.array([s.citation.sentence_index for s in answer.sentences])
    for j, (doc, at) in enumerate(anchors):
        k = np.where(docs == doc, pos - at, np.iinfo(np.int64).max)  # sentences after the anchor
        for offset, name in (_PLACES if j == 0 else _OLDER_PLACES).items():
            x[:, _F[name]] = np.maximum(x[:, _F[name]], k == offset)
        x[:, _F["same article"]] = np.maximum(x[:, _F["same article"]], docs == doc)
    times = Counter(anchors)
    x[:, _F["answered twice"]] = [times[(d, p)] >= 2 for d, p in zip(docs.tolist(), pos.tolist())]
    if anchors and asks_about_previous(index, plain.question, *anchors[0], reading):
        x[:, _F["about previous × 1 after"]] = x[:, _F["1 after it"]]
    if is_elliptical(plain.question, index, reading):
        x[:, _F["elliptical × previous"]] = x[:, _F["previous answer"]]
        x[:, _F["elliptical × 1 after"]] = x[:, _F["1 after it"]]
    return x


def _view(engine: Answerer, ids: np.ndarray, anchors: Sequence[tuple[str, int]], terms: Sequence[str],
          ) -> tuple["SentenceSet", np.ndarray] | None:
    """``engine.view_of`` the sentences ``ids`` and the topic's answers ``anchors`` (doc_id, index), for the
    query ``terms``: the sentences a follow-up's re-ranking reads (the anchors' next sentences come with them)."""
    known = engine.index.sentence_ids
    anchor_ids = [known[a] for a in anchors if a in known]
    wanted = np.array([*np.asarray(ids).tolist(), *anchor_ids], dtype=np.int64)
    return engine.view_of(wanted, list(dict.fromkeys(terms)))


def rank_followup(answer: Answer, features: np.ndarray, weights: dict[str, float]) -> None:
    """Re-score ``answer``'s sentences in place as ``features @ weights`` (the learned model's log-odds that
    a sentence answers the follow-up; a weight per :data:`FOLLOWUP_FEATURES` name) and re-sort them."""
    if set(weights) != set(FOLLOWUP_FEATURES):
        raise ValueError(f"a follow-up model weighs {sorted(weights)}, not the features {list(FOLLOWUP_FEATURES)}: "
                         "re-fit it with benchmarks/conversation_ltr.py")
    if not answer.sentences:
        return
    scores = features @ np.array([weights[name] for name in FOLLOWUP_FEATURES], dtype=np.float64)
    for s, score in zip(answer.sentences, scores.tolist()):
        s.score = score
    answer.sentences.sort(key=lambda s: -s.score)


def _covers(index: "Catalogue", question: str, doc_id: str, sentence_index: int) -> float:
    """Share of the idf mass of the question's content words (not "did", "say", …) in one sentence, as
    rank.query_coverage weighs a query (a word the corpus never uses weighs like the rarest possible one)."""
    sid = index.sentence_ids.get((doc_id, sentence_index))
    terms = content_terms(question, index.analyzer)
    if sid is None or not terms:
        return 0.0
    return float(rank.query_coverage(index, sorted(terms), np.array([sid], dtype=np.int64)).own[0])


def asks_about_previous(index: "Catalogue", question: str, doc_id: str, sentence_index: int,
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

"""Choosing the answer sentences from retrieved passages.

Every sentence of the top passages is scored against the question from its own evidence: its pooled
embedding's cosine to the question, the share of the question's terms it holds (and its neighbours
hold), the word-piece match of the question's words in it (``token_match``), and whether it carries the
kind of answer asked for. The features are combined linearly with weights from
:class:`qa.config.Settings`; a separate confidence decides abstention.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from qa.agreement import Statement
from qa.answer_checks import CHECKS, RANKED_KINDS, AskedType, answer_type_match, asked_type
from qa.cues import NAME
from qa.index import SentenceLookups, SentenceSet
from qa.retrieve import Ranking, tie_keys
from qa.text import POSSESSIVE
from qa.profile import Abstention, Profile
from qa.types import AnswerSentence, Citation, Disagreement, Passage

# A sentence opening with one of these usually needs the previous one to be understood.
_LEANING_OPENERS = ("they ", "he ", "she ", "it ", "this ", "these ", "that ", "those ", "his ", "her ", "their ")


@dataclass(frozen=True)
class Weights:
    """What a sentence's score is made of, for one retriever: the weight of each feature
    (``qa.profile.SENTENCE_FEATURES``; 0 where it does not use one) and how the features are read."""

    dense: float
    lexical: float
    heading_penalty: float
    answer_type: float  # the cue of a number, date or person where the question asks for one
    context: float  # the query terms found only in the neighbouring sentences
    context_dense: float  # a neighbour's cosine above the sentence's own
    token: float  # the word-piece match (token_match)
    context_token: float  # the word-piece match that only the neighbours add
    name_context: float  # share of the match a question's names take from the neighbours
    token_depth: int  # sentences, best by the other features, that the word-piece match re-scores
    answer_kinds: dict[str, float] = field(default_factory=dict)  # the other answer kinds' own cue weights

    def answer_kind(self, kind: str | None) -> float:
        """The weight of the cue of answer kind ``kind`` (qa/answer_checks.py) in a sentence's score."""
        if kind is None or not self.answer_type:
            return 0.0
        return float(self.answer_kinds.get(kind, self.answer_type))

    @property
    def reads_pieces(self) -> bool:
        """Whether the question's word pieces (and names) weigh in the score."""
        return self.token > 0 or self.context_token > 0

    @classmethod
    def for_mode(cls, mode: str, profile: Profile, *, neighbour_cosine: bool = True) -> "Weights":
        """The weights retriever ``mode`` scores with, from ``profile``. ``neighbour_cosine``: the question's
        neighbour cosines may weigh (not for a follow-up read with its history, ``Query.neighbour_cosine``)."""
        w = dict(profile.sentence_weights[mode])
        if not neighbour_cosine:
            w["context_dense"] = 0.0
        r = profile.ranking
        return cls(**w, name_context=r.name_context, token_depth=r.token_depth, answer_kinds=dict(r.answer_kinds))


@dataclass(frozen=True)
class ScoredSentences:
    ids: np.ndarray  # global sentence ids, best first
    scores: np.ndarray  # combined score, same order
    dense: np.ndarray  # raw cosine to the question (0 when not used)
    coverage: np.ndarray  # idf-weighted share of the question's terms the sentence contains
    typed: np.ndarray  # 1 where the sentence carries the answer type the question asks for
    asked: AskedType = AskedType()
    unseen: float = 0.0  # share of the question's idf mass in terms the corpus never uses
    token: np.ndarray | None = None  # word-piece match (token_match) of the best sentences (0 for the rest)
    unseen_name: bool = False  # the question names something (a capitalised word) the corpus never uses
    reader: np.ndarray | None = None  # the reader's logit of the sentences it read (NaN for the rest)
    degraded: bool = False  # scored without part of the corpus (a shard that did not answer)


def candidate_sentences(passages: Sequence[Passage] | Mapping[int, Passage], ranking: Ranking,
                        depth: int) -> np.ndarray:
    """The distinct sentences of the ``depth`` best passages of ``ranking``, best passage first; ``passages``
    gives each passage id's :class:`Passage` (an index's list, or a sharded front's map of those it got)."""
    seen = dict.fromkeys(sid for pid in ranking.ids[:depth].tolist() for sid in passages[pid].sentence_ids)
    return np.fromiter(seen, dtype=np.int64, count=len(seen))


def neighbour_ids(index: SentenceLookups, sentence_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sentences before (row 0) and after (row 1) each of ``sentence_ids``, and whether each is in the
    same document (where it is not, its id is clipped into range and meaningless)."""
    docs = index.sentence_documents
    near = np.clip(np.stack([sentence_ids - 1, sentence_ids + 1]), 0, max(len(docs) - 1, 0))
    same_doc = (near != sentence_ids) & (docs[near] == docs[sentence_ids]) if len(docs) else near != near
    return near, same_doc


@dataclass(frozen=True)
class Coverage:
    own: np.ndarray  # idf-weighted share of the query's terms each sentence contains
    context: np.ndarray | None  # the same over the sentence and its neighbours in its document, when asked for
    unseen: float  # share of the query's idf mass in terms the corpus never uses


def query_coverage(index: SentenceLookups, terms: list[str], sentence_ids: np.ndarray, *,
                   neighbours: bool = False) -> Coverage:
    """How much of the query each sentence holds: the share of the query's idf mass in its terms.

    A term the corpus never uses weighs as much as the rarest possible term: a question about the
    "Nobel Peace Prize" is not covered by a sentence that only says "peace". With ``neighbours``, also
    the share held by the sentence together with the sentences before and after it in its document:
    news sentences lean on the one before ("Only people with family in Pakistan are allowed to cross"
    follows the sentence that names Torkham), so the topic words are often next door.
    """
    uniq, idf, unseen = _query_idf(index, terms)
    total = float(idf.sum())
    if total <= 0 or not len(sentence_ids):
        zeros = np.zeros(len(sentence_ids), dtype=np.float32)
        return Coverage(zeros, zeros if neighbours else None, unseen)
    lex = index.lexical_sentences
    present = lex.contains(sentence_ids, uniq)
    own = present.astype(np.float32) @ idf / total
    if not neighbours:
        return Coverage(own, None, unseen)
    near, same_doc = neighbour_ids(index, sentence_ids)
    for k in range(2):
        if same_doc[k].any():
            present[same_doc[k]] |= lex.contains(near[k][same_doc[k]], uniq)
    return Coverage(own, present.astype(np.float32) @ idf / total, unseen)


def piece_match(index: SentenceSet, question_tokens: np.ndarray, sentence_ids: np.ndarray) -> np.ndarray:
    """(question pieces, sentences): each question word piece's best cosine to any word piece of each
    sentence, in MiniLM's contextual token vectors (0 for a sentence without pieces)."""
    best = np.zeros((len(question_tokens), len(sentence_ids)), dtype=np.float32)
    rows, scales, starts = index.tokens.of(sentence_ids)
    if not len(rows):
        return best
    # (question pieces, candidate pieces); the int8 rows' scales multiply the small result, not the rows.
    sims = (question_tokens.astype(np.float32) @ rows.astype(np.float32).T) * scales
    nonempty = np.diff(np.append(starts, len(rows))) > 0
    best[:, nonempty] = np.maximum.reduceat(sims, starts[nonempty], axis=1)
    return best


def token_match(index: SentenceSet, question_tokens: np.ndarray, question_ids: np.ndarray,
                sentence_ids: np.ndarray) -> np.ndarray:
    """How well each sentence holds the question's words, read through the model's token vectors: for
    every content word piece of the question, its best cosine to any word piece of the sentence, averaged
    with the pieces' idf weights (BERTScore's recall, Zhang et al. 2020).

    The stems only see a word that is repeated, and the pooled sentence vector blurs the question's
    words together; the token vectors see "envoy" in "ambassador" and "shut" in "closed", word by word.
    0 when the index has no token vectors or the question no content piece.
    """
    weights = _piece_weights(index, question_ids, sentence_ids)
    if weights is None:
        return np.zeros(len(sentence_ids), dtype=np.float32)
    return weights @ piece_match(index, question_tokens, sentence_ids)


def token_match_with_neighbours(index: SentenceSet, question_tokens: np.ndarray, question_ids: np.ndarray,
                                sentence_ids: np.ndarray, names: np.ndarray | None = None,
                                name_share: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """:func:`token_match` of each sentence, and the same match with each question piece's best taken over
    the sentence and its neighbours in its document: as with the terms (:func:`query_coverage`), a news
    sentence often leaves the question's topic to the sentence before it.

    ``names`` (a mask over the question's pieces, :func:`name_pieces`) take ``name_share`` of their
    neighbourhood's match in the first result too: the name a question is about ("Torkham", "Baradar") is
    usually said once, and the sentences after it answer about it without repeating it ("Only people with
    family living in Pakistan … are allowed to cross"). Without this, the rare name carries most of the
    match, and the sentence that only names the topic outranks the one that answers."""
    weights = _piece_weights(index, question_ids, sentence_ids)
    if weights is None:
        zeros = np.zeros(len(sentence_ids), dtype=np.float32)
        return zeros, zeros.copy()
    every, mine, near = _neighbourhood(index, sentence_ids)
    best = piece_match(index, question_tokens, every)  # one match over the sentences and their neighbours
    own = best[:, mine]
    around = own.copy()
    for row in near:
        has = row >= 0
        around[:, has] = np.maximum(around[:, has], best[:, row[has]])
    if names is not None and names.any() and name_share > 0:
        own = own.copy()
        own[names] += name_share * (around[names] - own[names])
    return weights @ own, weights @ around


def name_pieces(question: str, piece_ids: np.ndarray, vocabulary: Sequence[str]) -> np.ndarray:
    """Which of the question's word pieces spell a name: a word written capitalised after the question's
    first word (as :func:`names_unseen` reads names), its pieces rejoined from the uncased vocabulary."""
    named = {part.casefold() for m in NAME.finditer(question.strip())
             for part in re.findall(r"[^\W_]+", POSSESSIVE.sub("", m.group()))}
    mask = np.zeros(len(piece_ids), dtype=bool)
    if not named:
        return mask
    start, word = 0, ""
    for k, pid in enumerate(piece_ids.tolist() + [-1]):
        piece = vocabulary[pid] if pid >= 0 else ""
        if pid >= 0 and piece.startswith("##") and k > 0:
            word += piece[2:]
            continue
        if word in named:
            mask[start:k] = True
        start, word = k, piece
    return mask


def _piece_weights(index: SentenceSet, question_ids: np.ndarray, sentence_ids: np.ndarray) -> np.ndarray | None:
    """The question pieces' idf weights, summing to 1; None when there is nothing to match."""
    if index.tokens is None or not len(sentence_ids) or not len(question_ids):
        return None
    weights = index.tokens.weights[question_ids].astype(np.float32)
    total = float(weights.sum())
    return weights / total if total > 0 else None


def _query_idf(index: SentenceLookups, terms: list[str]) -> tuple[list[str], np.ndarray, float]:
    """The query's distinct terms, their idf over sentences (unseen terms: the highest possible), and the
    share of the idf mass in terms the corpus never uses."""
    lex = index.lexical_sentences
    uniq = list(dict.fromkeys(terms))
    unseen_idf = float(np.log((lex.n_docs + 0.5) / 0.5))
    known = [lex.idf_of(t) for t in uniq]
    idf = np.array([max(unseen_idf if v is None else v, 0.0) for v in known], dtype=np.float32)
    total = float(idf.sum())
    unseen = float(sum(w for v, w in zip(known, idf) if v is None)) / total if total > 0 else 0.0
    return uniq, idf, unseen


def names_unseen(index: SentenceLookups, question: str) -> bool:
    """Whether the question names something the corpus never mentions ("the 2022 FIFA World Cup" of two
    articles about Pakistan): a capitalised word, not the question's first, none of whose terms occur."""
    lex = index.lexical_sentences
    for m in NAME.finditer(question.strip()):
        terms = index.analyzer.terms(m.group())
        if terms and all(lex.idf_of(t) is None for t in terms):
            return True
    return False


def score_sentences(index: SentenceSet, ids: np.ndarray, terms: list[str],
                    query_vector: np.ndarray | None, weights: Weights, question: str = "",
                    question_tokens: tuple[np.ndarray, np.ndarray] | None = None,
                    question_names: np.ndarray | None = None) -> ScoredSentences:
    """Rank the candidate sentences ``ids``. ``question_tokens``, the question's (token vectors, word-piece
    ids), add the word-piece match: ``weights.token`` of it to the score, and all of it to the result for
    the abstention model. The ``context*`` weights add what only a sentence's neighbours hold: the
    question's terms, a closer cosine, more of its word pieces; with them, the pieces ``question_names``
    marks take ``weights.name_context`` of their match from the neighbours in the sentence's own match
    (:func:`token_match_with_neighbours`), which the abstention model reads too."""
    if not len(ids):
        z = np.zeros(0, dtype=np.float32)
        return ScoredSentences(ids, z, z, z, z, asked_type(question)[0],
                               unseen=query_coverage(index, terms, ids).unseen,
                               unseen_name=names_unseen(index, question))
    if query_vector is None:
        dense = np.zeros(len(ids), dtype=np.float32)
        dense_gain = dense
    else:
        dense, dense_gain = _cosines(index, ids, query_vector.astype(np.float32), weights.context_dense > 0)
    cov = query_coverage(index, terms, ids, neighbours=weights.context > 0)
    coverage, unseen = cov.own, cov.unseen
    asked, typed = answer_type_match(question, [index.sentences[i].text for i in ids.tolist()])
    is_heading = np.array([index.sentences[i].kind != "body" for i in ids.tolist()], dtype=np.float32)
    combined = (weights.dense * dense + weights.lexical * coverage
                + weights.answer_kind(asked.name) * typed - weights.heading_penalty * is_heading
                + weights.context_dense * dense_gain)
    if cov.context is not None:
        combined += weights.context * (cov.context - coverage)
    tokens = None
    if question_tokens is not None and index.tokens is not None:
        # Only the best few by the other features: the match costs a matrix product per candidate piece,
        # and the answer is nearly always among them (docs/DECISIONS.md). It only raises a score, so a
        # sentence left out stays below every sentence scored.
        depth = min(weights.token_depth, len(ids))
        best = np.argpartition(-combined, depth - 1)[:depth]
        tokens = np.zeros(len(ids), dtype=np.float32)
        if weights.context_token > 0:
            own, around = token_match_with_neighbours(index, *question_tokens, ids[best], question_names,
                                                      weights.name_context)
            combined[best] += weights.context_token * (around - own)
        else:
            own = token_match(index, *question_tokens, ids[best])
        tokens[best] = own
        combined += weights.token * tokens
    order = np.lexsort((tie_keys(ids, index.sentence_order), -combined))
    return ScoredSentences(ids[order], combined[order], dense[order], coverage[order], typed[order],
                           asked, unseen, None if tokens is None else tokens[order], names_unseen(index, question))


def _cosines(index: SentenceSet, ids: np.ndarray, query_vector: np.ndarray,
             neighbours_too: bool) -> tuple[np.ndarray, np.ndarray]:
    """Each sentence's cosine to the question and, when asked, how far its closer neighbour in the same
    document exceeds it (0 otherwise): the answer to a question often sits next to its best paraphrase."""
    if not neighbours_too:
        dense = index.sentence_vectors[ids] @ query_vector
        return dense, np.zeros(len(ids), dtype=np.float32)
    every, mine, near = _neighbourhood(index, ids)
    cos = index.sentence_vectors[every] @ query_vector  # one read of every row needed
    dense = cos[mine]
    closest = np.where(near >= 0, cos[near], -np.inf).max(axis=0)
    return dense, np.maximum(closest - dense, 0.0).astype(np.float32)


def _neighbourhood(index: SentenceSet, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``ids`` and their same-document neighbours as one sorted array of distinct sentences (read or matched
    in one go: most neighbours are candidates too), each id's position in it, and the positions of its
    neighbours before and after ((2, n), −1 where there is none)."""
    near, same_doc = neighbour_ids(index, ids)
    every, position = np.unique(np.concatenate([ids, near[same_doc]]), return_inverse=True)
    around = np.full((2, len(ids)), -1, dtype=np.int64)
    around[same_doc] = position[len(ids):]  # near[same_doc] lists the sentences before, then those after
    return every, position[: len(ids)], around


# The ranking's own evidence about its best sentence, by name; qa.answer_checks.CHECKS add what the question
# asks for and is about. Together they are what the abstention model weighs (DECISION_FEATURES).
FEATURES = ("dense", "coverage", "best_coverage", "unseen", "type_missing", "margin", "token_match",
            "strict_type_missing", "unseen_name")
DECISION_FEATURES = FEATURES + CHECKS

def abstention_features(scored: ScoredSentences, token_match_centre: float) -> dict[str, float]:
    """What the confidence model sees of the ranking (:data:`FEATURES`): how well the best sentence matches,
    and what the corpus lacks.

    ``token_match``: the best sentence's word-piece match minus ``token_match_centre`` (the profile's: where
    the best sentences of questions the corpus cannot answer sit), so that it is 0 wherever there is no match
    to read (bm25 mode, follow-ups, an index without word-piece vectors);

    ``type_missing``: the question asks for a type of answer the best sentence does not carry;
    ``strict_type_missing``: the same where the wording leaves no doubt ("how many", "the name of");
    ``unseen_name``: the question names something the corpus never mentions (:func:`names_unseen`).
    """
    asked = scored.asked
    if not len(scored.ids):
        return {"dense": 0.0, "coverage": 0.0, "best_coverage": 0.0, "unseen": scored.unseen,
                "type_missing": float(asked.name in RANKED_KINDS), "margin": 0.0, "token_match": 0.0,
                "strict_type_missing": float(asked.strict and asked.name in RANKED_KINDS),
                "unseen_name": float(scored.unseen_name)}
    margin = float(scored.scores[0] - scored.scores[1]) if len(scored.ids) > 1 else float(scored.scores[0])
    token = 0.0 if scored.token is None else float(scored.token[0]) - token_match_centre
    missing = asked.name in RANKED_KINDS and not scored.typed[0]
    return {"dense": float(scored.dense[0]), "coverage": float(scored.coverage[0]),
            "best_coverage": float(scored.coverage.max()), "unseen": float(scored.unseen),
            "type_missing": float(missing), "margin": margin, "token_match": token,
            "strict_type_missing": float(missing and asked.strict), "unseen_name": float(scored.unseen_name)}


def log_odds(features: dict[str, float], model: dict[str, float]) -> float:
    """The abstention model's log-odds without the reader: ``bias`` + Σ weight · feature, by name (a feature the
    model does not name weighs 0)."""
    return float(model.get("bias", 0.0)) + sum(float(w) * features[name] for name, w in model.items() if name != "bias")


def confidence(z: float, scored: ScoredSentences, abstention: Abstention) -> float:
    """Probability that the best sentence of ``scored`` answers: the logistic of ``z`` (:func:`log_odds`) and,
    where the reader read the best sentence (:func:`with_reader`), the profile's reader term: weight · (its
    logit, clipped to ± the bound so that its effect is bounded, − centre). 0 without a candidate."""
    if not len(scored.ids):
        return 0.0
    a = abstention
    if scored.reader is not None and a.reader_weight and np.isfinite(scored.reader[0]):
        logit = float(np.clip(scored.reader[0], -a.reader_logit_bound, a.reader_logit_bound))
        z += a.reader_weight * (logit - a.reader_centre)
    return float(1.0 / (1.0 + np.exp(-z)))


def reader_could_decide(z: float, abstention: Abstention, threshold: float) -> bool:
    """Whether the reader's abstention term, whatever its (bounded) logit, could move a confidence of log-odds
    ``z`` across ``threshold``. When it cannot, reading is skipped: the decision is the same and the question
    costs a model run less (the reader is about a third of a question's CPU)."""
    a = abstention
    if not a.reader_weight or not 0.0 < threshold < 1.0:
        return False
    z -= float(np.log(threshold / (1.0 - threshold)))
    low, high = sorted((a.reader_weight * (-a.reader_logit_bound - a.reader_centre),
                        a.reader_weight * (a.reader_logit_bound - a.reader_centre)))
    return z + low < 0.0 <= z + high


def with_reader(scored: ScoredSentences, logits: np.ndarray, weight: float) -> ScoredSentences:
    """The ranking after the reader re-read its first ``len(logits)`` sentences: those get ``weight`` ·
    logit added and are re-ordered among themselves; the rest, unread, stay after them in their order."""
    depth = len(logits)
    if not depth:
        return scored
    scores = scored.scores.copy()
    scores[:depth] += weight * logits
    order = np.concatenate([np.argsort(-scores[:depth], kind="stable"), np.arange(depth, len(scores))])
    reader = np.full(len(scores), np.nan, dtype=np.float32)
    reader[:depth] = logits
    token = None if scored.token is None else scored.token[order]
    return replace(scored, ids=scored.ids[order], scores=scores[order], dense=scored.dense[order],
                   coverage=scored.coverage[order], typed=scored.typed[order], token=token, reader=reader[order])


def citation(index: SentenceSet, sid: int) -> Citation:
    s = index.sentences[sid]
    doc = index.documents[s.doc_id]
    return Citation(s.doc_id, doc.title, s.index, s.start, s.end, page=doc.page_of(s.start), published=doc.published)


def leaning_context(index: SentenceSet, sid: int) -> str | None:
    """The previous sentence, when this one opens with a pronoun that points back to it."""
    s = index.sentences[sid]
    if s.index == 0 or not s.text.lower().startswith(_LEANING_OPENERS):
        return None
    prev = index.sentences[sid - 1]
    return prev.text if prev.doc_id == s.doc_id else None


def to_answer_sentences(index: SentenceSet, scored: ScoredSentences, groups: list[Statement]) -> list[AnswerSentence]:
    """The answer's sentences: each statement's head with its places that state the same (``also_in``) and
    those that differ in a name, number or date (``disagrees``; qa/agreement.py)."""
    score_of = dict(zip(scored.ids.tolist(), scored.scores.tolist()))
    return [AnswerSentence(
        text=index.sentences[g.head].text,
        citation=citation(index, g.head),
        score=score_of[g.head],
        also_in=[citation(index, sid) for sid in g.same],
        context=leaning_context(index, g.head),
        kind=index.sentences[g.head].kind,
        disagrees=[Disagreement(citation(index, sid), index.sentences[sid].text, differs) for sid, differs in g.differ],
    ) for g in groups]

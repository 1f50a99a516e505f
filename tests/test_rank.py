"""Sentence scoring on the real seed index: coverage, neighbour context, answer types, duplicates."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from qa import rank
from qa.profile import load_profile

TORKHAM_DOC = "004_efe84b1d27e376f8.txt"
PROFILE = load_profile()
CENTRE = PROFILE.abstention.token_match_centre


def _sid(index, doc_id: str, starts_with: str) -> int:
    return next(i for i, s in enumerate(index.sentences) if s.doc_id == doc_id and s.text.startswith(starts_with))


def test_coverage_is_the_share_of_the_question_idf_a_sentence_holds(seed_engine):
    index = seed_engine.index
    terms = index.analyzer.terms("When did the Torkham border crossing reopen?")
    reopened = _sid(index, TORKHAM_DOC, "On Friday, the Torkham border crossing reopened")
    other = _sid(index, TORKHAM_DOC, "However, Friday’s reopening came with conditions")
    got = rank.query_coverage(index, terms, np.array([reopened, other]))
    cov, unseen = got.own, got.unseen
    assert unseen == 0.0
    assert cov[0] == pytest.approx(1.0) and 0.0 <= cov[1] < cov[0]
    never = index.analyzer.terms("Torkham zyxqwv")  # a term the corpus never uses weighs like the rarest
    got = rank.query_coverage(index, never, np.array([reopened]))
    cov_never, unseen_never = got.own, got.unseen
    assert 0.5 < unseen_never < 1.0 and cov_never[0] == pytest.approx(1 - unseen_never)  # the rarer half


def test_context_coverage_adds_the_neighbours_terms_within_the_document(seed_engine):
    index = seed_engine.index
    terms = index.analyzer.terms("Who is now allowed to cross at Torkham?")
    answer = _sid(index, TORKHAM_DOC, "However, Friday’s reopening came with conditions")
    ids = np.array([answer])
    got = rank.query_coverage(index, terms, ids, neighbours=True)
    own, ctx = got.own[0], got.context[0]
    assert "torkham" in index.analyzer.terms(index.sentences[answer - 1].text)
    assert "torkham" not in index.analyzer.terms(index.sentences[answer].text)
    assert ctx > own  # "Torkham" is in the sentence before
    first = np.array([0])  # a document's first sentence has no neighbour before it in another document
    last_of_first_doc = max(i for i, s in enumerate(index.sentences) if s.doc_id == index.sentences[0].doc_id)
    for sid in (first, np.array([last_of_first_doc])):
        sid_terms = index.analyzer.terms(index.sentences[int(sid[0]) + (1 if sid[0] == last_of_first_doc else 0)].text)
        got = rank.query_coverage(index, sid_terms, sid, neighbours=True).context[0]
        assert 0.0 <= got <= 1.0


def test_context_never_reaches_into_another_document(seed_engine):
    index = seed_engine.index
    last = max(i for i, s in enumerate(index.sentences) if s.doc_id == index.sentences[0].doc_id)
    following = index.sentences[last + 1]
    assert following.doc_id != index.sentences[last].doc_id
    only_there = [t for t in index.analyzer.terms(following.text)
                  if t not in index.analyzer.terms(index.sentences[last].text)
                  and t not in index.analyzer.terms(index.sentences[last - 1].text)]
    assert only_there
    assert rank.query_coverage(index, only_there, np.array([last]), neighbours=True).context[0] == 0.0


def test_a_strict_type_the_best_sentence_lacks_is_an_abstention_feature(seed_engine):
    strict = "strict_type_missing"
    scored = seed_engine.score(seed_engine.query("How many people were in the group moved from Dor Baba?", "hybrid"),
                               "hybrid")
    assert scored.asked.strict and not scored.typed[0]
    assert rank.abstention_features(scored, CENTRE)[strict] == 1.0
    loose = seed_engine.score(seed_engine.query("Who is now allowed to cross at Torkham?", "hybrid"), "hybrid")
    assert rank.abstention_features(loose, CENTRE)[strict] == 0.0  # a loose wording never vetoes


def _naive_token_match(index, question_tokens, question_ids, sid) -> float:
    """rank.token_match for one sentence, written out: best cosine per question piece, idf-weighted mean."""
    rows, scales, _ = index.tokens.of(np.array([sid]))
    pieces = rows.astype(np.float64) * scales[:, None]
    weights = index.tokens.weights[question_ids].astype(np.float64)
    best = [max(float(q @ p) for p in pieces) for q in question_tokens.astype(np.float64)]
    return float(np.dot(weights, best) / weights.sum())


def test_token_match_is_the_idf_weighted_best_piece_cosine(seed_engine):
    index = seed_engine.index
    embedded = seed_engine.embed_query("When was the Torkham border crossing shut?")
    q_tokens, q_ids = embedded.tokens[0], embedded.token_ids[0]
    ids = np.array([_sid(index, TORKHAM_DOC, "On Friday, the Torkham border crossing reopened"),
                    _sid(index, TORKHAM_DOC, "However, Friday’s reopening came with conditions"), 0, 3])
    got = rank.token_match(index, q_tokens, q_ids, ids)
    want = [_naive_token_match(index, q_tokens, q_ids, sid) for sid in ids.tolist()]
    assert got == pytest.approx(want, abs=1e-5)
    assert got[0] == got.max() > 0.8  # "shut" finds "closed", "Torkham border crossing" itself
    # stop words and punctuation weigh nothing: "was", "the", "?" do not count
    assert index.tokens.weights[q_ids].tolist().count(0.0) >= 3


def test_token_match_without_word_pieces_is_zero(seed_engine):
    from dataclasses import replace

    index = seed_engine.index
    embedded = seed_engine.embed_query("When did it reopen?")
    ids = np.array([0, 1, 2])
    without = replace(index, tokens=None)
    assert rank.token_match(without, embedded.tokens[0], embedded.token_ids[0], ids).tolist() == [0, 0, 0]
    only_stop = seed_engine.embed_query("Was it?")  # no content piece at all
    assert not rank.token_match(index, only_stop.tokens[0], only_stop.token_ids[0], ids).any()
    assert len(rank.token_match(index, embedded.tokens[0], embedded.token_ids[0], np.zeros(0, dtype=np.int64))) == 0


def test_context_token_match_takes_each_piece_from_the_sentence_or_a_neighbour(seed_engine):
    index = seed_engine.index
    embedded = seed_engine.embed_query("Who is now allowed to cross at Torkham?")
    q_tokens, q_ids = embedded.tokens[0], embedded.token_ids[0]
    answer = _sid(index, TORKHAM_DOC, "However, Friday’s reopening came with conditions")
    last_of_first_doc = max(i for i, s in enumerate(index.sentences) if s.doc_id == index.sentences[0].doc_id)
    ids = np.array([answer, 0, last_of_first_doc])
    own, around = rank.token_match_with_neighbours(index, q_tokens, q_ids, ids)
    assert own == pytest.approx(rank.token_match(index, q_tokens, q_ids, ids))
    weights = index.tokens.weights[q_ids]
    for k, sid in enumerate(ids.tolist()):
        same_doc = [j for j in (sid - 1, sid + 1)
                    if 0 <= j < len(index.sentences) and index.sentences[j].doc_id == index.sentences[sid].doc_id]
        best = np.max([rank.piece_match(index, q_tokens, np.array([j]))[:, 0] for j in [sid, *same_doc]], axis=0)
        assert around[k] == pytest.approx(float(weights @ best / weights.sum()), abs=1e-5)
    assert around[0] > own[0]  # "Torkham" is in the sentence before the answer
    assert (around >= own - 1e-6).all()


def test_name_pieces_mark_the_words_the_question_capitalises(seed_engine):
    vocabulary = seed_engine.vocabulary
    pieces = {}
    for question in ("Who is now allowed to cross at Torkham?", "What did Mullah Baradar's office say?",
                     "What is Tehreek-e-Taliban Pakistan?", "Torkham reopened when?"):
        ids = seed_engine.embed_query(question).token_ids[0]
        mask = rank.name_pieces(question, ids, vocabulary)
        assert mask.shape == ids.shape
        marked = [vocabulary[i] for i, m in zip(ids.tolist(), mask.tolist()) if m]
        pieces[question] = "".join(piece.removeprefix("##") for piece in marked)
    assert pieces["Who is now allowed to cross at Torkham?"] == "torkham"  # every piece of the name
    assert pieces["What did Mullah Baradar's office say?"] == "mullahbaradar"  # not the possessive, not "office"
    assert pieces["What is Tehreek-e-Taliban Pakistan?"] == "tehreeketalibanpakistan"  # each part of the name
    assert pieces["Torkham reopened when?"] == ""  # the opening word is not read as a name


def test_a_questions_names_may_be_matched_in_a_neighbour(seed_engine):
    index = seed_engine.index
    question = "Who is now allowed to cross at Torkham?"
    embedded = seed_engine.embed_query(question)
    q_tokens, q_ids = embedded.tokens[0], embedded.token_ids[0]
    names = rank.name_pieces(question, q_ids, seed_engine.vocabulary)
    after = _sid(index, TORKHAM_DOC, "However, Friday’s reopening came with conditions")  # follows the name
    ids = np.array([after, _sid(index, TORKHAM_DOC, "On Friday, the Torkham border crossing reopened")])
    own, around = rank.token_match_with_neighbours(index, q_tokens, q_ids, ids)
    full, around_too = rank.token_match_with_neighbours(index, q_tokens, q_ids, ids, names, 1.0)
    half, _ = rank.token_match_with_neighbours(index, q_tokens, q_ids, ids, names, 0.5)
    assert around_too == pytest.approx(around)  # the neighbourhood's match does not change
    assert full[0] > own[0] and half == pytest.approx((own + full) / 2, abs=1e-6)  # "Torkham" is next door
    assert full[1] == pytest.approx(own[1], abs=1e-6)  # a sentence holding the name itself gains nothing
    assert (own <= full + 1e-6).all() and (full <= around + 1e-6).all()


def test_neighbour_cosine_gain_stays_in_the_document(seed_engine):
    index = seed_engine.index
    vector = seed_engine.encode_query("Who is now allowed to cross at Torkham?")
    last_of_first_doc = max(i for i, s in enumerate(index.sentences) if s.doc_id == index.sentences[0].doc_id)
    ids = np.array([last_of_first_doc, 5])
    dense, gain = rank._cosines(index, ids, vector, neighbours_too=True)
    vectors = np.asarray(index.sentence_vectors)
    assert dense == pytest.approx(vectors[ids] @ vector, abs=1e-6)
    assert gain[0] == pytest.approx(max(0.0, float(vectors[last_of_first_doc - 1] @ vector - dense[0])), abs=1e-6)
    assert gain[1] == pytest.approx(max(0.0, float(max(vectors[4] @ vector, vectors[6] @ vector) - dense[1])), abs=1e-6)


def test_a_name_the_corpus_never_uses(seed_engine):
    index = seed_engine.index
    assert rank.names_unseen(index, "Who won the Wimbledon final last year?")
    assert not rank.names_unseen(index, "What did Bilawal Bhutto say in Munich?")  # both names are in the articles
    assert not rank.names_unseen(index, "Zebras are not mentioned?")  # the opening capital is not a name
    scored = seed_engine.score(seed_engine.query("Who won the Wimbledon final last year?", "hybrid"), "hybrid")
    assert rank.abstention_features(scored, CENTRE)["unseen_name"] == 1.0


def _scored(n: int) -> rank.ScoredSentences:
    ids = np.arange(100, 100 + n)
    scores = np.linspace(1.0, 0.0, n).astype(np.float32)
    return rank.ScoredSentences(ids, scores, scores.copy(), scores.copy(), np.zeros(n, dtype=np.float32),
                                token=scores.copy())


def test_the_reader_reorders_only_the_sentences_it_read():
    scored = _scored(5)
    logits = np.array([-2.0, 0.0, 3.0], dtype=np.float32)  # lifts the third sentence over the first two
    read = rank.with_reader(scored, logits, weight=0.5)
    assert read.ids.tolist() == [102, 101, 100, 103, 104]
    assert read.scores[0] == pytest.approx(0.5 + 1.5)
    assert read.dense.tolist() == pytest.approx(read.token.tolist())  # every column follows the new order
    assert read.reader[:3].tolist() == [3.0, 0.0, -2.0] and np.isnan(read.reader[3:]).all()
    assert rank.with_reader(scored, np.zeros(0, dtype=np.float32), 0.5) is scored


def _term(weight: float, centre: float, bound: float = 8.0):
    return replace(PROFILE.abstention, reader_weight=weight, reader_centre=centre, reader_logit_bound=bound)


def test_the_reader_term_moves_the_confidence_by_the_best_logit():
    scored = rank.with_reader(_scored(3), np.array([2.0, 0.0, 0.0], dtype=np.float32), 0.1)
    assert rank.confidence(0.0, scored, _term(0.0, 0.0)) == pytest.approx(0.5)
    assert rank.confidence(0.0, scored, _term(1.0, 2.0)) == pytest.approx(0.5)
    assert rank.confidence(0.0, scored, _term(1.0, 0.0)) == pytest.approx(1 / (1 + np.exp(-2.0)))
    assert rank.confidence(0.0, _scored(3), _term(1.0, 0.0)) == pytest.approx(0.5)  # not read: no reader term


def test_the_reader_term_is_bounded_and_read_only_where_it_could_decide():
    far = rank.with_reader(_scored(3), np.array([40.0, 0.0, 0.0], dtype=np.float32), 0.0)
    assert rank.confidence(0.0, far, _term(1.0, 0.0, bound=8.0)) == pytest.approx(1 / (1 + np.exp(-8.0)))
    # log-odds 0 against threshold 0.5: any logit of the reader's sign decides
    assert rank.reader_could_decide(0.0, _term(0.5, -4.0), 0.5)
    # log-odds far beyond what the bounded term can undo: the decision is taken without reading
    assert not rank.reader_could_decide(30.0, _term(0.5, -4.0), 0.5)
    assert not rank.reader_could_decide(-30.0, _term(0.5, -4.0), 0.5)
    assert not rank.reader_could_decide(0.0, _term(0.0, -4.0), 0.5)  # no reader term
    # against another threshold the same log-odds may be out of reach: log(0.99 / 0.01) = 4.6 > 0.5 · 8
    assert not rank.reader_could_decide(0.0, _term(0.5, 0.0), 0.99)


def test_the_abstention_model_weighs_features_by_name():
    features = {name: 0.0 for name in rank.DECISION_FEATURES} | {"dense": 0.5, "subject_missing": 1.0}
    assert rank.log_odds(features, {"bias": -1.0, "dense": 4.0, "subject_missing": -2.0}) == pytest.approx(-1.0)
    assert rank.log_odds(features, {}) == 0.0  # a feature the model does not name weighs 0


def test_a_retriever_weighs_the_features_its_profile_gives_it():
    weights = PROFILE.sentence_weights
    hybrid, bm25 = rank.Weights.for_mode("hybrid", PROFILE), rank.Weights.for_mode("bm25", PROFILE)
    assert hybrid.token == weights["hybrid"]["token"] > 0 and hybrid.lexical == weights["hybrid"]["lexical"]
    assert bm25.dense == 0.0 and bm25.token == 0.0 and bm25.context == 0.0 and bm25.lexical > 0
    assert rank.Weights.for_mode("dense", PROFILE).lexical == 0.0
    assert rank.Weights.for_mode("hybrid", PROFILE, neighbour_cosine=False).context_dense == 0.0
    assert hybrid.reads_pieces and not bm25.reads_pieces

"""The inverted index must score exactly as rank-bm25 does."""

import numpy as np
from rank_bm25 import BM25Okapi

from qa.ingest import load_corpus, split_sentences
from qa.lexical import LexicalIndex
from qa.text import Analyzer, default_stopwords
from tests.conftest import SEEDS


def _corpus():
    analyzer = Analyzer(stopwords=default_stopwords())
    sents = [s for d in load_corpus(SEEDS) for s in split_sentences(d)]
    return analyzer, [analyzer.terms(s.text) for s in sents]


def test_scores_equal_rank_bm25_on_the_seed_sentences():
    analyzer, corpus = _corpus()
    ours, ref = LexicalIndex.build(corpus), BM25Okapi(corpus)
    for q in ["Who led the Pakistani delegation to Kabul?", "Torkham crossing reopened Friday",
              "taliban taliban ttp", "nothing matches zzz"]:
        terms = analyzer.terms(q)
        expected = ref.get_scores(terms)
        ids, scores = ours.scores(terms)
        dense = np.zeros(len(corpus))
        dense[ids] = scores
        assert np.allclose(dense, expected, atol=1e-4)
        assert set(ids.tolist()) == set(np.flatnonzero(expected > 0).tolist())
        some = np.array([0, 3, 5, len(corpus) - 1])
        assert np.allclose(ours.scores_of(terms, some), np.asarray(ref.get_batch_scores(terms, some.tolist())), atol=1e-4)


def test_contains_and_round_trip(tmp_path):
    _, corpus = _corpus()
    lex = LexicalIndex.build(corpus)
    lex.save(tmp_path, "x")
    back = LexicalIndex.load(tmp_path, "x")
    assert back.vocab == lex.vocab and np.array_equal(back.docs, lex.docs) and back.avgdl == lex.avgdl
    ids = np.arange(len(corpus))
    terms = ["torkham", "kabul", "absent-term"]
    m = back.contains(ids, terms)
    for i, doc in enumerate(corpus):
        assert m[i].tolist() == [t in doc for t in terms]


def test_from_counts_gives_rank_bm25s_index():
    from collections import Counter

    corpus = [["border", "close", "border"], ["trade", "resum"], [], ["border", "trade", "talk", "talk"],
              ["close"], ["border"], ["border", "close"]]
    built = LexicalIndex.build(corpus)
    terms = sorted({t for doc in corpus for t in doc}, reverse=True) + ["unused"]  # any order; unused dropped
    entries = [(d, terms.index(t), n) for d, doc in enumerate(corpus) for t, n in Counter(doc).items()]
    doc_ids, term_ids, tfs = (np.array(c) for c in zip(*entries))
    counted = LexicalIndex.from_counts(len(corpus), terms, doc_ids, term_ids, tfs)
    assert counted.vocab == built.vocab and counted.avgdl == built.avgdl
    assert np.allclose(counted.idf, built.idf, rtol=1e-6)  # "border" is in most documents: the epsilon floor
    for name in ("doc_len", "indptr", "docs", "tfs"):
        assert np.array_equal(getattr(counted, name), getattr(built, name)), name
    again = LexicalIndex.from_counts(counted.n_docs, counted.terms, *counted.counts())
    assert again.vocab == counted.vocab and np.array_equal(again.docs, counted.docs)
    assert np.array_equal(again.tfs, counted.tfs) and np.array_equal(again.idf, counted.idf)

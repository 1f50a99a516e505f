"""Segments read as one index: the same rows and the same BM25 figures as one index of the live documents."""

import numpy as np
import pytest

from qa.index.rows import VectorRows
from qa.index.stacked import StackedLexicon, StackedRows
from qa.lexical import LexicalIndex

DOCS = [["taliban", "border", "closed"], ["border", "reopened", "friday"], ["trucks", "border", "border"],
        ["friday", "prayers"], ["taliban", "talks", "kabul"], ["kabul", "border", "trade", "trucks"],
        ["rain", "floods"]]


def _index(docs: list[list[str]]) -> LexicalIndex:
    terms = sorted({t for d in docs for t in d})
    ids = {t: i for i, t in enumerate(terms)}
    pairs = {}
    for n, d in enumerate(docs):
        for t in d:
            pairs[(n, ids[t])] = pairs.get((n, ids[t]), 0) + 1
    doc_ids, term_ids, tfs = (np.array(c) for c in zip(*((n, t, f) for (n, t), f in pairs.items())))
    return LexicalIndex.from_counts(len(docs), terms, doc_ids, term_ids, tfs)


def test_stacked_rows_read_each_row_from_its_part(tmp_path):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 3)).astype(np.float32), rng.normal(size=(4, 3)).astype(np.float32)
    np.save(tmp_path / "a.npy", a)
    rows = StackedRows([VectorRows(tmp_path / "a.npy"), b])
    whole = np.concatenate([a, b])
    ids = np.array([8, 0, 5, 4, 5])
    assert rows.shape == (9, 3) and np.array_equal(rows[ids], whole[ids]) and np.array_equal(rows[6], whole[6])
    assert np.array_equal(np.asarray(rows), whole)
    got = rows.ranges(np.array([1, 5, 7]), np.array([3, 7, 7]))
    assert np.array_equal(got, np.concatenate([whole[1:3], whole[5:7]]))
    with pytest.raises(IndexError):
        rows[np.array([9])]


@pytest.mark.parametrize("cut", [1, 3, 6])
def test_a_stacked_lexicon_scores_as_one_index_of_the_live_documents(cut):
    deleted = {2, 4}  # global ids
    parts = [_index(DOCS[:cut]), _index(DOCS[cut:])]
    live = [np.array([i not in deleted for i in range(cut)]),
            np.array([i + cut not in deleted for i in range(len(DOCS) - cut)])]
    stacked = StackedLexicon(parts, live)
    kept = [i for i in range(len(DOCS)) if i not in deleted]
    one = _index([DOCS[i] for i in kept])  # the index a build from scratch makes
    assert stacked.n_docs == one.n_docs and stacked.avgdl == pytest.approx(one.avgdl)
    assert stacked.vocab.keys() == one.vocab.keys()
    assert {t: stacked.idf_of(t) for t in one.vocab} == {t: one.idf_of(t) for t in one.vocab}
    for query in (["border", "trucks"], ["friday", "friday", "kabul"], ["taliban"], ["nothing"]):
        ids, scores = stacked.scores(query)
        local, expected = one.scores(query)
        assert [kept[i] for i in local.tolist()] == ids.tolist()
        assert scores.tolist() == pytest.approx(expected.tolist(), rel=1e-6)
        assert stacked.scores_of(query, np.array(kept)).tolist() == pytest.approx(one.scores_of(
            query, np.arange(len(kept))).tolist(), rel=1e-6)
    held = stacked.contains(np.array(kept), ["border", "kabul"])
    assert held.tolist() == one.contains(np.arange(len(kept)), ["border", "kabul"]).tolist()
    docs, tfs = stacked.postings("border")
    assert docs.tolist() == [0, 1, 5] and tfs.tolist() == [1, 1, 1]  # document 2 (border twice) is deleted

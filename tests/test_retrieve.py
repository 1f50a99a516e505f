import numpy as np

from qa.retrieve import Ranking, rrf, top_k


def R(ids, scores):
    return Ranking(np.array(ids, dtype=np.int64), np.array(scores, dtype=np.float32))


def test_top_k_orders_by_score_then_id_and_can_drop_zeros():
    r = top_k(np.array([0.0, 3.0, 1.0, 3.0, 2.0], dtype=np.float32), 3)
    assert r.ids.tolist() == [1, 3, 4]
    r = top_k(np.array([0.0, 0.0, 1.0], dtype=np.float32), 5, positive_only=True)
    assert r.ids.tolist() == [2]


def test_rrf_by_hand():
    fused = rrf([R([1, 2, 3], [9, 8, 7]), R([3, 1], [0.9, 0.1])], k=60)
    # 1: 1/61 + 1/62; 3: 1/63 + 1/61; 2: 1/62
    assert fused.ids.tolist() == [1, 3, 2]
    assert np.isclose(fused.scores[0], 1 / 61 + 1 / 62)
    assert np.isclose(fused.scores[2], 1 / 62)


def test_empty_rankings_fuse_to_empty():
    assert len(rrf([Ranking.empty(), Ranking.empty()])) == 0

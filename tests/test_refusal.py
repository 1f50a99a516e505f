"""The refusal trade-off over thresholds (qa/refusal.py): the curve by hand, its best points, table and chart."""

from __future__ import annotations

from qa import refusal


def test_the_refusal_curve_and_its_report(tmp_path):
    points = refusal.curve([0.9, 0.8, 0.3, 0.95], [0.1, 0.6], thresholds=(0.0, 0.2, 0.5, 0.7, 1.0))
    assert [(p["threshold"], p["refused_unanswerable"], p["wrongly_refused"]) for p in points] == [
        (0.0, 0.0, 0.0), (0.2, 0.5, 0.0), (0.5, 0.5, 0.25), (0.7, 1.0, 0.25), (1.0, 1.0, 1.0)]
    assert refusal.best_at(points, 0.0)["threshold"] == 0.2
    assert refusal.best_at(points, 0.3)["threshold"] == 0.7
    assert refusal.curve([0.9], []) == []  # no unanswerable question: no curve
    assert 0.62 in refusal.thresholds_with(0.62) and refusal.thresholds_with(None) == refusal.CURVE_THRESHOLDS
    report = {"dataset": "toy", "meta": {"abstain_threshold": 0.5}, "retrievers": {"hybrid": {"refusal_curve": points}}}
    lines = refusal.markdown(report, "toy.png")
    assert "| hybrid | 0.5 **in use** | 0.500 | 0.250 |" in lines
    assert lines[-1] == "![refusal curve](toy-refusal.png)"
    refusal.chart(report, tmp_path / "toy-refusal.png")
    assert (tmp_path / "toy-refusal.png").read_bytes()[:4] == b"\x89PNG"

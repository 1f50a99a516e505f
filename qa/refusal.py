"""The refusal trade-off: how many unanswerable questions a confidence threshold refuses, and how many answerable
ones it refuses wrongly, over thresholds (``qa eval``'s refusal curve, its table and chart); the threshold in
use is chosen on the tune splits by benchmarks/tune_splits.py (docs/QUALITY.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# Thresholds of the refusal curve: every 0.05 and, where a logistic confidence crowds, the logistic of log-odds
# −8 … 8 by 0.5 (0.0003 … 0.9997).
CURVE_THRESHOLDS = tuple(sorted({round(k / 20, 4) for k in range(21)}
                                | {round(1 / (1 + np.exp(-z / 2)), 4) for z in range(-16, 17)}))


def thresholds_with(threshold: float | None) -> tuple[float, ...]:
    """:data:`CURVE_THRESHOLDS` and ``threshold`` (the one in use), in order."""
    return CURVE_THRESHOLDS if threshold is None else tuple(sorted({*CURVE_THRESHOLDS, round(float(threshold), 4)}))


def curve(answerable: list[float], unanswerable: list[float], thresholds=CURVE_THRESHOLDS) -> list[dict[str, float]]:
    """At each confidence threshold, the share of unanswerable questions refused (confidence under it) and of
    answerable ones wrongly refused, from the questions' confidences: the trade-off a threshold chooses. Empty
    unless both kinds are there. The confidences must be exact at every threshold (``abstain=False``: the
    reader always reads)."""
    un, ans = np.asarray(unanswerable, dtype=np.float64), np.asarray(answerable, dtype=np.float64)
    if not len(un) or not len(ans):
        return []
    return [{"threshold": float(t), "refused_unanswerable": round(float((un < t).mean()), 4),
             "wrongly_refused": round(float((ans < t).mean()), 4)} for t in thresholds]


def best_at(points: list[dict[str, float]], max_wrongly: float) -> dict[str, float] | None:
    """The point of ``points`` (a :func:`curve`) refusing the most unanswerable questions with at most ``max_wrongly`` of the
    answerable ones wrongly refused (on a tie, the fewest wrongly refused, then the lowest threshold)."""
    ok = [p for p in points if p["wrongly_refused"] <= max_wrongly]
    return max(ok, key=lambda p: (p["refused_unanswerable"], -p["wrongly_refused"], -p["threshold"])) if ok else None


CURVE_ROWS = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)  # thresholds the report's table shows (and the one in use)


def markdown(report: dict, chart: str | None = None) -> list[str]:
    """The refusal curve's table: per retriever, the shares refused at a few thresholds and at the one in use,
    and the most refused at ≤ 5 % and ≤ 10 % of answerable questions wrongly refused."""
    curves = {m: s["refusal_curve"] for m, s in report["retrievers"].items() if s.get("refusal_curve")}
    if not curves:
        return []
    in_use = report.get("meta", {}).get("abstain_threshold")
    lines = ["", "## Refusal curve", "",
             "Unanswerable questions refused against answerable ones wrongly refused, as the confidence threshold "
             "(`QA_ABSTAIN_THRESHOLD`) moves" + (f"; in use: {in_use}" if in_use is not None else "") + ".", "",
             "| retriever | threshold | unanswerable refused | answerable wrongly refused |", "|---|---|---|---|"]
    for mode, points in curves.items():
        rows = [p for p in points if p["threshold"] in CURVE_ROWS or p["threshold"] == in_use]
        for cap in (0.05, 0.10):
            best = best_at(points, cap)
            if best is not None:
                rows.append({**best, "note": f" (most refused at ≤ {cap:.0%} wrongly refused)"})
        for p in rows:
            mark = " **in use**" if p["threshold"] == in_use and "note" not in p else p.get("note", "")
            lines.append(f"| {mode} | {p['threshold']:g}{mark} | {p['refused_unanswerable']:.3f} "
                         f"| {p['wrongly_refused']:.3f} |")
    if chart:
        lines += ["", f"![refusal curve]({chart.removesuffix('.png')}-refusal.png)"]
    return lines


def chart(report: dict, path: Path) -> None:
    """Each retriever's refusal curve: answerable wrongly refused (x) against unanswerable refused (y), the
    threshold in use marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    in_use = report.get("meta", {}).get("abstain_threshold")
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for mode, s in report["retrievers"].items():
        points = s.get("refusal_curve") or []
        if not points:
            continue
        x = [p["wrongly_refused"] for p in points]
        y = [p["refused_unanswerable"] for p in points]
        line, = ax.plot(x, y, marker=".", label=mode)
        for p in points:
            if p["threshold"] == in_use:
                ax.plot([p["wrongly_refused"]], [p["refused_unanswerable"]], "o", markersize=10, fillstyle="none",
                        color=line.get_color())
    ax.axvline(0.05, color="grey", linestyle=":", linewidth=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("answerable questions wrongly refused")
    ax.set_ylabel("unanswerable questions refused")
    ax.set_title(f"{report['dataset']}: refusal over thresholds" + (f" (circle: {in_use})" if in_use is not None else ""))
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

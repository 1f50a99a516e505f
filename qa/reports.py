"""Evaluation reports as files: ``<stem>.json``, a Markdown page and bar charts (matplotlib), for a gold
set's retrievers (:func:`qa.evaluate.evaluate_dataset`), CoQA's conversations
(:func:`qa.dialogue_eval.evaluate_dialogues`) and answer sentence selection (WikiQA)."""

from __future__ import annotations

import json
from pathlib import Path

from qa import refusal
from qa.dialogue_eval import CONDITION_HELP, TURN_METRICS
from qa.evaluate import METRICS


def write_report(report: dict, folder: Path, stem: str) -> dict[str, Path]:
    """``<stem>.json``, ``<stem>.md`` and ``<stem>.png``: a bar chart comparing the retrievers, or for a
    conversational report (:func:`evaluate_dialogues`) its conditions."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"json": folder / f"{stem}.json", "md": folder / f"{stem}.md", "png": folder / f"{stem}.png"}
    paths["json"].write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    conversational = "conditions" in report
    (_dialogue_chart if conversational else _chart)(report, paths["png"])
    if not conversational and any(s.get("refusal_curve") for s in report["retrievers"].values()):
        paths["refusal_png"] = folder / f"{stem}-refusal.png"
        refusal.chart(report, paths["refusal_png"])
    text = (dialogue_markdown if conversational else markdown)(report, paths["png"].name)
    paths["md"].write_text(text, encoding="utf-8")
    return paths


def markdown(report: dict, chart: str | None = None) -> str:
    lines = [f"# Evaluation: {report['dataset']}", ""]
    meta = report.get("meta", {})
    if meta:
        lines += [f"- {k}: `{v}`" for k, v in meta.items()] + [""]
    lines += ["## Ranking (answerable questions, before abstention)", "",
              "| retriever | " + " | ".join(METRICS) + " | refused unanswerable | wrongly refused | citation integrity "
              "| p50 ms | p95 ms |",
              "|---" * (len(METRICS) + 6) + "|"]
    for mode, s in report["retrievers"].items():
        m, a, lat = s["overall"], s["abstention"], s["latency"]
        lines.append(f"| {mode} | " + " | ".join(f"{m.get(k, 0):.3f}" for k in METRICS)
                     + f" | {a['abstain_recall']:.3f} | {a['wrongly_refused']:.3f} | {s['citation_integrity']:.3f}"
                     + f" | {lat.get('p50_ms', 0):.1f} | {lat.get('p95_ms', 0):.1f} |")
    lines += ["", "## By question kind", "", "| retriever | kind | n | " + " | ".join(METRICS) + " |",
              "|---" * (len(METRICS) + 3) + "|"]
    for mode, s in report["retrievers"].items():
        for kind, m in s["by_kind"].items():
            if len(m) > 1:
                lines.append(f"| {mode} | {kind} | {m['n']} | " + " | ".join(f"{m.get(k, 0):.3f}" for k in METRICS) + " |")
    lines += ["", "## Abstention", "", "| retriever | precision | recall | F1 | wrongly refused (answerable) |",
              "|---|---|---|---|---|"]
    for mode, s in report["retrievers"].items():
        a = s["abstention"]
        lines.append(f"| {mode} | {a['abstain_precision']:.3f} | {a['abstain_recall']:.3f} | {a['abstain_f1']:.3f} "
                     f"| {a['wrongly_refused']:.3f} |")
    lines += refusal.markdown(report, chart)
    if chart:
        lines += ["", f"![retrievers compared]({chart})"]
    return "\n".join(lines) + "\n"


def _chart(report: dict, path: Path) -> None:
    names = list(METRICS)
    series = {mode: [s["overall"].get(n, 0.0) for n in names] for mode, s in report["retrievers"].items()}
    bar_chart(path, series, names, f"{report['dataset']}: retrievers compared (answerable questions)")


def bar_chart(path: Path, series: dict[str, list[float]], labels: list[str], title: str,
              size: tuple[float, float] = (8, 4)) -> None:
    """Grouped bars on a 0–1 scale: one bar per series at each label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    x = np.arange(len(labels))
    width = 0.8 / max(len(series), 1)
    fig, ax = plt.subplots(figsize=size)
    for i, (name, values) in enumerate(series.items()):
        ax.bar(x + i * width - 0.4 + width / 2, values, width, label=name)
    ax.set_xticks(x, labels, fontsize=8 if len(labels) > 5 else None)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def selection_markdown(dataset: str, results: dict) -> str:
    lines = [f"# Answer sentence selection: {dataset}", "", "| scorer | MAP | MRR | questions | ms / question |",
             "|---|---|---|---|---|"]
    lines += [f"| {name} | {r['MAP']:.3f} | {r['MRR']:.3f} | {r['questions']} | {r['ms_per_question']:.1f} |"
              for name, r in results.items()]
    return "\n".join(lines) + "\n"


def dialogue_markdown(report: dict, chart: str | None = None) -> str:
    lines = [f"# Evaluation: {report['dataset']} (conversations)", "",
             f"{report['dialogues']} dialogues, {report['turns']} turns, {report['documents']} documents, "
             f"{report['retriever']} retriever; unanswerable turns are asked but not scored.", ""]
    lines += [f"- {k}: `{v}`" for k, v in report.get("meta", {}).items()]
    lines += [f"- {c}: {CONDITION_HELP[c]}" for c in report["conditions"]] + [""]
    head = "| condition | split | " + " | ".join(f"{p} {m}" for p in ("opener", "follow-up") for m in TURN_METRICS)
    lines += ["## Openers and follow-ups", "", head + " | n follow-ups | p50 ms | p95 ms |",
              "|---" * (2 + 2 * len(TURN_METRICS) + 3) + "|"]
    for condition, summary in report["conditions"].items():
        lat = summary.get("latency", {})
        for split in ("test", "tune", "all"):
            if split not in summary or (split == "all" and not {"test", "tune"} <= summary.keys()):
                continue  # "all" only when it differs from the one split there is
            s = summary[split]
            cells = [f"{s[p].get(m, 0.0):.3f}" for p in ("opener", "follow-up") for m in TURN_METRICS]
            lines.append(f"| {condition} | {split} | " + " | ".join(cells) + f" | {s['follow-up']['n']} "
                         f"| {lat.get('p50_ms', 0):.1f} | {lat.get('p95_ms', 0):.1f} |")
    split = next((s for s in ("test", "tune", "all") if all(s in v for v in report["conditions"].values())), None)
    if split is not None:
        lines += ["", f"## By domain (follow-ups, {split} split)", "",
                  "| domain | " + " | ".join(f"{c} {m}" for c in report["conditions"] for m in ("Hit@1", "right story@1"))
                  + " | n |", "|---" * (2 + 2 * len(report["conditions"])) + "|"]
        first = next(iter(report["conditions"].values()))
        for domain in first[split]["by_domain"]:
            rows = [report["conditions"][c][split]["by_domain"][domain]["follow-up"] for c in report["conditions"]]
            lines.append(f"| {domain} | " + " | ".join(f"{r.get(m, 0.0):.3f}" for r in rows
                                                       for m in ("Hit@1", "right story@1")) + f" | {rows[0]['n']} |")
    if chart:
        lines += ["", f"![conditions compared]({chart})"]
    return "\n".join(lines) + "\n"


def _dialogue_chart(report: dict, path: Path) -> None:
    bars = [(p, m) for p in ("opener", "follow-up") for m in TURN_METRICS]
    split = next((s for s in ("test", "all") if all(s in v for v in report["conditions"].values())), "tune")
    series = {c: [v.get(split, {}).get(p, {}).get(m, 0.0) for p, m in bars] for c, v in report["conditions"].items()}
    bar_chart(path, series, [f"{p}\n{m}" for p, m in bars], f"{report['dataset']}: conversations, {split} split",
              size=(9, 4))

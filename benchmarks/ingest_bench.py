"""Ingestion benchmark (a measurement, not a test): folders of documents read as a user's folder is read.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/ingest_bench.py coqa [--build]
    PYTHONPATH=$PWD .venv/bin/python benchmarks/ingest_bench.py squad [--format txt --format jsonl] [--split all]
    PYTHONPATH=$PWD .venv/bin/python benchmarks/ingest_bench.py long [--mb 2]
    PYTHONPATH=$PWD .venv/bin/python benchmarks/ingest_bench.py wrapped [--width 72]

``coqa``: the 610 CoQA test stories (shared data, coqa/coqa-test-610.json.gz) written as one ``.txt`` file
each, in a folder per domain, then read and split: documents, sentences, title lines, headings, the longest
sentence, and the share of the annotators' evidence spans that fall inside at most two of our sentences.
``--build`` also times a full index build of that folder (index/bench-ingest-coqa).
``squad``: the SQuAD 2.0 dev half written as ``.txt`` files and as one ``.jsonl`` (qa.datasets.load_squad)
and evaluated with the hybrid retriever, as ``qa eval --dataset squad-v2-dev --retriever hybrid`` does; the
two formats share the index name bench-ingest-squad, so the second build re-encodes nothing.
``long``: one paragraph of N MB without a line break, split into sentences (the linear path).
``wrapped``: the 610 CoQA stories written twice, as they are and hard-wrapped (``textwrap.fill`` of every line
at ``--width`` columns, blank lines kept), both read as a folder; reports the sentences of each, the share of
the wrapped files' sentences that end at a wrap in mid-sentence (where the unwrapped split has no boundary),
and the share that are the same sentences as the unwrapped files' (compared as word ranges, whitespace
collapsed). Runs on any checkout (it only needs ``load_corpus`` and ``split_sentences``).
"""

from __future__ import annotations

import argparse
import gzip
import json
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from qa.config import Settings
from qa.datasets import CorpusRecord, load_squad, write_corpus
from qa.ingest import load_corpus, split_block, split_sentences
from qa.types import Document, Sentence

COQA_FILE = Path("coqa") / "coqa-test-610.json.gz"


def evidence_spans(story: dict) -> list[tuple[int, int]]:
    """Every annotator's evidence span of a story (known ones only), without surrounding whitespace."""
    answers = list(story["answers"]) + [a for more in story.get("additional_answers", {}).values() for a in more]
    text = story["story"]
    spans = []
    for a in answers:
        start, end = a["span_start"], a["span_end"]
        if start < 0 or end <= start:
            continue
        piece = text[start:end]
        start += len(piece) - len(piece.lstrip())
        end -= len(piece) - len(piece.rstrip())
        if end > start:
            spans.append((start, end))
    return spans


def sentences_touched(sentences: list[Sentence], spans: list[tuple[int, int]]) -> np.ndarray:
    """For each span, how many of the document's sentences overlap it."""
    starts = np.array([s.start for s in sentences])
    ends = np.array([s.end for s in sentences])
    lo = np.array([s for s, _ in spans])
    hi = np.array([e for _, e in spans])
    first = np.searchsorted(ends, lo, side="right")  # first sentence ending after the span starts
    last = np.searchsorted(starts, hi, side="left")  # sentences starting before the span ends
    return np.maximum(last - first, 0)


def read_and_split(folder: Path) -> tuple[dict[str, Document], dict[str, list[Sentence]], float, float]:
    """A folder's documents and their sentences by document id, and the seconds reading and splitting took."""
    t0 = time.perf_counter()
    docs = {d.doc_id: d for d in load_corpus(folder)}
    t_read = time.perf_counter() - t0
    t0 = time.perf_counter()
    sentences = {doc_id: split_sentences(d) for doc_id, d in docs.items()}
    return docs, sentences, t_read, time.perf_counter() - t0


def cmd_coqa(args) -> None:
    settings = Settings()
    with gzip.open(settings.shared_data_dir / COQA_FILE, "rt", encoding="utf-8") as fh:
        stories = json.load(fh)["data"]
    with tempfile.TemporaryDirectory(prefix="qa-coqa-") as tmp:
        folder = Path(tmp)
        ids = write_corpus([CorpusRecord(f"{s['source']}/{s['id']}", "", s["story"]) for s in stories], folder)
        docs, sentences, t_read, t_split = read_and_split(folder)
        t_build = None
        if args.build:
            from qa.engine import Engine

            build_settings = settings.model_copy(update={"corpus_dir": folder, "index_name": "bench-ingest-coqa"})
            t0 = time.perf_counter()
            Engine.open(build_settings, documents=list(docs.values()), rebuild=True)
            t_build = time.perf_counter() - t0
    every = [s for ss in sentences.values() for s in ss]
    lengths = np.array([len(s.text) for s in every])
    kinds = Counter(s.kind for s in every)
    touched, by_domain = [], Counter()
    for story in stories:
        doc_id = ids[f"{story['source']}/{story['id']}"]
        n = sentences_touched(sentences[doc_id], evidence_spans(story))
        touched.append(n)
        by_domain[story["source"], "spans"] += len(n)
        by_domain[story["source"], "within2"] += int((n <= 2).sum())
    touched_all = np.concatenate(touched)
    print("| stories read | sentences | title lines | headings | longest | p99 length | evidence spans "
          "| in 1 sentence | in ≤ 2 sentences | read s | split s | build s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    print(f"| {len(docs)} / {len(stories)} | {len(every):,} | {kinds['title']} | {kinds['heading']} | "
          f"{lengths.max():,} | {np.percentile(lengths, 99):.0f} | {len(touched_all):,} | "
          f"{(touched_all <= 1).mean():.3f} | {(touched_all <= 2).mean():.3f} | {t_read:.1f} | {t_split:.1f} | "
          f"{'—' if t_build is None else f'{t_build:.0f}'} |")
    print()
    print("| domain | evidence spans | in ≤ 2 sentences |")
    print("|---|---|---|")
    for domain in sorted({d for d, _ in by_domain}):
        spans, within = by_domain[domain, "spans"], by_domain[domain, "within2"]
        print(f"| {domain} | {spans:,} | {within / spans:.3f} |")


def cmd_squad(args) -> None:
    from qa.engine import Engine
    from qa.evaluate import EngineRunner, evaluate_dataset

    settings = Settings()
    print("| format | documents | first doc id | questions | Hit@1 | Success@3 | MRR@10 | refused unanswerable "
          "| wrongly refused | citation integrity | open s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for fmt in args.format:
        data = load_squad(settings.shared_data_dir, fmt=fmt).select(args.split)
        t0 = time.perf_counter()
        engine = Engine.open(settings.model_copy(update={"index_name": "bench-ingest-squad"}),
                             documents=data.documents, layout=data.layout)
        opened = time.perf_counter() - t0
        report = evaluate_dataset(data, EngineRunner(engine), ["hybrid"])["retrievers"]["hybrid"]
        o, a = report["overall"], report["abstention"]
        print(f"| {fmt} | {len(data.documents)} | {data.documents[0].doc_id} | {len(data.questions)} | "
              f"{o['Hit@1']:.3f} | {o['Success@3']:.3f} | {o['MRR@10']:.3f} | {a['abstain_recall']:.3f} | "
              f"{a['wrongly_refused']:.3f} | {report['citation_integrity']:.3f} | {opened:.0f} |", flush=True)


def cmd_long(args) -> None:
    sentence = ("Mr. Khan met Dr. Ali at the U.S. embassy on Monday; the talks, which went on late into the night, "
                "ended without a statement. ")
    text = sentence * int(args.mb * 1_000_000 / len(sentence))
    limit = Settings().max_sentence_chars
    t0 = time.perf_counter()
    spans = split_block(text, limit)
    seconds = time.perf_counter() - t0
    longest = max(e - s for s, e in spans)
    print("| paragraph | sentences | longest | split s | MB/s |")
    print("|---|---|---|---|---|")
    print(f"| {len(text) / 1e6:.1f} M chars | {len(spans):,} | {longest} | {seconds:.2f} | "
          f"{len(text) / 1e6 / seconds:.1f} |")


def _word_ranges(doc, sentences) -> list[tuple[int, int]]:
    """Each sentence as the range of word numbers (whitespace-separated words of the document) it covers."""
    import re

    starts = [m.start() for m in re.finditer(r"\S+", doc.raw)]
    out = []
    for s in sentences:
        first = int(np.searchsorted(starts, s.start))
        out.append((first, first + len(s.text.split())))
    return out


def wrap_story(text: str, width: int) -> tuple[str, set[int]]:
    """``text`` with every line wrapped at ``width`` columns, and the word numbers after which a wrap put a
    line break."""
    import textwrap

    lines, breaks, words = [], set(), 0
    for line in text.split("\n"):
        wrapped = textwrap.wrap(line, width, break_long_words=False, break_on_hyphens=False) if line.strip() else [""]
        for piece in wrapped:
            words += len(piece.split())
            breaks.add(words)
        breaks.discard(words)  # the line's own end is not a wrap
        lines.append("\n".join(wrapped))
    return "\n".join(lines), breaks


def cmd_wrapped(args) -> None:
    settings = Settings()
    with gzip.open(settings.shared_data_dir / COQA_FILE, "rt", encoding="utf-8") as fh:
        stories = json.load(fh)["data"]
    with tempfile.TemporaryDirectory(prefix="qa-wrapped-") as tmp:
        plain, wrapped = Path(tmp) / "plain", Path(tmp) / "wrapped"
        breaks = {}
        records, wrapped_records = [], []
        for st in stories:
            text = st["story"].replace("\r\n", "\n")
            records.append(CorpusRecord(f"{st['source']}/{st['id']}", "", text))
            folded, breaks[f"{st['source']}/{st['id']}"] = wrap_story(text, args.width)
            wrapped_records.append(CorpusRecord(f"{st['source']}/{st['id']}", "", folded))
        ids = write_corpus(records, plain)
        write_corpus(wrapped_records, wrapped)
        t0 = time.perf_counter()
        plain_docs = {d.doc_id: d for d in load_corpus(plain)}
        wrapped_docs = {d.doc_id: d for d in load_corpus(wrapped)}
        split = {name: {i: split_sentences(d) for i, d in docs.items()}
                 for name, docs in (("plain", plain_docs), ("wrapped", wrapped_docs))}
        seconds = time.perf_counter() - t0
    counts = Counter()
    for key, doc_id in ids.items():
        p = _word_ranges(plain_docs[doc_id], split["plain"][doc_id])
        w = _word_ranges(wrapped_docs[doc_id], split["wrapped"][doc_id])
        p_ends = {e for _, e in p}
        counts["plain"] += len(p)
        counts["wrapped"] += len(w)
        counts["same"] += len(set(p) & set(w))
        counts["mid_wrap"] += sum(1 for _, e in w if e in breaks[key] and e not in p_ends)
        counts["wraps"] += len(breaks[key])
    print(f"| width | stories | line breaks added | sentences (as written) | sentences (wrapped) | end at a wrap "
          f"mid-sentence | same sentences | split s |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {args.width} | {len(ids)} | {counts['wraps']:,} | {counts['plain']:,} | {counts['wrapped']:,} | "
          f"{counts['mid_wrap']:,} ({counts['mid_wrap'] / counts['wrapped']:.4f}) | "
          f"{counts['same']:,} ({counts['same'] / counts['plain']:.4f}) | {seconds:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("coqa")
    p.add_argument("--build", action="store_true", help="also time a full index build of the folder")
    p = sub.add_parser("squad")
    p.add_argument("--format", action="append", choices=["txt", "jsonl"], help="repeat; default both")
    p.add_argument("--split", default="all", choices=["all", "tune", "test"])
    p = sub.add_parser("long")
    p.add_argument("--mb", type=float, default=2.0)
    p = sub.add_parser("wrapped")
    p.add_argument("--width", type=int, default=72)
    args = parser.parse_args()
    if args.cmd == "squad" and not args.format:
        args.format = ["txt", "jsonl"]
    {"coqa": cmd_coqa, "squad": cmd_squad, "long": cmd_long, "wrapped": cmd_wrapped}[args.cmd](args)


if __name__ == "__main__":
    main()

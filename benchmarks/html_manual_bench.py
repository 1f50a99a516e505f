"""A real HTML manual read as a user's folder: 40 pages of Python 3.11's library reference (Debian's
python3.11-doc), measured for how they read and how well the gold questions of eval/python-docs-gold.jsonl
are answered. A measurement, not a test.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/html_manual_bench.py [--no-questions]
    # the same measurement of another checkout (e.g. main in a worktree beside this one):
    PYTHONPATH=/tmp/w31-base .venv/bin/python benchmarks/html_manual_bench.py --gold eval/python-docs-gold.jsonl

It installs python3.11-doc with apt-get when the pages are missing (as root). Reported, over the 40 pages:

* sentences, and code units (sentences of kind "code");
* fragments: body sentences that end without terminal punctuation inside one of the page's own paragraphs
  (a leaf ``p``, ``li``, ``dd``, ``dt``, ``td``, ``th`` of the page's main content, whitespace collapsed): a
  sentence cut at a line wrap of the HTML source or inside an expression;
* pilcrows: sentences (and titles) holding a heading anchor ``¶``;
* paragraphs present: the share of the page's visible paragraphs of 40+ characters (leaf blocks of its main
  content, ``pre`` included, whitespace collapsed, ``¶`` left out) found in the document's canonical text;
* Hit@1 and Success@3 of the gold questions (hybrid retriever, no abstention): a hit is a returned sentence
  overlapping the quote, located in the canonical text with white space collapsed (every occurrence counts).

Only ``qa.ingest.load_corpus``, ``split_sentences`` and ``Engine`` are used, so it runs on older checkouts.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

DOC_DIR = Path("/usr/share/doc/python3.11/html/library")
PAGES = ("argparse base64 bisect calendar collections copy csv dataclasses datetime decimal difflib enum fnmatch "
         "functools glob gzip hashlib heapq itertools json logging math pathlib pickle queue random re secrets "
         "shutil sqlite3 statistics string subprocess tempfile textwrap threading time uuid zipfile zoneinfo").split()
LEAVES = ("p", "li", "dd", "dt", "td", "th", "h1", "h2", "h3", "h4", "h5", "h6", "pre")
BLOCKS = set(LEAVES) | {"div", "ul", "ol", "dl", "table", "blockquote", "section"}
TERMINAL = tuple(".!?:;…\"'”’)")


def ensure_pages() -> None:
    if not (DOC_DIR / "csv.html").exists():
        subprocess.run(["apt-get", "install", "-y", "-qq", "python3.11-doc"], check=True)


def collapse(text: str) -> str:
    return " ".join(text.replace("¶", " ").split())


def collapsed_with_map(raw: str) -> tuple[str, list[int]]:
    """``raw`` with white space runs as one space and ``¶`` left out, and each kept character's offset."""
    out, where, space = [], [], False
    for i, c in enumerate(raw):
        if c.isspace() or c == "¶":
            space = bool(out)
            continue
        if space:
            out.append(" ")
            where.append(i)
            space = False
        out.append(c)
        where.append(i)
    return "".join(out), where


def page_paragraphs(path: Path) -> list[str]:
    """The visible leaf paragraphs of a page's main content, collapsed."""
    import lxml.html

    root = lxml.html.parse(str(path)).getroot()
    main = (root.xpath('//div[@role="main"]') or [root])[0]
    for a in main.xpath('.//a[contains(concat(" ", @class, " "), " headerlink ")]'):
        a.drop_tree()
    out = []
    for el in main.iter(*LEAVES):
        if el.tag != "pre" and any(isinstance(c.tag, str) and c.tag in BLOCKS for c in el.iterdescendants()):
            continue  # not a leaf: its blocks are counted themselves
        text = collapse(el.text_content())
        if text:
            out.append(text)
    return out


def spans_of(raw: str, quote: str) -> list[tuple[int, int]]:
    flat, where = collapsed_with_map(raw)
    needle = collapse(quote)
    out, at = [], flat.find(needle)
    while at >= 0 and needle:
        out.append((where[at], where[at + len(needle) - 1] + 1))
        at = flat.find(needle, at + 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gold", type=Path, default=Path(__file__).resolve().parent.parent / "eval" / "python-docs-gold.jsonl")
    parser.add_argument("--no-questions", action="store_true", help="only how the pages read (no index build)")
    args = parser.parse_args()
    ensure_pages()
    from ingest_bench import read_and_split  # this script's folder is first on sys.path

    with tempfile.TemporaryDirectory(prefix="qa-pydocs-") as tmp:
        folder = Path(tmp) / "pydocs"
        folder.mkdir()
        for name in PAGES:
            shutil.copy(DOC_DIR / f"{name}.html", folder / f"{name}.html")
        docs, sentences, read_s, split_s = read_and_split(folder)
        every = [s for ss in sentences.values() for s in ss]
        paragraphs = {f"{name}.html": page_paragraphs(DOC_DIR / f"{name}.html") for name in PAGES}
        fragments = pilcrows = present = visible = 0
        for doc_id, doc in docs.items():
            paras = paragraphs[doc_id]
            flat = collapsed_with_map(doc.raw)[0]
            long_paras = [p for p in paras if len(p) >= 40]
            visible += len(long_paras)
            present += sum(p in flat for p in long_paras)
            pilcrows += sum("¶" in s.text for s in sentences[doc_id]) + ("¶" in doc.title)
            for s in sentences[doc_id]:
                text = collapse(s.text)
                if s.kind != "body" or not text or text.endswith(TERMINAL):
                    continue
                if any(text in p and not p.endswith(text) for p in paras):
                    fragments += 1
        lengths = sorted(len(s.text) for s in every)
        print("| pages | sentences | median length | fragments | code units | pilcrows | paragraphs present | read s | split s |")
        print("|---|---|---|---|---|---|---|---|---|")
        print(f"| {len(docs)} | {len(every):,} | {lengths[len(lengths) // 2]} | {fragments:,} | "
              f"{sum(s.kind == 'code' for s in every):,} | {pilcrows:,} | {present:,} / {visible:,} "
              f"({present / visible:.3f}) | {read_s:.1f} | {split_s:.1f} |", flush=True)
        if args.no_questions:
            return
        ask(folder, Path(tmp) / "index", docs, args.gold)


def ask(folder: Path, index_root: Path, docs: dict, gold_file: Path) -> None:
    from qa.config import Settings
    from qa.engine import Engine

    gold = [json.loads(line) for line in gold_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    engine = Engine.open(Settings(corpus_dir=folder, index_root=index_root))
    hit1 = success3 = 0
    misses = []
    for q in gold:
        spans = [(ev["doc_id"], s) for ev in q["evidence"] for s in spans_of(docs[ev["doc_id"]].raw, ev["quote"])]
        answer = engine.ask(q["question"], top_k=3, retriever="hybrid", abstain=False)
        hits = [any(doc_id == c.doc_id and c.start < e and s < c.end for doc_id, (s, e) in spans)
                for c in (a.citation for a in answer.sentences)]
        hit1 += bool(hits[:1] and hits[0])
        success3 += any(hits[:3])
        if not (hits and hits[0]):
            first = answer.sentences[0] if answer.sentences else None
            misses.append((q["id"], "quote not in the text" if not spans else "",
                           f"{first.citation.doc_id}: {collapse(first.text)[:90]}" if first else "-"))
    n = len(gold)
    print()
    print("| questions | Hit@1 | Success@3 |")
    print("|---|---|---|")
    print(f"| {n} | {hit1 / n:.3f} ({hit1}) | {success3 / n:.3f} ({success3}) |")
    print()
    for qid, why, first in misses:
        print(f"- miss {qid} {why} first: {first}")


if __name__ == "__main__":
    main()

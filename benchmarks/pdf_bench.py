"""PDFs nobody on the team wrote, read as a user's folder: which library reads them best, how they read, and
whether questions are answered on the right page. A measurement, not a test.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/pdf_bench.py libraries     # pages/s of each candidate library
    PYTHONPATH=$PWD .venv/bin/python benchmarks/pdf_bench.py read [--sample 100]  # qa's reader; a sample to check by hand
    PYTHONPATH=$PWD .venv/bin/python benchmarks/pdf_bench.py questions     # eval/pdf-gold.jsonl: Hit@1, page@1

The PDFs (``PDFS``) come from Debian packages, installed with apt-get when missing (as root); two two-column
sample papers come from texlive-publishers-doc (213 MB), whose .deb is downloaded once into ``--cache``
and only those two files extracted. ``libraries`` needs the ``bench`` extra (pypdf, pdfminer.six).

* ``libraries``: each candidate's own text of every page: pages a second, characters, words still broken
  by a hyphen at a line end (``xx-`` + newline + lower case), and ligature characters left (ﬁ, ﬂ, …).
* ``read``: the folder read by ``qa.ingest.read_corpus``: documents, pages, sentences, files skipped and
  why, pages a second; ``--sample N`` random sentences (seed 0) are written to ``--out`` for a hand check.
* ``questions``: an index of the folder; each gold question asked (hybrid, no abstention, 3 sentences): Hit@1
  and Success@3 (a sentence overlapping the quote, located with letters and digits compared), and page@1
  (the first sentence is in the quote's document and starts on its page).
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

# (file name in the corpus, package, path it installs: a .pdf or a .pdf.gz)
PDFS = [
    ("auto-multiple-choice.en.pdf", "auto-multiple-choice-doc-pdf", "/usr/share/doc/auto-multiple-choice/auto-multiple-choice.en.pdf"),
    ("camlidl-1.04.doc.pdf", "camlidl-doc", "/usr/share/doc/camlidl/camlidl-1.04.doc.pdf"),
    ("freefem.pdf", "freefem-doc", "/usr/share/doc/freefem-doc/freefem.pdf"),
    ("gri.pdf", "gri-pdf-doc", "/usr/share/doc/gri/gri.pdf.gz"),
    ("libtasn1.pdf", "libtasn1-doc", "/usr/share/doc/libtasn1-doc/libtasn1.pdf"),
    ("reportlab-userguide.pdf", "python-reportlab-doc", "/usr/share/doc/python-reportlab-doc/reportlab-userguide.pdf"),
    ("shared-mime-info-spec.pdf", "shared-mime-info", "/usr/share/doc/shared-mime-info/shared-mime-info-spec.pdf"),
    ("docbook-xsl-reference.pdf", "docbook-xsl-doc-pdf", "/usr/share/doc/docbook-xsl-doc-pdf/doc/reference.pdf.gz"),
    ("live-manual.pdf", "live-manual-pdf", "/usr/share/doc/live-manual/pdf/live-manual.portrait.en.a4.pdf.gz"),
]
# Two-column papers: texlive-publishers-doc's ACM and Elsevier samples.
DEB_PDFS = [
    ("sample-sigconf.pdf", "./usr/share/doc/texlive-doc/latex/acmart/samples/sample-sigconf.pdf"),
    ("elstest-5p.pdf", "./usr/share/doc/texlive-doc/latex/elsarticle/elstest-5p.pdf"),
]
DEB = "texlive-publishers-doc"
BROKEN = re.compile(r"[a-z]-\n[a-z]")
LIGATURES = re.compile("[\ufb00-\ufb06]")


def gather(folder: Path, cache: Path) -> None:
    """Copy (or gunzip) every PDF of the benchmark into ``folder``, installing packages when missing."""
    missing = sorted({pkg for _, pkg, path in PDFS if not Path(path).exists()})
    if missing:
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True)
    folder.mkdir(parents=True, exist_ok=True)
    for name, _, path in PDFS:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as src, (folder / name).open("wb") as dst:
                shutil.copyfileobj(src, dst)
        else:
            shutil.copy(path, folder / name)
    cache.mkdir(parents=True, exist_ok=True)
    debs = sorted(cache.glob(f"{DEB}_*.deb"))
    if not debs:
        subprocess.run(["apt-get", "download", DEB], check=True, cwd=cache)
        debs = sorted(cache.glob(f"{DEB}_*.deb"))
    tar = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(debs[-1])], check=True, capture_output=True).stdout
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["tar", "-x", "-C", tmp, *[member for _, member in DEB_PDFS]], input=tar, check=True)
        for name, member in DEB_PDFS:
            shutil.copy(Path(tmp) / member, folder / name)


def page_texts(library: str, path: Path) -> list[str]:
    if library == "pypdfium2":
        import pypdfium2 as pdfium

        pdf = pdfium.PdfDocument(str(path))
        out = []
        for i in range(len(pdf)):
            page = pdf[i]
            textpage = page.get_textpage()
            out.append(textpage.get_text_range().replace("\r\n", "\n"))
            textpage.close()
            page.close()
        pdf.close()
        return out
    if library == "pypdf":
        import pypdf

        return [page.extract_text() for page in pypdf.PdfReader(str(path)).pages]
    from pdfminer.high_level import extract_pages
    from pdfminer.layout import LTTextContainer

    return ["".join(el.get_text() for el in page if isinstance(el, LTTextContainer)) for page in extract_pages(str(path))]


def cmd_libraries(folder: Path) -> None:
    files = sorted(folder.glob("*.pdf"))
    print("| library | pages | pages/s | characters | words broken at a line end | ligatures left |")
    print("|---|---|---|---|---|---|")
    for library in ("pypdfium2", "pypdf", "pdfminer.six"):
        t0 = time.perf_counter()
        texts = [t for f in files for t in page_texts(library, f)]
        seconds = time.perf_counter() - t0
        joined = "\n".join(texts)
        print(f"| {library} | {len(texts):,} | {len(texts) / seconds:.1f} | {len(joined):,} | "
              f"{len(BROKEN.findall(joined)):,} | {len(LIGATURES.findall(joined)):,} |", flush=True)


def cmd_read(folder: Path, sample: int, out: Path) -> None:
    from qa.ingest import read_corpus, split_sentences

    t0 = time.perf_counter()
    corpus = read_corpus(folder)
    seconds = time.perf_counter() - t0
    pages = sum(len(d.pages or ()) for d in corpus.documents)
    sentences = [(d, s) for d in corpus.documents for s in split_sentences(d)]
    print("| PDFs | read | pages | pages/s (qa's reader) | sentences | skipped |")
    print("|---|---|---|---|---|---|")
    print(f"| {len(corpus.documents) + len(corpus.skipped)} | {len(corpus.documents)} | {pages:,} | "
          f"{pages / seconds:.1f} | {len(sentences):,} | "
          f"{'; '.join(f'{s.path}: {s.detail}' for s in corpus.skipped) or '-'} |")
    print()
    print("| document | title | published | pages | sentences |")
    print("|---|---|---|---|---|")
    for d in corpus.documents:
        print(f"| {d.doc_id} | {d.title} | {d.published or '-'} | {len(d.pages or ())} | "
              f"{sum(1 for doc, _ in sentences if doc is d):,} |")
    rng = random.Random(0)
    picked = rng.sample(sentences, min(sample, len(sentences)))
    out.write_text("".join(f"{i}\t{d.doc_id}\tp.{d.page_of(s.start)}\t{s.kind}\t{' '.join(s.text.split())}\n"
                           for i, (d, s) in enumerate(picked, start=1)), encoding="utf-8")
    print(f"\n{len(picked)} random sentences written to {out}")


def _alnum_map(text: str) -> tuple[str, list[int]]:
    kept = [(c.lower(), i) for i, c in enumerate(text) if c.isalnum()]
    return "".join(c for c, _ in kept), [i for _, i in kept]


def cmd_questions(folder: Path, index_root: Path, gold_file: Path) -> None:
    from qa.config import Settings
    from qa.engine import Engine

    gold = [json.loads(line) for line in gold_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    engine = Engine.open(Settings(corpus_dir=folder, index_root=index_root))
    hit1 = success3 = page1 = 0
    for q in gold:
        ev = q["evidence"][0]
        doc = engine.index.documents[ev["doc_id"]]
        flat, where = _alnum_map(doc.raw)
        needle = _alnum_map(ev["quote"])[0]
        at = flat.find(needle)
        span = (where[at], where[at + len(needle) - 1] + 1) if at >= 0 and needle else None
        answer = engine.ask(q["question"], top_k=3, retriever="hybrid", abstain=False)
        cites = [a.citation for a in answer.sentences]
        hits = [span is not None and c.doc_id == ev["doc_id"] and c.start < span[1] and span[0] < c.end for c in cites]
        hit1 += bool(hits and hits[0])
        success3 += any(hits)
        on_page = bool(cites) and cites[0].doc_id == ev["doc_id"] and cites[0].page == ev["page"]
        page1 += on_page
        first = f"{cites[0].doc_id} p.{cites[0].page}: {' '.join(answer.sentences[0].text.split())[:80]}" if cites else "-"
        print(f"- {q['id']} {'hit' if hits and hits[0] else 'miss'} page {'ok' if on_page else 'wrong'} "
              f"(gold p.{ev['page']}{'' if span else ', quote not found in the text'}) first: {first}")
    n = len(gold)
    print()
    print("| questions | Hit@1 | Success@3 | page@1 |")
    print("|---|---|---|---|")
    print(f"| {n} | {hit1 / n:.3f} ({hit1}) | {success3 / n:.3f} ({success3}) | {page1 / n:.3f} ({page1}) |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cmd", choices=["libraries", "read", "questions"])
    parser.add_argument("--cache", type=Path, default=Path("index") / "_pdfbench", help="where the .deb is kept")
    parser.add_argument("--sample", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("/tmp/qa-pdf-sample.tsv"))
    parser.add_argument("--gold", type=Path, default=Path(__file__).resolve().parent.parent / "eval" / "pdf-gold.jsonl")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="qa-pdfs-") as tmp:
        folder = Path(tmp) / "pdfs"
        gather(folder, args.cache)
        if args.cmd == "libraries":
            cmd_libraries(folder)
        elif args.cmd == "read":
            cmd_read(folder, args.sample, args.out)
        else:
            cmd_questions(folder, Path(tmp) / "index", args.gold)


if __name__ == "__main__":
    main()

"""The disagreement set: do ``also_in`` and ``disagrees`` tell the same claim from a changed one?

Command (about two minutes on two cores; the corpus is built under /tmp, never in the repository)::

    PYTHONPATH=$PWD nice -n 10 .venv/bin/python benchmarks/disagreements.py [--out eval/reports/disagreements-DATE.json]

The set is made at run time from real news sentences: the two seed articles (``seeds/``) and the 70 CNN
stories of CoQA (``$QA_SHARED_DATA_DIR/coqa/``, domain "cnn"). For every article it writes, beside the
original, documents that are the article with exactly one change (:func:`variants`):

- ``number``: one number in one sentence changed: digits get a random other value of the same length
  ("12" → "47"), a number word another number word ("six" → "nine");
- ``date``: one date changed: a month name → another month, a weekday → another weekday, a year ± 1–5;
- ``name``: one name changed: a capitalised word that does not open its sentence (not a month, weekday or
  stop word) replaced by a capitalised word that opens no sentence, taken from another article;
- ``copy``: the article unchanged (every sentence is the same claim);
- ``paraphrase`` (seeds only): one sentence replaced by its paraphrase from ``eval/paraphrases.jsonl``,
  written by hand before any comparison was run: same names, numbers and dates, other words.

The changed sentence and token are drawn with ``random.Random(f"{seed}:{article}:{kind}")`` among the
sentences of 40+ characters that hold an eligible token; the rules above do not use qa/claims.py, so what
is changed does not depend on what the comparison reads. All documents form one corpus, indexed and asked
through the product (``Engine.open`` → ``Engine.ask``). Each changed or paraphrased sentence gives two
questions: its original's text and its own (what a fact-checker pastes to see where a claim is written).

Figures, per kind and per split (CoQA stories split into tune and test as ``qa.datasets.load_coqa`` does;
seeds count as tune):
- ``disagrees`` recall: the answer to the original (the variant) lists the variant (the original) among the
  ``disagrees`` of the answer sentence that holds the original (the variant);
- ``disagrees`` precision: of every disagreement listed in every answer, the share between a sentence and a
  changed version of it;
- ``also_in`` precision: of every ``also_in`` place listed, the share that states the same claim (the same
  text, or a sentence and its paraphrase); ``also_in`` recall on copies and paraphrases.
Pairs that the set did not make — two different original sentences, such as the two seed articles reporting
one fact — are not labelled: they are counted apart (``natural_pairs``) and listed by id, to be read by hand.
``--seed`` draws other changes (the figures of docs/QUALITY.md use the default); ``--split tune`` keeps
the tune articles only, for choices made on the set.
The report holds figures and ids only (CoQA's text is not quoted). A hand-made probe ("The mayor of
Glenhaven …" / "The mayor of Dunmarrow …") is asked too.
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import json
import random
import re
import sys
import tempfile
import time
import zlib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from qa.config import Settings
from qa.engine import Engine
from qa.ingest import load_corpus, split_sentences
from qa.text import default_stopwords
from qa.types import Document

ROOT = Path(__file__).resolve().parent.parent
SEED = 20261207
KINDS = ("number", "date", "name")
MONTHS = "January February March April May June July August September October November December".split()
WEEKDAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()
NUMBER_WORDS = "two three four five six seven eight nine ten eleven twelve twenty thirty forty fifty".split()
STOP = default_stopwords()
PROBE = {
    "glenhaven.txt": "Bridge to reopen in March\n\nThe mayor of Glenhaven said on Tuesday that the old stone bridge "
                     "over the river will reopen in March after repairs costing $2 million. Residents have used a "
                     "ferry since the flood.\n",
    "dunmarrow.txt": "Bridge repairs finished early\n\nThe mayor of Dunmarrow said on Tuesday that the old stone "
                     "bridge over the river will reopen in March after repairs costing $2 million. Traders welcomed "
                     "the news.\n",
}


@dataclass(frozen=True)
class Change:
    article: str  # the original document's id
    kind: str
    sentence: int  # the changed sentence's index in the original
    doc_id: str  # the variant document
    split: str


def eligible(kind: str, text: str, names: list[str]) -> list[tuple[int, int, str]]:
    """(start, end, replacement-maker key) of the tokens of ``text`` that ``kind`` may change."""
    out = []
    if kind == "number":
        for m in re.finditer(r"(?<![\w.,])\d+(?![\w.,]\d)", text):
            if not (len(m.group()) == 4 and m.group()[:2] in ("19", "20")):  # a year is a date
                out.append((m.start(), m.end(), "digits"))
        for m in re.finditer(r"\b(" + "|".join(NUMBER_WORDS + ["six"]) + r")\b", text, re.I):
            out.append((m.start(), m.end(), "word"))
    elif kind == "date":
        for m in re.finditer(r"\b(" + "|".join(MONTHS) + r")\b", text):
            if m.group() != "May" or re.search(r"\d", text[m.end():m.end() + 6]):
                out.append((m.start(), m.end(), "month"))
        for m in re.finditer(r"\b(" + "|".join(WEEKDAYS) + r")\b", text):
            out.append((m.start(), m.end(), "weekday"))
        for m in re.finditer(r"(?<![\d,.$])\b(19[5-9]\d|20[0-2]\d)\b(?![,.]?\d)", text):
            out.append((m.start(), m.end(), "year"))
    else:
        for m in re.finditer(r"(?<=[a-z,;] )[A-Z][a-z]{2,}\b", text):
            word = m.group()
            if word not in MONTHS and word not in WEEKDAYS and word.casefold() not in STOP and names:
                out.append((m.start(), m.end(), "name"))
    return out


def replacement(key: str, token: str, rng: random.Random, names: list[str]) -> str:
    if key == "digits":
        while True:
            new = str(rng.randrange(10 ** (len(token) - 1) if len(token) > 1 else 1, 10 ** len(token)))
            if new != token:
                return new
    if key == "word":
        choice = rng.choice([w for w in NUMBER_WORDS if w != token.lower()])
        return choice.capitalize() if token[0].isupper() else choice
    if key == "month":
        return rng.choice([m for m in MONTHS if m != token])
    if key == "weekday":
        return rng.choice([d for d in WEEKDAYS if d != token])
    if key == "year":
        return str(int(token) + rng.choice([-5, -4, -3, -2, -1, 1, 2, 3, 4, 5]))
    return rng.choice([n for n in names if n != token])


def variants(doc: Document, split: str, names: list[str], paraphrases: dict[str, str],
             seed: int = SEED) -> tuple[list[Document], list[Change]]:
    """The variant documents of one article and what each changed."""
    sentences = [s for s in split_sentences(doc) if s.kind == "body"]
    docs, changes = [], []
    stem = doc.doc_id.rsplit(".", 1)[0]
    for kind in KINDS:
        rng = random.Random(f"{seed}:{doc.doc_id}:{kind}")
        pool = [(s, e) for s in sentences if len(s.text) >= 40 for e in eligible(kind, s.text, names)]
        by_sentence = sorted({s.index for s, _ in pool})
        if not by_sentence:
            continue
        chosen = rng.choice(by_sentence)
        sentence, (start, end, key) = rng.choice([(s, e) for s, e in pool if s.index == chosen])
        token = sentence.text[start:end]
        new = replacement(key, token, rng, [n for n in names if n not in sentence.text])
        at = sentence.start + start
        variant = Document(f"{stem}--{kind}.txt", doc.title, doc.raw[:at] + new + doc.raw[at + len(token):])
        docs.append(variant)
        changes.append(Change(doc.doc_id, kind, sentence.index, variant.doc_id, split))
    docs.append(Document(f"{stem}--copy.txt", doc.title, doc.raw))
    changes.append(Change(doc.doc_id, "copy", -1, f"{stem}--copy.txt", split))
    for n, s in enumerate(x for x in sentences if x.text in paraphrases):
        variant = Document(f"{stem}--paraphrase{n}.txt", doc.title,
                           doc.raw[:s.start] + paraphrases[s.text] + doc.raw[s.end:])
        docs.append(variant)
        changes.append(Change(doc.doc_id, "paraphrase", s.index, variant.doc_id, split))
    return docs, changes


def load_articles(settings: Settings) -> list[tuple[Document, str]]:
    """The seed articles (split "tune") and CoQA's CNN stories (split by the hash load_coqa uses)."""
    out = [(d, "tune") for d in load_corpus(ROOT / "seeds")]
    path = settings.shared_data_dir / "coqa" / "coqa-test-610.json.gz"
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        stories = [s for s in json.load(fh)["data"] if s.get("source", s.get("domain")) == "cnn"]
    for story in stories:
        split = "tune" if zlib.crc32(story["id"].encode()) % 2 == 0 else "test"
        out.append((Document(f"cnn_{story['id']}.txt", "", story["story"]), split))
    return out


def sentence_names(docs: list[Document]) -> list[str]:
    """Capitalised words that open no sentence, from every article: the pool of replacement names."""
    found = set()
    for doc in docs:
        for s in split_sentences(doc):
            found.update(m.group() for m in re.finditer(r"(?<=[a-z,;] )[A-Z][a-z]{3,}\b", s.text)
                         if m.group() not in MONTHS and m.group() not in WEEKDAYS and m.group().casefold() not in STOP)
    return sorted(found)


def origin(place: tuple[str, int]) -> tuple[str, int]:
    """The original sentence a cited sentence was made from (a variant keeps its article's sentence numbers)."""
    return re.sub(r"--(copy|number|date|name|paraphrase\d+)\.txt$", ".txt", place[0]), place[1]


def claim_key(engine: Engine, doc_id: str, index: int, changed: dict[tuple[str, int], tuple[str, str]]) -> tuple:
    """What a cited sentence claims: its text (normalised), or for a changed sentence (original text, kind);
    a paraphrase claims what its original does."""
    key = changed.get((doc_id, index))
    if key is not None:
        return key
    sid = engine.index.sentence_ids[(doc_id, index)]
    return (" ".join(engine.index.sentences[sid].text.split()), "")


def run(settings: Settings, work: Path, stories: int | None, seed: int = SEED, split: str | None = None) -> dict:
    articles = [(d, s) for d, s in load_articles(settings)[: stories and stories + 2] if split in (None, s)]
    paraphrases = {}
    for line in (ROOT / "eval" / "paraphrases.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        paraphrases[row["original"]] = row["paraphrase"]
    names = sentence_names([d for d, _ in articles])
    corpus, changes = [], []
    for doc, split in articles:
        extra, done = variants(doc, split, names, paraphrases if split == "tune" else {}, seed)
        corpus += [Document(doc.doc_id, doc.title, doc.raw), *extra]
        changes += done
    folder = work / "corpus"
    folder.mkdir(parents=True)
    for doc in corpus:
        (folder / doc.doc_id).write_text(doc.raw, encoding="utf-8")
    for name, text in PROBE.items():
        (folder / name).write_text(text, encoding="utf-8")
    settings = settings.model_copy(update={"corpus_dir": folder, "index_root": work / "index"})
    t0 = time.perf_counter()
    engine = Engine.open(settings)
    build_s = time.perf_counter() - t0
    index = engine.index
    # Each changed sentence: (original text, kind) is its claim; a paraphrase claims its original's text.
    changed: dict[tuple[str, int], tuple[str, str]] = {}
    pairs = []  # (change, original (doc, index), variant (doc, index))
    for c in changes:
        if c.kind == "copy":
            continue
        original = index.sentences[index.sentence_ids[(c.article, c.sentence)]]
        text = " ".join(original.text.split())
        changed[(c.doc_id, c.sentence)] = (text, "") if c.kind == "paraphrase" else (text, c.kind)
        pairs.append((c, (c.article, c.sentence), (c.doc_id, c.sentence)))
    copies = {c.article: c.doc_id for c in changes if c.kind == "copy"}
    hits: dict[tuple[str, str], list[int]] = defaultdict(list)
    also_ok = also_bad = differ_ok = differ_bad = 0
    misses: list[dict] = []
    wrong_also: set[tuple] = set()
    natural: dict[str, set] = {"also_in": set(), "disagrees": set()}  # pairs of two different original sentences
    latencies = []
    for c, original, variant in pairs:
        for asked, other in ((original, variant), (variant, original)):
            sid = index.sentence_ids[asked]
            t = time.perf_counter()
            answer = engine.ask(index.sentences[sid].text[:1000], top_k=5, abstain=False)
            latencies.append(time.perf_counter() - t)
            found = False
            for s in answer.sentences:
                head = claim_key(engine, s.citation.doc_id, s.citation.sentence_index, changed)
                places = [(s.citation.doc_id, s.citation.sentence_index), *((a.doc_id, a.sentence_index) for a in s.also_in)]
                here = (s.citation.doc_id, s.citation.sentence_index)
                for a in s.also_in:
                    theirs = claim_key(engine, a.doc_id, a.sentence_index, changed)
                    if origin(here) != origin((a.doc_id, a.sentence_index)) and theirs[0] != head[0]:
                        natural["also_in"].add(tuple(sorted([origin(here), origin((a.doc_id, a.sentence_index))])))
                        continue
                    same = theirs == head
                    also_ok, also_bad = also_ok + same, also_bad + (not same)
                    if not same:
                        wrong_also.add((*here, a.doc_id, a.sentence_index))
                for d in s.disagrees:
                    there = (d.citation.doc_id, d.citation.sentence_index)
                    theirs = claim_key(engine, *there, changed)
                    if origin(here) != origin(there) and theirs[0] != head[0]:
                        natural["disagrees"].add(tuple(sorted([origin(here), origin(there)])))
                        continue
                    real = theirs != head and theirs[0] == head[0]
                    differ_ok, differ_bad = differ_ok + real, differ_bad + (not real)
                if asked in places:
                    listed = {(d.citation.doc_id, d.citation.sentence_index) for d in s.disagrees}
                    found = other in (listed if c.kind != "paraphrase" else set(places))
                    if asked == original and c.article in copies:  # the exact copy: always the same claim
                        hits[("copy", c.split)].append(int((copies[c.article], original[1]) in places))
            hits[(c.kind, c.split)].append(int(found))
            if not found:
                misses.append({"article": c.article, "kind": c.kind, "sentence": c.sentence, "asked": asked[0]})
    probe = engine.ask("When will the old stone bridge reopen?", top_k=3, abstain=False)
    first = probe.sentences[0] if probe.sentences else None
    report = {
        "date": datetime.date.today().isoformat(),
        "command": "PYTHONPATH=$PWD .venv/bin/python benchmarks/disagreements.py " + " ".join(sys.argv[1:]),
        "articles": {"seeds": sum(d.doc_id.startswith("0") for d, _ in articles),
                     "cnn": sum(d.doc_id.startswith("cnn_") for d, _ in articles)},
        "documents": len(corpus) + len(PROBE),
        "sentences": len(index.sentences),
        "build_s": round(build_s, 1),
        "changes": [{"article": c.article, "kind": c.kind, "sentence": c.sentence, "split": c.split} for c in changes
                    if c.kind != "copy"],
        "recall": {f"{kind}/{split}": {"questions": len(v), "found": sum(v), "recall": round(sum(v) / len(v), 4)}
                   for (kind, split), v in sorted(hits.items())},
        "disagrees_precision": {"listed": differ_ok + differ_bad, "right": differ_ok,
                                "precision": round(differ_ok / max(differ_ok + differ_bad, 1), 4)},
        "also_in_precision": {"listed": also_ok + also_bad, "right": also_ok,
                              "precision": round(also_ok / max(also_ok + also_bad, 1), 4),
                              "natural_pairs": len(natural["also_in"])},
        "misses": misses,
        "also_in_wrong": sorted(wrong_also),
        "natural_pairs": {k: sorted(v) for k, v in natural.items()},
        "ask_ms_p50": round(sorted(latencies)[len(latencies) // 2] * 1000, 1) if latencies else None,
        "probe": {"question": probe.question,
                  "first": first.citation.doc_id if first else None,
                  "also_in": [a.doc_id for a in first.also_in] if first else [],
                  "disagrees": [{"doc_id": d.citation.doc_id, "differs": [list(p) for p in d.differs]}
                                for d in first.disagrees] if first else []},
    }
    return report


def markdown(report: dict) -> str:
    lines = [f"disagreement set, {report['date']}: {report['articles']} articles, {report['documents']} documents, "
             f"{report['sentences']} sentences (index built in {report['build_s']} s)", "",
             "| kind / split | questions | found | recall |", "|---|---|---|---|"]
    for key, r in report["recall"].items():
        lines.append(f"| {key} | {r['questions']} | {r['found']} | {r['recall']:.3f} |")
    d, a = report["disagrees_precision"], report["also_in_precision"]
    lines += ["", f"disagrees precision {d['precision']:.3f} ({d['right']}/{d['listed']}); "
                  f"also_in precision {a['precision']:.3f} ({a['right']}/{a['listed']}); ask p50 {report['ask_ms_p50']} ms",
              f"probe: {json.dumps(report['probe'])}"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="write the JSON report here")
    parser.add_argument("--stories", type=int, help="only the first N CNN stories (smoke runs)")
    parser.add_argument("--seed", type=int, default=SEED, help="another draw of the changes (the report's is the default)")
    parser.add_argument("--split", choices=("tune", "test"), help="only the articles of this split")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="qa-disagreements-") as work:
        report = run(Settings(), Path(work), args.stories, args.seed, args.split)
    print(markdown(report))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

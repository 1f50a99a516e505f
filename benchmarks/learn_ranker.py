"""Would a learned sentence ranker beat the hand-set weights? A pairwise logistic model over richer features.

    .venv/bin/python benchmarks/learn_ranker.py                 # fit on SQuAD tune, report every split
    .venv/bin/python benchmarks/learn_ranker.py --with-seeds    # also fit on the seed tune split (×5)

For every answerable question of the seed gold set and of SQuAD 2.0 (ReQA), the hybrid retriever's
candidate sentences are described by the ranking's features as of the third session (qa/rank.py: cosine,
coverage, neighbours' coverage, answer-type cue, heading; the word-piece match came later and is not
among them) and by six more that the engine does not use: the best
neighbour's cosine above the sentence's own, the document's coverage of the question, the share of the
question's adjacent term pairs found adjacent in the sentence, BM25 relative to the best candidate, the
sentence's length and its passage's fused rank score. A pairwise logistic regression (positive against
sampled negatives of the same question) is fitted on the tune split and every split's Hit@1 / MRR@10 is
printed next to the current weights'. Sentence-level figures: a near-duplicate merged into ``also_in`` by
the engine counts as its own rank here, so they differ slightly from ``qa eval``'s. Not a test.
"""

from __future__ import annotations

import argparse

import numpy as np
from sklearn.linear_model import LogisticRegression

from qa import rank, retrieve
from qa.config import Settings
from qa.datasets import Dataset, load_gold, load_squad
from qa.engine import Engine
from qa.ingest import load_corpus

CURRENT = ("dense", "coverage", "context_gain", "answer_type", "heading")
EXTRA = ("neighbour_cosine_gain", "document_coverage", "bigrams", "bm25_relative", "log_length", "passage")


def document_ranges(engine: Engine) -> dict[str, tuple[int, int]]:
    ranges: dict[str, tuple[int, int]] = {}
    for sid, s in enumerate(engine.index.sentences):
        lo, _ = ranges.get(s.doc_id, (sid, sid))
        ranges[s.doc_id] = (lo, sid + 1)
    return ranges


def features(engine: Engine, question: str, ranges: dict, terms_of) -> tuple[np.ndarray, np.ndarray]:
    """(candidate sentence ids, feature matrix with the columns CURRENT + EXTRA)."""
    index, s = engine.index, engine.settings
    query = engine.query(question, "hybrid")
    passages = retrieve.retrieve(index, query.terms, query.vector, mode="hybrid", depth=s.candidate_passages,
                                 fusion=s.fusion, rrf_k=s.rrf_k)
    ids, passage = rank.candidate_sentences(index, passages, depth=s.candidate_passages)
    sentences, lex = index.sentences, index.lexical_sentences
    dense = index.sentence_vectors[ids] @ query.vector
    cov = rank.query_coverage(index, query.terms, ids, neighbours=True)
    _, typed = rank.answer_type_match(question, [sentences[i].text for i in ids.tolist()])
    heading = np.array([sentences[i].kind != "body" for i in ids.tolist()], dtype=np.float32)
    neighbour = np.zeros(len(ids), dtype=np.float32)
    for step in (-1, 1):
        near = ids + step
        ok = np.array([0 <= j < len(sentences) and sentences[j].doc_id == sentences[i].doc_id
                       for i, j in zip(ids.tolist(), near.tolist())], dtype=bool)
        if ok.any():
            neighbour[ok] = np.maximum(neighbour[ok], index.sentence_vectors[near[ok]] @ query.vector - dense[ok])
    uniq, idf, _ = rank._query_idf(index, query.terms)
    total = float(idf.sum()) or 1.0
    doc_cov = {}
    for doc in {sentences[i].doc_id for i in ids.tolist()}:
        present = lex.contains(np.arange(*ranges[doc]), uniq).any(axis=0)
        doc_cov[doc] = float(present.astype(np.float32) @ idf) / total
    pairs = set(zip(query.terms, query.terms[1:]))
    bigrams = np.array([len(pairs & set(zip(terms_of(i), terms_of(i)[1:]))) / len(pairs) if pairs else 0.0
                        for i in ids.tolist()], dtype=np.float32)
    bm25 = lex.scores_of(query.terms, ids)
    columns = [dense, cov.own, cov.context - cov.own, typed, heading, neighbour,
               np.array([doc_cov[sentences[i].doc_id] for i in ids.tolist()], dtype=np.float32), bigrams,
               bm25 / bm25.max() if len(bm25) and bm25.max() > 0 else bm25,
               np.log1p(np.array([len(terms_of(i)) for i in ids.tolist()], dtype=np.float32)), passage]
    return ids, np.stack(columns, axis=1).astype(np.float32)


def collect(engine: Engine, data: Dataset) -> list[dict]:
    ranges, cache = document_ranges(engine), {}

    def terms_of(sid: int) -> list[str]:
        if sid not in cache:
            cache[sid] = engine.index.analyzer.terms(engine.index.sentences[sid].text)
        return cache[sid]

    rows = []
    for q in data.questions:
        if not q.answerable:
            continue
        ids, x = features(engine, q.question, ranges, terms_of)
        label = np.array([any(sp.overlaps(engine.index.sentences[i].doc_id, engine.index.sentences[i].start,
                                          engine.index.sentences[i].end) for sp in q.evidence)
                          for i in ids.tolist()], dtype=bool)
        rows.append({"split": q.split, "ids": ids, "x": x, "label": label})
    return rows


def hit_mrr(rows: list[dict], weights: np.ndarray) -> tuple[float, float]:
    hits, rr = [], []
    for r in rows:
        order = np.lexsort((r["ids"], -(r["x"] @ weights)))
        first = np.flatnonzero(r["label"][order])
        hits.append(bool(len(first)) and first[0] == 0)
        rr.append(1.0 / (first[0] + 1) if len(first) and first[0] < 10 else 0.0)
    return float(np.mean(hits)), float(np.mean(rr))


def pairwise(rows: list[dict], negatives: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    diffs = []
    for r in rows:
        pos, neg = np.flatnonzero(r["label"]), np.flatnonzero(~r["label"])
        for p in pos:
            if len(neg):
                diffs.append(r["x"][p] - r["x"][rng.choice(neg, min(negatives, len(neg)), replace=False)])
    d = np.concatenate(diffs)
    return np.concatenate([d, -d]), np.concatenate([np.ones(len(d)), np.zeros(len(d))])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--with-seeds", action="store_true", help="fit on the seed tune split too (weighted ×5)")
    ap.add_argument("--negatives", type=int, default=20, help="negatives sampled per positive")
    args = ap.parse_args()
    base = Settings()
    seeds = load_gold(base.corpus_dir.parent / "eval" / "gold.jsonl", load_corpus(base.corpus_dir))
    squad = load_squad(base.shared_data_dir)
    rows = {}
    for name, data, settings in (("seeds", seeds, base),
                                 ("squad", squad, base.model_copy(update={"index_name": "squad-v2-dev"}))):
        engine = Engine.open(settings, documents=data.documents, layout=data.layout)
        collected = collect(engine, data)
        for split in ("tune", "test"):
            rows[f"{name} {split}"] = [r for r in collected if r["split"] == split]
    s = base
    current = np.array([s.w_dense, s.w_lexical, s.w_context, s.w_answer_type, -s.heading_penalty] + [0.0] * len(EXTRA))
    train = rows["squad tune"] + (rows["seeds tune"] * 5 if args.with_seeds else [])
    rng = np.random.default_rng(0)
    variants = {"current weights": current}
    for name, cols in (("learned, current features", len(CURRENT)), ("learned, all features", len(CURRENT + EXTRA))):
        x, y = pairwise(train, args.negatives, rng)
        for c in (0.1, 1.0):
            model = LogisticRegression(C=c, fit_intercept=False, max_iter=2000).fit(x[:, :cols], y)
            w = np.zeros(len(CURRENT + EXTRA))
            w[:cols] = model.coef_[0] / model.coef_[0][0]
            variants[f"{name}, C={c}"] = w
    print("| ranker | " + " | ".join(f"{k} Hit@1 / MRR@10" for k in rows) + " |")
    print("|---|" + "---|" * len(rows))
    for name, w in variants.items():
        cells = [f"{h:.3f} / {m:.3f}" for h, m in (hit_mrr(r, w) for r in rows.values())]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("\nweights (" + ", ".join(CURRENT + EXTRA) + "):")
    for name, w in variants.items():
        print(f"  {name}: " + " ".join(f"{v:.2f}" for v in w))


if __name__ == "__main__":
    main()

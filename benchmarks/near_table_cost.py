"""What the near-sentence table (qa/agreement.py) costs to make: at SQuAD-half size, and grown towards
100,000 sentences.

Command (after `qa eval --dataset squad-v2-dev` has built that index under index/)::

    PYTHONPATH=$PWD nice -n 10 .venv/bin/python benchmarks/near_table_cost.py [--sizes 20000 40000]

It times, on the SQuAD-half index: the wording keys of every sentence (qa/claims.py, linear in the
sentences), the FAISS range search and the table (quadratic: every sentence against every other), the
table's size, and an update after one document changed (only its sentences searched). Larger sizes are the
index's vectors repeated with small noise (another document each time), so that the range search meets as
many close pairs as real text would; the time at 100,000 sentences is extrapolated from the largest size
(× (100,000 / n)²). Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from qa import claims
from qa.cues import proper_words_of
from qa import index as index_mod
from qa.agreement import NearSentences
from qa.config import Settings
from qa.profile import load_profile


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[20_000, 40_000])
    args = parser.parse_args()
    s = Settings()
    r = load_profile(s.profile).ranking
    index = index_mod.load(s.index_root / "squad-v2-dev")
    vectors = np.asarray(index.sentence_vectors, dtype=np.float32)
    documents = index.sentence_documents
    vocabulary = claims.Vocabulary(proper_words_of(index))
    keys, keys_s = timed(lambda: np.array([claims.wording_key(x.text, vocabulary) for x in index.sentences],
                                          dtype=np.int64))
    table, table_s = timed(lambda: NearSentences.compute(vectors, documents, keys, r.near_cosine, r.near_limit))
    kept = np.arange(len(vectors))
    changed = documents == documents[len(documents) // 2]
    kept[changed] = -1
    _, update_s = timed(lambda: table.updated(kept, vectors, documents, lambda i: int(keys[i])))
    report = {"sentences": len(vectors), "documents": int(documents.max()) + 1, "keys_s": round(keys_s, 3),
              "keys_us_per_sentence": round(keys_s / len(vectors) * 1e6, 1), "table_s": round(table_s, 3),
              "pairs": int(len(table.neighbours)), "table_bytes": int(table.offsets.nbytes + table.neighbours.nbytes
                                                                     + table.cosines.nbytes + table.keys.nbytes),
              "update_one_document_s": round(update_s, 3), "grown": []}
    rng = np.random.default_rng(0)
    for n in args.sizes:
        reps = -(-n // len(vectors))
        grown = np.concatenate([vectors + 0.02 * rng.standard_normal(vectors.shape).astype(np.float32)
                                for _ in range(reps)])[:n]
        grown /= np.linalg.norm(grown, axis=1, keepdims=True)
        docs = np.concatenate([documents + r * (int(documents.max()) + 1) for r in range(reps)])[:n]
        grown_table, seconds = timed(lambda: NearSentences.compute(grown, docs, np.zeros(n, np.int64),
                                                                   r.near_cosine, r.near_limit))
        report["grown"].append({"sentences": n, "table_s": round(seconds, 2), "pairs": int(len(grown_table.neighbours))})
    if report["grown"]:
        last = report["grown"][-1]
        report["estimate_100k_table_s"] = round(last["table_s"] * (100_000 / last["sentences"]) ** 2, 1)
        report["estimate_100k_keys_s"] = round(report["keys_us_per_sentence"] * 0.1, 1)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

"""Would a reader trained here help? MiniLM fine-tuned as a cross-encoder on SQuAD's tune split.

    .venv/bin/python benchmarks/cross_encoder_probe.py [--out /tmp/cross-encoder] [--squad-test 800]

Only all-MiniLM-L6-v2 is available offline, and every retrieval-side feature so far leaves the seed set's
paraphrases and near-miss questions unread (docs/RETRIEVAL.md). This trains the same weights as a
cross-encoder (question and sentence in one input, mean-pooled, a linear head, binary cross-entropy) on
SQuAD 2.0's tune split only: for each answerable question its gold sentence against three other sentences
of its paragraph, for each unanswerable one two sentences of its paragraph as negatives (SQuAD's
unanswerable questions are near misses written against that paragraph, the case the abstention rule
misses). One epoch, about 8,500 pairs: 14 to 18 minutes on this machine's two cores.

It then re-ranks the hybrid ranker's first ``--depth`` sentences by ``score + λ · logit`` (λ = 0: the
ranker alone; "reader only": the logit alone) on every seed question (never seen in training) and on a
sample of SQuAD's test split, and prints how the best sentence's logit separates the seed set's
unanswerable questions from its answerable ones. Sentence-level Hit@1 (a near-duplicate grouped by the
engine counts as its own rank here). Not a test; nothing here is used by the engine.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import time
import zlib
from pathlib import Path

import numpy as np

from qa.config import Settings
from qa.datasets import SQUAD_FILE, load_gold, load_squad
from qa.engine import Engine
from qa.ingest import load_corpus

LAMBDAS = (0.0, 0.1, 0.2, 0.3, 0.5, 1.0, None)  # None: the reader's logit alone


def training_pairs(engine: Engine, data_dir: Path, seed: int = 0) -> list[tuple[str, str, float]]:
    """(question, sentence, label) from SQuAD's tune split, over the project's own sentence split."""
    rng = random.Random(seed)
    index = engine.index
    by_doc: dict[str, list[int]] = {}
    for sid, s in enumerate(index.sentences):
        by_doc.setdefault(s.doc_id, []).append(sid)
    with gzip.open(data_dir / SQUAD_FILE, "rt", encoding="utf-8") as fh:
        articles = json.load(fh)["data"]
    pairs = []
    for a, article in enumerate(articles):
        for p, para in enumerate(article["paragraphs"]):
            sids = by_doc.get(f"squad-{a:02d}-{p:03d}", [])
            for qa in para["qas"]:
                if zlib.crc32(qa["id"].encode()) % 2:  # the test split (qa.datasets.load_squad's hash)
                    continue
                if qa.get("is_impossible") or not qa["answers"]:
                    negatives = rng.sample(sids, min(2, len(sids)))
                    pairs += [(qa["question"], index.sentences[i].text, 0.0) for i in negatives]
                    continue
                at = qa["answers"][0]["answer_start"]
                gold = [i for i in sids if index.sentences[i].start <= at < index.sentences[i].end]
                if not gold:
                    continue
                rest = [i for i in sids if i != gold[0]]
                pairs.append((qa["question"], index.sentences[gold[0]].text, 1.0))
                negatives = rng.sample(rest, min(3, len(rest)))
                pairs += [(qa["question"], index.sentences[i].text, 0.0) for i in negatives]
    rng.shuffle(pairs)
    return pairs


class CrossEncoder:
    """MiniLM's transformer over "question [SEP] sentence", mean-pooled, then a linear head."""

    def __init__(self, model_path: Path):
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_path))
        self.model = AutoModel.from_pretrained(str(model_path))
        self.head = torch.nn.Linear(self.model.config.hidden_size, 1)

    def logits(self, questions: list[str], sentences: list[str]):
        batch = self.tokenizer(questions, sentences, padding=True, truncation="only_second", max_length=128,
                               return_tensors="pt")
        hidden = self.model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        return self.head((hidden * mask).sum(1) / mask.sum(1)).squeeze(-1)

    def train(self, pairs: list[tuple[str, str, float]], batch_size: int = 32, lr: float = 4e-5) -> None:
        torch = self.torch
        params = [*self.model.parameters(), *self.head.parameters()]
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
        steps = (len(pairs) + batch_size - 1) // batch_size
        warm = max(1, steps // 10)  # linear warm-up over a tenth, then linear decay
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: min(1.0, (k + 1) / warm) * (steps - k) / steps)
        loss_fn = torch.nn.BCEWithLogitsLoss()
        self.model.train()
        t0 = time.perf_counter()
        for k in range(steps):
            chunk = pairs[k * batch_size:(k + 1) * batch_size]
            loss = loss_fn(self.logits([q for q, _, _ in chunk], [s for _, s, _ in chunk]),
                           torch.tensor([y for _, _, y in chunk]))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            opt.zero_grad()
            if k % 50 == 0:
                print(f"  step {k}/{steps} loss {loss.item():.3f} ({time.perf_counter() - t0:.0f} s)", flush=True)
        self.model.eval()

    def score(self, question: str, sentences: list[str]) -> np.ndarray:
        with self.torch.no_grad():
            return self.logits([question] * len(sentences), sentences).numpy()


def rerank_table(name: str, engine: Engine, reader: CrossEncoder, questions, depth: int) -> None:
    rows = []
    for q in questions:
        scored = engine.score(engine.query(q.question, "hybrid"), "hybrid")
        ids = scored.ids[:depth].tolist()
        sentences = [engine.index.sentences[i] for i in ids]
        good = np.array([any(sp.overlaps(s.doc_id, s.start, s.end) for sp in q.evidence) for s in sentences])
        rows.append((q, scored.scores[:depth], reader.score(q.question, [s.text for s in sentences]), good))
    answerable = [r for r in rows if r[0].answerable]
    print(f"\n{name}: sentence-level Hit@1 (all / tune / test) re-ranking the first {depth}")
    for lam in LAMBDAS:
        def hit(r):
            order = r[2] if lam is None else r[1] + lam * r[2]
            return bool(r[3][int(np.argmax(order))])
        cells = [[hit(r) for r in answerable if split in ("all", r[0].split)] for split in ("all", "tune", "test")]
        label = "reader only" if lam is None else f"λ = {lam}"
        print(f"| {label} | " + " | ".join(f"{np.mean(c):.3f}" if c else "–" for c in cells) + " |")
    unanswerable = [r for r in rows if not r[0].answerable]
    if unanswerable:
        best_a = np.array([r[2].max() for r in answerable])
        best_u = np.array([r[2].max() for r in unanswerable])
        for share in (0.03, 0.05):
            threshold = np.quantile(best_a, share)
            print(f"  refusing below the {share:.0%} quantile of answerable questions' best logit ({threshold:.2f}): "
                  f"{np.mean(best_u < threshold):.3f} of unanswerable questions refused")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/cross-encoder"), help="where the trained weights go")
    ap.add_argument("--squad-test", type=int, default=800, help="SQuAD test-split questions to re-rank")
    ap.add_argument("--depth", type=int, default=10, help="sentences re-ranked per question")
    args = ap.parse_args()
    import torch

    torch.manual_seed(0)
    settings = Settings()
    squad = load_squad(settings.shared_data_dir)
    squad_engine = Engine.open(settings.model_copy(update={"index_name": "squad-v2-dev"}),
                               documents=squad.documents, layout=False)
    pairs = training_pairs(squad_engine, settings.shared_data_dir)
    print(f"training on {len(pairs)} pairs ({sum(y for *_, y in pairs):.0f} positive) from SQuAD's tune split")
    reader = CrossEncoder(settings.resolved_model_path())
    reader.train(pairs)
    args.out.mkdir(parents=True, exist_ok=True)
    reader.model.save_pretrained(args.out)
    reader.tokenizer.save_pretrained(args.out)
    torch.save(reader.head.state_dict(), args.out / "head.pt")

    seeds = load_gold(settings.corpus_dir.parent / "eval" / "gold.jsonl", load_corpus(settings.corpus_dir))
    rerank_table("seeds (83 questions)", Engine.open(settings), reader, seeds.questions, args.depth)
    test = [q for q in squad.questions if q.split == "test"]
    sample = random.Random(1).sample(test, min(args.squad_test, len(test)))
    rerank_table(f"SQuAD test split ({len(sample)} questions)", squad_engine, reader, sample, args.depth)


if __name__ == "__main__":
    main()

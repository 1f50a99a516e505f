"""Train the reader: a small cross-encoder that scores (question, sentence) pairs, shipped as int8 ONNX.

    PYTHONPATH=$PWD nice -n 5 .venv/bin/python benchmarks/train_reader.py --out models/reader \
        > /tmp/train_reader.log 2>&1
    # a one-minute smoke run: --max-groups 64 --out /tmp/reader-smoke

Training data (the only data allowed for it, ../shared/data/README.md): SQuAD 1.1 dev's articles that are
not in squad-v2.0-dev-half.json.gz (matched by title) and SelQA dev + test. A few of those articles and
SelQA questions (chosen by a hash of their title / question) are held out to measure the trained model.

Model: the first ``--layers`` transformer layers of all-MiniLM-L6-v2 (the bundled weights), mean-pooled
over "question [SEP] sentence", then a linear head giving one logit. Each question is a group of its answer
sentence and up to ``--negatives`` hard negatives: sentences of the same paragraph, sentences of other
paragraphs of the same article closest to the question by tf-idf cosine (what the retriever would bring),
and for SelQA its labelled wrong candidates. Loss: softmax cross-entropy over each group (ranking) plus
binary cross-entropy on every pair (a logit that means the same across questions, for abstention).

Writes into ``--out``: ``model.onnx`` (int8, onnxruntime dynamic quantization), ``tokenizer.json`` and
``manifest.json`` (data files and sha256, hyper-parameters, seed, held-out figures of fp32 and int8).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.training_data import (HELD_OUT_RULE, Group, data_files, excluded_articles, group_accuracy,
                                      seeded_groups)
from qa.config import Settings, bundled_model_path

@dataclass(frozen=True)
class HyperParameters:
    layers: int = 3
    max_length: int = 64
    negatives: int = 3
    groups_per_step: int = 8
    learning_rate: float = 8e-5
    warmup_share: float = 0.1
    warmup_steps: int = 30
    weight_decay: float = 0.01
    bce_weight: float = 1.0
    epochs: int = 1
    seed: int = 13


class CrossEncoder:
    """The first ``layers`` layers of MiniLM over "question [SEP] sentence", mean-pooled, a linear head."""

    def __init__(self, model_path: Path, layers: int, max_length: int):
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.torch = torch
        self.max_length = max_length
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_path))
        transformer = AutoModel.from_pretrained(str(model_path))
        transformer.encoder.layer = transformer.encoder.layer[:layers]
        transformer.config.num_hidden_layers = layers
        self.module = _Scorer(transformer, torch.nn.Linear(transformer.config.hidden_size, 1))

    def batch(self, questions: list[str], sentences: list[str]):
        return self.tokenizer(questions, sentences, padding=True, truncation="only_second",
                              max_length=self.max_length, return_tensors="pt")

    def logits(self, questions: list[str], sentences: list[str]):
        b = self.batch(questions, sentences)
        return self.module(b["input_ids"], b["attention_mask"], b["token_type_ids"])

    def train(self, groups: list[Group], hp: HyperParameters, log_every: int = 10,
              max_seconds: float | None = None) -> int:
        """Train in place. With ``max_seconds`` the learning rate decays over that time and training stops
        when it is spent (on a shared machine the steps a budget buys vary). Returns the steps taken."""
        torch = self.torch
        # The word-piece embeddings stay as MiniLM learnt them: most of the model's weights, and the
        # optimiser's cost, with little to gain from a few thousand questions.
        self.module.transformer.embeddings.word_embeddings.weight.requires_grad_(False)
        params = [p for p in self.module.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=hp.learning_rate, weight_decay=hp.weight_decay)
        steps = hp.epochs * ((len(groups) + hp.groups_per_step - 1) // hp.groups_per_step)
        warm = max(1, min(int(steps * hp.warmup_share), hp.warmup_steps))
        t0 = time.perf_counter()

        def remaining(k: int) -> float:  # linear decay over the steps, or over the time budget when one is set
            if max_seconds is not None:
                return max(0.0, 1.0 - (time.perf_counter() - t0) / max_seconds)
            return max(0.0, (steps - k) / steps)

        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: min(1.0, (k + 1) / warm) * remaining(k))
        bce = torch.nn.BCEWithLogitsLoss()
        rng = random.Random(hp.seed)
        self.module.train()
        k = 0
        for _ in range(hp.epochs):
            order = groups[:]
            rng.shuffle(order)
            for start in range(0, len(order), hp.groups_per_step):
                chunk = order[start:start + hp.groups_per_step]
                qs = [g.question for g in chunk for _ in g.sentences]
                ss = [s for g in chunk for s in g.sentences]
                logits = self.logits(qs, ss)
                labels = torch.tensor([float(j == 0) for g in chunk for j in range(len(g.sentences))])
                listwise, at = 0.0, 0
                for g in chunk:  # the answer is each group's first sentence
                    listwise = listwise - torch.log_softmax(logits[at:at + len(g.sentences)], 0)[0]
                    at += len(g.sentences)
                loss = listwise / len(chunk) + hp.bce_weight * bce(logits, labels)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                sched.step()
                opt.zero_grad()
                if k % log_every == 0:
                    print(f"  step {k}/{steps} loss {loss.item():.3f} ({time.perf_counter() - t0:.0f} s)", flush=True)
                k += 1
                if max_seconds is not None and time.perf_counter() - t0 > max_seconds:
                    print(f"  stopped at step {k}/{steps}: time budget reached", flush=True)
                    self.module.eval()
                    return k
        self.module.eval()
        return k

    def export(self, target: Path) -> None:
        """The scorer as one ONNX graph: (input_ids, attention_mask, token_type_ids) → logit per pair."""
        import warnings

        sample = self.batch(["a question?", "another question"], ["a sentence.", "a longer sentence here."])
        names = ["input_ids", "attention_mask", "token_type_ids"]
        axes = {n: {0: "pairs", 1: "tokens"} for n in names}
        with self.torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.torch.onnx.export(self.module, tuple(sample[n] for n in names), str(target), input_names=names,
                                   output_names=["logit"], dynamic_axes={**axes, "logit": {0: "pairs"}},
                                   opset_version=17, dynamo=False)


def _Scorer(transformer, head):
    import torch

    class Scorer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.transformer, self.head = transformer, head

        def forward(self, input_ids, attention_mask, token_type_ids):
            hidden = self.transformer(input_ids=input_ids, attention_mask=attention_mask,
                                      token_type_ids=token_type_ids).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return self.head(pooled).squeeze(-1)

    return Scorer()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("models/reader"))
    ap.add_argument("--max-groups", type=int, default=None, help="train on at most this many groups (smoke runs)")
    ap.add_argument("--layers", type=int, default=HyperParameters.layers)
    ap.add_argument("--epochs", type=int, default=HyperParameters.epochs)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-minutes", type=float, default=None, help="stop training after this long")
    args = ap.parse_args()
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from qa.reader import Reader

    hp = HyperParameters(layers=args.layers, epochs=args.epochs)
    data_dir = Settings().shared_data_dir
    t0 = time.perf_counter()
    train, squad_dev, selqa_dev, counts = seeded_groups(hp, args.threads, args.max_groups)
    print(f"{len(train)} training groups ({counts['squad11']} SQuAD 1.1, {counts['selqa']} SelQA); held out "
          f"{len(squad_dev)} + {len(selqa_dev)} ({time.perf_counter() - t0:.0f} s)", flush=True)
    model = CrossEncoder(bundled_model_path(), hp.layers, hp.max_length)
    t1 = time.perf_counter()
    steps = model.train(train, hp, max_seconds=args.max_minutes * 60 if args.max_minutes else None)
    train_seconds = time.perf_counter() - t1

    args.out.mkdir(parents=True, exist_ok=True)
    fp32 = args.out / "model.fp32.onnx"
    model.export(fp32)
    quantize_dynamic(str(fp32), str(args.out / "model.onnx"), weight_type=QuantType.QInt8)
    shutil.copy(bundled_model_path() / "tokenizer.json", args.out / "tokenizer.json")
    figures = {}
    for name, path in (("fp32", fp32), ("int8", args.out / "model.onnx")):
        reader = Reader(path, args.out / "tokenizer.json", max_length=hp.max_length, threads=args.threads)
        figures[name] = {"squad11_held_out": group_accuracy(reader.score, squad_dev),
                         "selqa_held_out": group_accuracy(reader.score, selqa_dev)}
    fp32.unlink()
    manifest = {
        "model": "cross-encoder: all-MiniLM-L6-v2's first layers, mean pooling, linear head; int8 ONNX",
        "base_model": bundled_model_path().name,
        "training_data": data_files(data_dir),
        "articles_excluded_by_title": excluded_articles(data_dir),
        "training_groups": {**counts, "used": len(train)},
        "held_out": HELD_OUT_RULE,
        "hyper_parameters": asdict(hp),
        "seed": hp.seed,
        "train_seconds": round(train_seconds),
        "train_steps": steps,
        "figures": figures,
    }
    # The evaluation sets' figures (docs/MODELS.md) are added under "evaluation" once measured.
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()

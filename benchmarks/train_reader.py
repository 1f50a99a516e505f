"""Train the reader: a small cross-encoder that scores (question, sentence) pairs, shipped as int8 ONNX.

    # a run to convergence (a quiet machine; docs/MODELS.md, "Training runs", has the measured durations)
    PYTHONPATH=$PWD OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/train_reader.py --layers 3 --epochs 2 \
        --run /var/tmp/qa-train/reader-l3 --out /var/tmp/qa-train/reader-l3/model
    # continue it after a stop, exactly where its last checkpoint left it
    PYTHONPATH=$PWD .venv/bin/python benchmarks/train_reader.py --run /var/tmp/qa-train/reader-l3 --resume
    # a smoke run (about a minute)
    PYTHONPATH=$PWD .venv/bin/python benchmarks/train_reader.py --max-groups 48 --epochs 2 --eval-every 4 \
        --run /tmp/reader-smoke --out /tmp/reader-smoke/model

Training data (benchmarks/training_data.py, the only data allowed for it): SQuAD 1.1 dev's articles that are
not in squad-v2.0-dev-half.json.gz and SelQA dev + test, one article / question in 12 held out. Each question
is a group of its answer sentence and negatives that name its subject without answering it (sentences of its
own article most like it, the most alike of other articles) and an off-topic one; a share of the questions
also gives a group without an answer (sentences of other articles only).

Model: the first ``--layers`` transformer layers of all-MiniLM-L6-v2 (the bundled weights), mean-pooled over
"question [SEP] sentence", then a linear head giving one logit. Loss: softmax cross-entropy over each group
with an answer (ranking) plus binary cross-entropy on every pair, groups without an answer included (a logit
that means the same across questions: the decision to answer). AdamW, linear warm-up then linear decay over
the planned steps (``--epochs`` full passes).

The run folder (``--run``, outside the repository) holds ``checkpoint.pt`` (model, optimiser, scheduler, every
RNG state and the position, written every ``--checkpoint-minutes``, at each epoch's end and on SIGTERM; a
resumed run continues exactly), ``log.jsonl`` (training loss every ``--log-every`` steps; held-out loss,
Hit@1 and MRR every ``--eval-every`` steps and at each epoch's end) and ``run.json`` (the command, the
hyper-parameters, the data). At the end ``--out`` gets ``model.onnx`` (int8, onnxruntime dynamic
quantization), ``tokenizer.json`` and ``manifest.json`` (command, seed, data files and sha256, hyper-parameters,
steps, epochs, held-out figures per epoch and of fp32 / int8).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import shutil
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from benchmarks.training_data import (HELD_OUT_RULE, Group, NegativeMix, data_files, excluded_articles,
                                      group_accuracy, run_groups)
from qa.config import PROJECT_ROOT, bundled_model_path


@dataclass(frozen=True)
class HyperParameters:
    layers: int = 3
    max_length: int = 64
    groups_per_step: int = 8
    learning_rate: float = 8e-5
    warmup_share: float = 0.06
    weight_decay: float = 0.01
    bce_weight: float = 1.0
    epochs: int = 2
    seed: int = 13
    negatives: NegativeMix = NegativeMix()


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
        # The word-piece embeddings stay as MiniLM learnt them: most of the model's weights, and the
        # optimiser's cost, with little to gain from ten thousand questions.
        self.module.transformer.embeddings.word_embeddings.weight.requires_grad_(False)

    def batch(self, questions: list[str], sentences: list[str]):
        return self.tokenizer(questions, sentences, padding=True, truncation="only_second",
                              max_length=self.max_length, return_tensors="pt")

    def logits(self, questions: list[str], sentences: list[str]):
        b = self.batch(questions, sentences)
        return self.module(b["input_ids"], b["attention_mask"], b["token_type_ids"])

    def loss(self, groups: list[Group], bce_weight: float):
        """Listwise cross-entropy over the groups with an answer (first sentence) and BCE over every pair."""
        torch = self.torch
        logits = self.logits([g.question for g in groups for _ in g.sentences], [s for g in groups for s in g.sentences])
        labels = torch.tensor([float(g.answered and j == 0) for g in groups for j in range(len(g.sentences))])
        listwise, at, answered = logits.new_zeros(()), 0, 0
        for g in groups:
            if g.answered:
                listwise = listwise - torch.log_softmax(logits[at:at + len(g.sentences)], 0)[0]
                answered += 1
            at += len(g.sentences)
        bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
        return listwise / max(answered, 1) + bce_weight * bce

    def score(self, question: str, sentences: list[str]) -> np.ndarray:
        with self.torch.no_grad():
            return self.logits([question] * len(sentences), sentences).numpy()

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


def held_out(model: CrossEncoder, hp: HyperParameters, squad_dev: list[Group], selqa_dev: list[Group]) -> dict:
    """Held-out loss (every group, in batches of a step), Hit@1 / MRR of each source, and how the pair logit
    decides: the share of answer sentences at logit ≥ 0 and of groups without an answer whose best logit is < 0."""
    torch = model.torch
    model.module.eval()
    groups = squad_dev + selqa_dev
    with torch.no_grad(), torch.random.fork_rng():  # measuring takes nothing from training's random stream
        losses = [float(model.loss(groups[i:i + hp.groups_per_step], hp.bce_weight)) * len(groups[i:i + hp.groups_per_step])
                  for i in range(0, len(groups), hp.groups_per_step)]
        answered = [g for g in groups if g.answered]
        empty = [g for g in groups if not g.answered]
        answer_logits = [float(model.score(g.question, [g.sentences[0]])[0]) for g in answered]
        empty_best = [float(model.score(g.question, list(g.sentences)).max()) for g in empty]
    model.module.train()
    return {"loss": round(sum(losses) / max(len(groups), 1), 5),
            "squad11": group_accuracy(model.score, squad_dev), "selqa": group_accuracy(model.score, selqa_dev),
            "answer_logit_at_least_0": round(float(np.mean(np.array(answer_logits) >= 0)), 4) if answer_logits else None,
            "no_answer_best_logit_below_0": round(float(np.mean(np.array(empty_best) < 0)), 4) if empty_best else None}


class Run:
    """A training run in its folder: the planned steps, the checkpoint and the log (see the module's docstring)."""

    def __init__(self, folder: Path, model: CrossEncoder, hp: HyperParameters, steps_per_epoch: int):
        torch = model.torch
        self.folder, self.model, self.hp = folder, model, hp
        self.steps_per_epoch = steps_per_epoch
        self.planned = hp.epochs * steps_per_epoch
        params = [p for p in model.module.parameters() if p.requires_grad]
        self.params = params
        self.optimizer = torch.optim.AdamW(params, lr=hp.learning_rate, weight_decay=hp.weight_decay)
        warm = max(1, int(self.planned * hp.warmup_share))
        planned = self.planned
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda k: min(1.0, (k + 1) / warm) * max(0.0, (planned - k) / planned))
        self.step = 0  # optimiser steps taken
        self.epoch_figures: list[dict] = []

    @property
    def checkpoint_path(self) -> Path:
        return self.folder / "checkpoint.pt"

    def save(self, why: str) -> None:
        """Everything a resumed run needs, written atomically."""
        torch = self.model.torch
        state = {"model": self.model.module.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "step": self.step, "epoch_figures": self.epoch_figures,
                 "rng": {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()},
                 "hyper_parameters": asdict(self.hp), "saved": why, "time": time.time()}
        tmp = self.checkpoint_path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.checkpoint_path)
        self.log({"event": "checkpoint", "why": why})

    def load(self) -> None:
        torch = self.model.torch
        state = torch.load(self.checkpoint_path, weights_only=False)
        self.model.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.epoch_figures = state["step"], state["epoch_figures"]
        torch.set_rng_state(state["rng"]["torch"])
        random.setstate(state["rng"]["python"])
        np.random.set_state(state["rng"]["numpy"])
        self.log({"event": "resumed", "step": self.step})

    def log(self, record: dict) -> None:
        record = {"step": self.step, "epoch": self.step / self.steps_per_epoch, "time": round(time.time(), 1), **record}
        with (self.folder / "log.jsonl").open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        print(json.dumps(record), flush=True)


def epoch_order(groups: list[Group], seed: int, epoch: int) -> list[Group]:
    """The groups of ``epoch`` in their order: a shuffle fixed by the seed and the epoch, so a resumed run
    takes the same batches."""
    order = groups[:]
    random.Random(seed * 1000 + epoch).shuffle(order)
    return order


def train(run: Run, train_groups: list[Group], squad_dev: list[Group], selqa_dev: list[Group], *, log_every: int,
          eval_every: int, checkpoint_seconds: float) -> None:
    """Train from ``run.step`` to the planned steps, evaluating, logging and checkpointing on the way."""
    hp, model = run.hp, run.model
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))  # finish the step, checkpoint, exit
    model.module.train()
    last_save, t0, first = time.time(), time.perf_counter(), run.step
    while run.step < run.planned:
        epoch, batch = divmod(run.step, run.steps_per_epoch)
        order = epoch_order(train_groups, hp.seed, epoch)
        chunk = order[batch * hp.groups_per_step:(batch + 1) * hp.groups_per_step]
        loss = model.loss(chunk, hp.bce_weight)
        loss.backward()
        model.torch.nn.utils.clip_grad_norm_(run.params, 1.0)
        run.optimizer.step()
        run.scheduler.step()
        run.optimizer.zero_grad()
        run.step += 1
        if run.step % log_every == 0:
            per_step = (time.perf_counter() - t0) / (run.step - first)
            run.log({"loss": round(loss.item(), 5), "lr": run.scheduler.get_last_lr()[0],
                     "seconds_per_step": round(per_step, 3)})
        end_of_epoch = run.step % run.steps_per_epoch == 0
        if end_of_epoch or run.step % eval_every == 0:
            figures = held_out(model, hp, squad_dev, selqa_dev)
            run.log({"held_out": figures, **({"epoch_end": run.step // run.steps_per_epoch} if end_of_epoch else {})})
            if end_of_epoch:
                run.epoch_figures.append({"epoch": run.step // run.steps_per_epoch, "step": run.step, **figures})
        if end_of_epoch or time.time() - last_save > checkpoint_seconds or stop["now"]:
            run.save("epoch end" if end_of_epoch else "stopped" if stop["now"] else "periodic")
            last_save = time.time()
        if stop["now"]:
            print("stopped by SIGTERM after a checkpoint: continue with --resume", flush=True)
            sys.exit(143)
    model.module.eval()


def export(model: CrossEncoder, hp: HyperParameters, out: Path, squad_dev, selqa_dev, threads: int) -> dict:
    """``out``/model.onnx (int8) and tokenizer.json; the held-out figures of the fp32 and int8 graphs."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from qa.reader import Reader

    out.mkdir(parents=True, exist_ok=True)
    fp32 = out / "model.fp32.onnx"
    model.export(fp32)
    quantize_dynamic(str(fp32), str(out / "model.onnx"), weight_type=QuantType.QInt8)
    shutil.copy(bundled_model_path() / "tokenizer.json", out / "tokenizer.json")
    figures = {}
    for name, path in (("fp32", fp32), ("int8", out / "model.onnx")):
        reader = Reader(path, out / "tokenizer.json", max_length=hp.max_length, threads=threads)
        figures[name] = {"squad11_held_out": group_accuracy(reader.score, squad_dev),
                         "selqa_held_out": group_accuracy(reader.score, selqa_dev)}
    fp32.unlink()
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", type=Path, required=True, help="the run's folder (checkpoint, log), outside the repository")
    ap.add_argument("--out", type=Path, default=None, help="where the trained reader is written (default: RUN/model)")
    ap.add_argument("--resume", action="store_true", help="continue the run in --run from its checkpoint")
    ap.add_argument("--layers", type=int, choices=range(1, 7), default=HyperParameters.layers, metavar="1-6")
    ap.add_argument("--epochs", type=int, default=HyperParameters.epochs)
    ap.add_argument("--max-groups", type=int, default=None, help="train on at most this many groups (smoke runs)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--eval-every", type=int, default=250, help="held-out figures every this many steps")
    ap.add_argument("--checkpoint-minutes", type=float, default=5.0)
    args = ap.parse_args()
    run_dir = args.run.resolve()
    if run_dir.is_relative_to(PROJECT_ROOT):
        ap.error(f"--run must be outside the repository ({PROJECT_ROOT}), e.g. /var/tmp/qa-train/<name>")
    spec_file = run_dir / "run.json"
    if args.resume:
        spec = json.loads(spec_file.read_text(encoding="utf-8"))
        hp = HyperParameters(**{**spec["hyper_parameters"], "negatives": NegativeMix(**spec["hyper_parameters"]["negatives"])})
        max_groups, out = spec["max_groups"], Path(spec["out"])
        args.log_every, args.eval_every, args.checkpoint_minutes, args.threads = (
            spec["log_every"], spec["eval_every"], spec["checkpoint_minutes"], spec["threads"])
    else:
        if (run_dir / "checkpoint.pt").exists():
            ap.error(f"{run_dir} already holds a run: --resume it, or choose another folder")
        hp = HyperParameters(layers=args.layers, epochs=args.epochs)
        max_groups, out = args.max_groups, (args.out or run_dir / "model").resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    train_groups, squad_dev, selqa_dev, counts = run_groups(run_dir, hp.seed, hp.negatives, args.threads, max_groups)
    from qa.config import Settings

    data_dir = Settings().shared_data_dir
    if not args.resume:
        spec = {"command": "python " + " ".join(sys.argv), "started": datetime.datetime.now().isoformat(timespec="seconds"),
                "hyper_parameters": asdict(hp), "max_groups": max_groups, "out": str(out), "threads": args.threads,
                "log_every": args.log_every, "eval_every": args.eval_every, "checkpoint_minutes": args.checkpoint_minutes,
                "training_data": data_files(data_dir), "articles_excluded_by_title": excluded_articles(data_dir),
                "training_groups": {**counts, "used": len(train_groups)}, "held_out": HELD_OUT_RULE}
        spec_file.write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")
    print(f"{len(train_groups)} training groups ({counts['squad11']} SQuAD 1.1 and {counts['selqa']} SelQA questions, "
          f"{counts['without_answer']} without an answer); held out {len(squad_dev)} + {len(selqa_dev)} "
          f"({time.perf_counter() - t0:.0f} s)", flush=True)
    model = CrossEncoder(bundled_model_path(), hp.layers, hp.max_length)
    steps_per_epoch = (len(train_groups) + hp.groups_per_step - 1) // hp.groups_per_step
    run = Run(run_dir, model, hp, steps_per_epoch)
    if args.resume:
        run.load()
    else:
        run.log({"event": "start", "planned_steps": run.planned, "steps_per_epoch": steps_per_epoch,
                 "held_out": held_out(model, hp, squad_dev, selqa_dev)})
    t1 = time.perf_counter()
    train(run, train_groups, squad_dev, selqa_dev, log_every=args.log_every, eval_every=args.eval_every,
          checkpoint_seconds=args.checkpoint_minutes * 60)
    figures = export(model, hp, out, squad_dev, selqa_dev, args.threads)
    manifest = {
        "model": "cross-encoder: all-MiniLM-L6-v2's first layers, mean pooling, linear head; int8 ONNX",
        "base_model": bundled_model_path().name,
        "command": spec["command"],
        "training_data": spec["training_data"],
        "articles_excluded_by_title": spec["articles_excluded_by_title"],
        "training_groups": spec["training_groups"],
        "held_out": HELD_OUT_RULE,
        "hyper_parameters": asdict(hp),
        "seed": hp.seed,
        "train_steps": run.step,
        "epochs": run.step / steps_per_epoch,
        "train_seconds_last_session": round(time.perf_counter() - t1),
        "held_out_per_epoch": run.epoch_figures,
        "figures": figures,
    }
    # The evaluation sets' figures (docs/MODELS.md) are added under "evaluation" once measured.
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()

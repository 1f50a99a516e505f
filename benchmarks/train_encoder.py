"""Fine-tune the bi-encoder (all-MiniLM-L6-v2) for question → answer sentence, with sentence-transformers'
own trainer, into a sentence-transformers model folder (docs/MODELS.md: measured, not shipped).

    PYTHONPATH=$PWD OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/train_encoder.py --epochs 2 \
        --run /var/tmp/qa-train/encoder --out /var/tmp/qa-train/encoder/model      # full epochs (docs/MODELS.md)
    PYTHONPATH=$PWD .venv/bin/python benchmarks/train_encoder.py --run /var/tmp/qa-train/encoder --resume
    PYTHONPATH=$PWD .venv/bin/python benchmarks/train_encoder.py --max-groups 160 --run /tmp/encoder-smoke \
        --out /tmp/encoder-smoke/model --save-steps 2                              # a smoke run, 1.5 minutes

The result is used with ``QA_MODEL_PATH=<folder>`` (an index root of its own keeps the base model's indexes).

Needs the training extra (``pip install -e '.[train]'``: datasets and accelerate, which sentence-transformers'
trainer uses); the product itself does not.

Training data (benchmarks/training_data.py, the same groups as benchmarks/train_reader.py): SQuAD 1.1 dev's
articles that are not in squad-v2.0-dev-half.json.gz and SelQA dev + test, one in 12 articles / questions
held out. Each question gives one (question, answer sentence, hard negative) triplet: the hard negative is
its group's first negative, a sentence of the answer's paragraph (or, for a one-sentence paragraph, the
tf-idf-closest sentence of the article's other paragraphs) for SQuAD and a labelled wrong candidate for
SelQA. Loss: MultipleNegativesRankingLoss (the other questions' answers and hard negatives in the batch are
negatives too), batches without duplicate texts, ``--epochs`` full passes, linear warm-up and decay over the
planned steps, fixed seed. The trainer's checkpoints (model, optimiser, scheduler, RNG states, position) go to
the run folder (``--run``, outside the repository) every ``--save-steps`` steps; ``--resume`` continues from the
last one (sentence-transformers' ``resume_from_checkpoint``). Held-out figures are logged at each epoch's end
into ``RUN/log.jsonl``.

Writes into ``--out`` the model folder (safetensors, fp16 weights unless ``--fp32`` or unless fp16 moves a
held-out figure by more than half a point; the configuration says float32, so the model loads and runs in
fp32) and ``manifest.json`` (data files with sha256, hyper-parameters, seed, steps, minutes, held-out
figures of the base model, the trained fp32 model and the saved weights).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.training_data import (HELD_OUT_RULE, NegativeMix, data_files, excluded_articles, group_accuracy,
                                      run_groups)
from qa.config import PROJECT_ROOT, Settings, bundled_model_path


@dataclass(frozen=True)
class HyperParameters:
    batch_size: int = 32  # triplets a step: 32 questions against 64 sentences
    learning_rate: float = 3e-5
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    scale: float = 20.0  # MultipleNegativesRankingLoss: cosine × scale are the logits
    epochs: int = 2
    seed: int = 13
    save_steps: int = 25  # a checkpoint every this many steps (about 5 minutes on a quiet 2-core machine)


def load(path: Path):
    import torch
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(path), device="cpu", local_files_only=True,
                               model_kwargs={"dtype": torch.float32})


def held_out_figures(model, squad_dev, selqa_dev) -> dict:
    def score(question: str, sentences: list[str]):
        v = model.encode([question, *sentences], normalize_embeddings=True, batch_size=64)
        return v[1:] @ v[0]

    return {"squad11_held_out": group_accuracy(score, squad_dev), "selqa_held_out": group_accuracy(score, selqa_dev)}


def moved(a: dict, b: dict) -> float:
    """The largest change of a held-out figure between two measurements, in points."""
    return max(abs(a[s][k] - b[s][k]) * 100 for s in a for k in ("hit@1", "mrr"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", type=Path, required=True, help="the run's folder (checkpoints, log), outside the repository")
    ap.add_argument("--out", type=Path, default=None, help="where the model is written (default: RUN/model)")
    ap.add_argument("--resume", action="store_true", help="continue the run in --run from its last checkpoint")
    ap.add_argument("--max-groups", type=int, default=None, help="train on at most this many triplets (smoke runs)")
    ap.add_argument("--epochs", type=int, default=HyperParameters.epochs)
    ap.add_argument("--save-steps", type=int, default=HyperParameters.save_steps)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--fp32", action="store_true", help="save fp32 weights (default: fp16 when it costs ≤ 0.5 points)")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import pyarrow as pa
    from datasets import Dataset
    from datasets.table import InMemoryTable
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.training_args import BatchSamplers
    from transformers import TrainerCallback

    run_dir = args.run.resolve()
    if run_dir.is_relative_to(PROJECT_ROOT):
        ap.error(f"--run must be outside the repository ({PROJECT_ROOT}), e.g. /var/tmp/qa-train/<name>")
    spec_file = run_dir / "run.json"
    if args.resume:  # the run's own settings, whatever this command line says
        spec = json.loads(spec_file.read_text(encoding="utf-8"))
        hp, max_groups, out = HyperParameters(**spec["hyper_parameters"]), spec["max_groups"], Path(spec["out"])
    else:
        hp = HyperParameters(epochs=args.epochs, save_steps=args.save_steps)
        max_groups, out = args.max_groups, (args.out or run_dir / "model").resolve()
        run_dir.mkdir(parents=True, exist_ok=True)
        spec = {"command": "python " + " ".join(sys.argv), "hyper_parameters": asdict(hp), "max_groups": max_groups,
                "out": str(out)}
        spec_file.write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")
    data_dir = Settings().shared_data_dir
    t0 = time.perf_counter()
    train, squad_dev, selqa_dev, counts = run_groups(run_dir, hp.seed, NegativeMix(), args.threads, max_groups)
    train = [g for g in train if g.answered]  # a triplet needs an answer; its negative names the question's subject
    columns = {"anchor": [g.question for g in train], "positive": [g.sentences[0] for g in train],
               "negative": [g.sentences[1] for g in train]}
    # Built from an Arrow table with a fingerprint of its own: datasets' default fingerprint pickles the
    # table's types, which fails with some pyarrow releases.
    fingerprint = hashlib.sha256(json.dumps(columns).encode()).hexdigest()[:16]
    triplets = Dataset(InMemoryTable(pa.table(columns)), fingerprint=fingerprint)
    print(f"{len(train)} training triplets ({counts['squad11']} SQuAD 1.1, {counts['selqa']} SelQA); held out "
          f"{len(squad_dev)} + {len(selqa_dev)} groups ({time.perf_counter() - t0:.0f} s)", flush=True)

    model = load(bundled_model_path())
    figures = {"base": held_out_figures(model, squad_dev, selqa_dev)}
    print("base", json.dumps(figures["base"]), flush=True)

    class HeldOut(TrainerCallback):
        """The held-out figures at each epoch's end, into RUN/log.jsonl (and the manifest)."""

        def on_epoch_end(self, _args, state, control, **__):
            model.eval()
            record = {"epoch": round(state.epoch), "step": state.global_step, **held_out_figures(model, squad_dev, selqa_dev)}
            model.train()
            with (run_dir / "log.jsonl").open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")
            print("held out", json.dumps(record), flush=True)
            return control

    training_args = SentenceTransformerTrainingArguments(
        output_dir=str(run_dir / "checkpoints"), num_train_epochs=hp.epochs, per_device_train_batch_size=hp.batch_size,
        learning_rate=hp.learning_rate, warmup_ratio=hp.warmup_ratio, weight_decay=hp.weight_decay,
        lr_scheduler_type="linear", batch_sampler=BatchSamplers.NO_DUPLICATES, seed=hp.seed, data_seed=hp.seed,
        logging_steps=10, save_strategy="steps", save_steps=hp.save_steps, save_total_limit=2, report_to="none",
        use_cpu=True, dataloader_num_workers=0, disable_tqdm=True)
    trainer = SentenceTransformerTrainer(model=model, args=training_args, train_dataset=triplets,
                                         loss=MultipleNegativesRankingLoss(model, scale=hp.scale),
                                         callbacks=[HeldOut()])
    t1 = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=True if args.resume else None)
    train_seconds = time.perf_counter() - t1
    steps = int(result.global_step)
    planned = trainer.state.max_steps
    print(f"trained {steps}/{planned} steps in {train_seconds / 60:.1f} min", flush=True)
    model.eval()
    figures["trained_fp32"] = held_out_figures(model, squad_dev, selqa_dev)
    print("trained fp32", json.dumps(figures["trained_fp32"]), flush=True)

    if out.exists():
        shutil.rmtree(out)
    dtype = "float32"
    if not args.fp32:
        model.half()
        model.save(str(out), safe_serialization=True)
        _config_float32(out)
        figures["saved_fp16"] = held_out_figures(load(out), squad_dev, selqa_dev)
        print("saved fp16", json.dumps(figures["saved_fp16"]), flush=True)
        if moved(figures["saved_fp16"], figures["trained_fp32"]) <= 0.5:
            dtype = "float16"
        else:  # fp16 costs more than half a point: keep fp32
            print("fp16 moves a held-out figure by more than 0.5 points: saving fp32", flush=True)
            shutil.rmtree(out)
            model.float()
    if dtype == "float32":
        model.save(str(out), safe_serialization=True)
    for name in ("README.md",):  # the model card sentence-transformers writes names the training run's details
        (out / name).unlink(missing_ok=True)

    manifest = {
        "model": "bi-encoder: all-MiniLM-L6-v2 fine-tuned for question → answer sentence (mean pooling, "
                 "normalised; sentence-transformers format)",
        "base_model": f"{bundled_model_path().parent.name}/{bundled_model_path().name}",
        "weights_dtype": dtype,
        "training_data": data_files(data_dir),
        "articles_excluded_by_title": excluded_articles(data_dir),
        "training_triplets": {**counts, "used": len(train)},
        "held_out": HELD_OUT_RULE,
        "hyper_parameters": {**asdict(hp), "loss": "MultipleNegativesRankingLoss", "optimizer": "AdamW",
                             "schedule": "linear warm-up and decay over the planned steps",
                             "batch_sampler": "no duplicate texts in a batch", "torch_threads": args.threads,
                             "max_groups": max_groups},
        "seed": hp.seed,
        "train_steps": steps,
        "planned_steps": planned,
        "train_minutes_last_session": round(train_seconds / 60, 1),
        "command": spec["command"],
        "held_out_per_epoch": [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()],
        "figures": figures,
    }
    # The evaluation sets' figures (docs/MODELS.md) are added under "evaluation" once measured.
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps(figures, indent=2))


def _config_float32(folder: Path) -> None:
    """The weights are stored in fp16 to halve the folder; the model runs in fp32 wherever it is loaded."""
    path = folder / "config.json"
    config = json.loads(path.read_text())
    for key in ("dtype", "torch_dtype"):
        if key in config:
            config[key] = "float32"
    path.write_text(json.dumps(config, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""Fine-tune the bi-encoder (all-MiniLM-L6-v2) for question → answer sentence, with sentence-transformers'
own trainer, into a sentence-transformers model folder (docs/MODELS.md: measured, not shipped).

    PYTHONPATH=$PWD OMP_WAIT_POLICY=PASSIVE nice -n 5 python benchmarks/train_encoder.py --out /tmp/encoder-run \
        --max-minutes 40 > /tmp/encoder-run.log 2>&1    # the measured run: 223 of the epoch's 298 steps in 40 min
    PYTHONPATH=$PWD python benchmarks/train_encoder.py --max-groups 160 --out /tmp/encoder-smoke   # 1.5 minutes

The result is used with ``QA_MODEL_PATH=<folder>`` (an index root of its own keeps the base model's indexes).

Needs the training extra (``pip install -e '.[train]'``: datasets and accelerate, which sentence-transformers'
trainer uses); the product itself does not.

Training data (benchmarks/training_data.py, the same groups as benchmarks/train_reader.py): SQuAD 1.1 dev's
articles that are not in squad-v2.0-dev-half.json.gz and SelQA dev + test, one in 12 articles / questions
held out. Each question gives one (question, answer sentence, hard negative) triplet: the hard negative is
its group's first negative, a sentence of the answer's paragraph (or, for a one-sentence paragraph, the
tf-idf-closest sentence of the article's other paragraphs) for SQuAD and a labelled wrong candidate for
SelQA. Loss: MultipleNegativesRankingLoss (the other questions' answers and hard negatives in the batch are
negatives too), batches without duplicate texts, one epoch, linear warm-up and decay, fixed seed.

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
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.training_data import HELD_OUT_RULE, data_files, excluded_articles, group_accuracy, seeded_groups
from qa.config import Settings, bundled_model_path


@dataclass(frozen=True)
class HyperParameters:
    batch_size: int = 32  # triplets a step: 32 questions against 64 sentences
    learning_rate: float = 3e-5
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    scale: float = 20.0  # MultipleNegativesRankingLoss: cosine × scale are the logits
    epochs: int = 1
    negatives: int = 3  # negatives per group built (benchmarks/training_data.py); training uses the first
    seed: int = 13


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
    ap.add_argument("--out", type=Path, default=Path("models/encoder"))
    ap.add_argument("--max-groups", type=int, default=None, help="train on at most this many triplets (smoke runs)")
    ap.add_argument("--epochs", type=int, default=HyperParameters.epochs)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-minutes", type=float, default=None, help="stop training after this long")
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

    hp = HyperParameters(epochs=args.epochs)
    data_dir = Settings().shared_data_dir
    t0 = time.perf_counter()
    train, squad_dev, selqa_dev, counts = seeded_groups(hp, args.threads, args.max_groups)
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

    budget = args.max_minutes * 60 if args.max_minutes else None

    class TimeBudget(TrainerCallback):
        """Stops training once ``--max-minutes`` are spent (on a shared machine the steps a budget buys vary)."""

        start = 0.0

        def on_train_begin(self, *_, **__):
            self.start = time.perf_counter()

        def on_step_end(self, _args, state, control, **__):
            if budget is not None and time.perf_counter() - self.start > budget:
                print(f"  stopped at step {state.global_step}: time budget reached", flush=True)
                control.should_training_stop = True
            return control

    scratch = Path(tempfile.mkdtemp(prefix="train-encoder-"))
    training_args = SentenceTransformerTrainingArguments(
        output_dir=str(scratch), num_train_epochs=hp.epochs, per_device_train_batch_size=hp.batch_size,
        learning_rate=hp.learning_rate, warmup_ratio=hp.warmup_ratio, weight_decay=hp.weight_decay,
        lr_scheduler_type="linear", batch_sampler=BatchSamplers.NO_DUPLICATES, seed=hp.seed, data_seed=hp.seed,
        logging_steps=10, save_strategy="no", report_to="none", use_cpu=True, dataloader_num_workers=0,
        disable_tqdm=True)
    trainer = SentenceTransformerTrainer(model=model, args=training_args, train_dataset=triplets,
                                         loss=MultipleNegativesRankingLoss(model, scale=hp.scale),
                                         callbacks=[TimeBudget()])
    t1 = time.perf_counter()
    result = trainer.train()
    train_seconds = time.perf_counter() - t1
    steps = int(result.global_step)
    planned = trainer.state.max_steps
    print(f"trained {steps}/{planned} steps in {train_seconds / 60:.1f} min", flush=True)
    model.eval()
    figures["trained_fp32"] = held_out_figures(model, squad_dev, selqa_dev)
    print("trained fp32", json.dumps(figures["trained_fp32"]), flush=True)

    if args.out.exists():
        shutil.rmtree(args.out)
    dtype = "float32"
    if not args.fp32:
        model.half()
        model.save(str(args.out), safe_serialization=True)
        _config_float32(args.out)
        figures["saved_fp16"] = held_out_figures(load(args.out), squad_dev, selqa_dev)
        print("saved fp16", json.dumps(figures["saved_fp16"]), flush=True)
        if moved(figures["saved_fp16"], figures["trained_fp32"]) <= 0.5:
            dtype = "float16"
        else:  # fp16 costs more than half a point: keep fp32
            print("fp16 moves a held-out figure by more than 0.5 points: saving fp32", flush=True)
            shutil.rmtree(args.out)
            model.float()
    if dtype == "float32":
        model.save(str(args.out), safe_serialization=True)
    shutil.rmtree(scratch, ignore_errors=True)
    for name in ("README.md",):  # the model card sentence-transformers writes names the training run's details
        (args.out / name).unlink(missing_ok=True)

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
                             "schedule": "linear warm-up and decay over the epoch's steps",
                             "batch_sampler": "no duplicate texts in a batch", "torch_threads": args.threads,
                             "max_minutes": args.max_minutes, "max_groups": args.max_groups},
        "seed": hp.seed,
        "train_steps": steps,
        "planned_steps": planned,
        "train_minutes": round(train_seconds / 60, 1),
        "figures": figures,
    }
    # The evaluation sets' figures (docs/MODELS.md) are added under "evaluation" once measured.
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
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

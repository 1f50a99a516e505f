"""The reader: a small cross-encoder trained here (benchmarks/train_reader.py) that reads a question
together with each candidate sentence and gives one logit per pair, higher when the sentence answers.

The ranker's features see the question and the sentence apart (pooled vectors, shared terms, word-piece
matches); the reader attends across the two, which is what tells "the capital of Afghanistan" from a
sentence that only shares its names. It runs under onnxruntime with the `tokenizers` library, int8, on the
ranker's first few candidates only: no torch at question time.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class ReaderFiles:
    """A shipped reader's folder: the ONNX graph, its tokenizer and the manifest that says how it was made."""

    folder: Path

    @property
    def model(self) -> Path:
        return self.folder / "model.onnx"

    @property
    def tokenizer(self) -> Path:
        return self.folder / "tokenizer.json"

    def manifest(self) -> dict:
        return json.loads((self.folder / MANIFEST).read_text(encoding="utf-8"))

    def exists(self) -> bool:
        return self.model.exists() and self.tokenizer.exists()


class Reader:
    """Scores (question, sentence) pairs with the exported cross-encoder. Thread-safe (onnxruntime's
    ``run`` is; the tokenizer is used under a lock because its truncation settings are shared state)."""

    def __init__(self, model_path: Path, tokenizer_path: Path, *, max_length: int = 96, threads: int = 1):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        self.tokenizer = Tokenizer.from_file(str(tokenizer_path))
        # Longest first: a question alone may be longer than max_length (up to 1,000 characters are asked).
        self.tokenizer.enable_truncation(max_length, strategy="longest_first")
        self.tokenizer.enable_padding()
        self._inputs = {i.name for i in self.session.get_inputs()}
        self._lock = threading.Lock()

    def score(self, question: str, sentences: list[str]) -> np.ndarray:
        """One logit per sentence (float32), in the order given."""
        if not sentences:
            return np.zeros(0, dtype=np.float32)
        with self._lock:
            encodings = self.tokenizer.encode_batch([(question, s) for s in sentences])
        feeds = {"input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
                 "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
                 "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64)}
        (logits,) = self.session.run(None, {k: v for k, v in feeds.items() if k in self._inputs})
        return logits.astype(np.float32).reshape(-1)


@lru_cache(maxsize=4)
def load_reader(folder: Path, threads: int = 1) -> Reader:
    """The reader shipped in ``folder``, loaded once per process."""
    files = ReaderFiles(folder)
    max_length = files.manifest().get("hyper_parameters", {}).get("max_length", 96)
    return Reader(files.model, files.tokenizer, max_length=max_length, threads=threads)

"""Sentence embeddings from the model folder on disk (never a hub).

Two encoders give the same vectors: :class:`Encoder` runs sentence-transformers (torch) and is used to
build indexes; :class:`OnnxEncoder` runs the same network exported to ONNX with onnxruntime and the
model's own ``tokenizer.json``, and is used for queries because it starts in a fraction of the time
(no torch import). :func:`export_onnx` makes the ONNX file once and checks it against torch.
"""

from __future__ import annotations

import json
import os
import threading
import warnings
from pathlib import Path

import numpy as np

_EXPORT_LOCK = threading.Lock()
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class Encoder:
    """Unit-length float32 embeddings, so inner product in FAISS is cosine similarity."""

    def __init__(self, model_path: Path, *, batch_size: int = 64):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer  # heavy: only when encoding is needed
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        self.model_path = Path(model_path)
        self.batch_size = batch_size
        self._model = SentenceTransformer(str(self.model_path), device="cpu", local_files_only=True)
        dim_of = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        self.dim = int(dim_of())

    def encode(self, texts: list[str], *, show_progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vecs = self._model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=show_progress,
        )
        return np.ascontiguousarray(vecs, dtype=np.float32)

    def export_onnx(self, target: Path) -> None:
        """Write the transformer with mean pooling and L2 normalisation as one ONNX graph."""
        import torch

        transformer = self._model[0].auto_model.eval()

        class Pooled(torch.nn.Module):
            def __init__(self, model):
                super().__init__()
                self.model = model

            def forward(self, input_ids, attention_mask, token_type_ids):
                hidden = self.model(input_ids=input_ids, attention_mask=attention_mask,
                                    token_type_ids=token_type_ids).last_hidden_state
                mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                return torch.nn.functional.normalize(pooled, p=2, dim=1)

        sample = self._model.tokenizer(["an example", "a slightly longer example sentence"], padding=True,
                                       return_tensors="pt")
        axes = {name: {0: "batch", 1: "tokens"} for name in INPUTS}
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer notes about shapes the dynamic axes already cover
            torch.onnx.export(Pooled(transformer), tuple(sample[n] for n in INPUTS), str(tmp), input_names=list(INPUTS),
                              output_names=["embedding"], dynamic_axes={**axes, "embedding": {0: "batch"}},
                              opset_version=17, dynamo=False)
        os.replace(tmp, target)


class OnnxEncoder:
    """The exported model under onnxruntime: same vectors as :class:`Encoder`, no torch at query time."""

    def __init__(self, onnx_path: Path, model_path: Path, *, threads: int | None = None):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        max_len = json.loads((Path(model_path) / "sentence_bert_config.json").read_text()).get("max_seq_length", 256)
        self.tokenizer = Tokenizer.from_file(str(Path(model_path) / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_len)
        self.tokenizer.enable_padding()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or min(2, os.cpu_count() or 1)
        opts.inter_op_num_threads = 1
        # Idle worker threads must not spin: a server runs several encodes side by side on few cores.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        optimized = optimized_path(onnx_path)
        if optimized.exists():  # graph already optimised at export: loading skips that work
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            onnx_path = optimized
        self.session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        self.dim = int(self.session.get_outputs()[0].shape[-1])

    def encode(self, texts: list[str], *, batch_size: int = 32, **_) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if len(texts) > batch_size:
            return np.vstack([self.encode(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)])
        batch = self.tokenizer.encode_batch(texts)
        feeds = {
            "input_ids": np.array([e.ids for e in batch], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in batch], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in batch], dtype=np.int64),
        }
        return np.ascontiguousarray(self.session.run(None, feeds)[0], dtype=np.float32)


def optimized_path(onnx_path: Path) -> Path:
    return onnx_path.with_name(onnx_path.stem + ".optimized.onnx")


def export_onnx(encoder: Encoder, target: Path, check_texts: list[str], min_cosine: float = 0.9999) -> bool:
    """Export ``encoder`` to ``target`` unless already there, with a graph-optimised copy for fast loading;
    keep them only if they agree with torch."""
    import onnxruntime as ort

    with _EXPORT_LOCK:  # torch's exporter keeps global state: one export at a time per process
        if not target.exists():
            encoder.export_onnx(target)
    optimized = optimized_path(target)
    if not optimized.exists():
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        opts.optimized_model_filepath = str(optimized)
        ort.InferenceSession(str(target), opts, providers=["CPUExecutionProvider"])
    onnx = OnnxEncoder(target, encoder.model_path)
    a, b = encoder.encode(check_texts), onnx.encode(check_texts)
    if len(check_texts) and float((a * b).sum(axis=1).min()) < min_cosine:
        target.unlink(missing_ok=True)
        optimized.unlink(missing_ok=True)
        return False
    return True

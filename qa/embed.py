"""Sentence embeddings from the model folder on disk (never a hub).

Two encoders give the same vectors: :class:`Encoder` runs sentence-transformers (torch) and is used to
build indexes; :class:`OnnxEncoder` runs the same network exported to ONNX with onnxruntime and the
model's own ``tokenizer.json``, and is used for queries because it starts in a fraction of the time
(no torch import). :func:`export_onnx` makes the ONNX file once and checks it against torch.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import warnings
import weakref
from concurrent.futures import Future
from pathlib import Path

import numpy as np

from qa.config import Settings

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

    def __init__(self, onnx_path: Path, model_path: Path, *, threads: int | None = None, spinning: bool = False):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        max_len = json.loads((Path(model_path) / "sentence_bert_config.json").read_text()).get("max_seq_length", 256)
        self.tokenizer = Tokenizer.from_file(str(Path(model_path) / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_len)
        self.tokenizer.enable_padding()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or min(2, os.cpu_count() or 1)
        opts.inter_op_num_threads = 1
        # Idle worker threads must not spin in a server, which runs several encodes side by side on few cores;
        # a bulk encode (an index build) is the only work running and gains from it.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        optimized = optimized_path(onnx_path)
        if optimized.exists():  # graph already optimised at export: loading skips that work
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            onnx_path = optimized
        self.session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        self.dim = int(self.session.get_outputs()[0].shape[-1])

    def encode(self, texts: list[str], *, batch_size: int = 16, **_) -> np.ndarray:
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


class BatchingEncoder:
    """Encodes single questions asked at the same time in one model run (dynamic batching).

    A server answers many questions at once; run one by one, each pays the model's fixed cost per run.
    One worker thread takes every question waiting, up to ``max_batch``, and encodes them together: at
    low load a batch is a single question (no added wait), under load the cost per question falls several
    times (docs/HTTP.md). Lists of several texts (index builds) go straight to the wrapped encoder.
    """

    def __init__(self, encoder, max_batch: int = 16):
        self.encoder = encoder
        self.dim = encoder.dim
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._worker: threading.Thread | None = None
        self._start_lock = threading.Lock()
        # The worker holds the model, not this object: once an engine is dropped (a server reloads its
        # index), its batcher is collected, the worker is told to stop and the model is freed.
        weakref.finalize(self, self._queue.put, _STOP)

    def encode(self, texts: list[str], **kwargs) -> np.ndarray:
        if len(texts) != 1:
            return self.encoder.encode(texts, **kwargs)
        self._ensure_worker()
        future: Future = Future()
        self._queue.put((texts[0], future))
        return future.result()[None, :]

    def _ensure_worker(self) -> None:
        with self._start_lock:
            if self._worker is None:
                self._worker = threading.Thread(target=_serve_batches, args=(self._queue, self.encoder, self.max_batch),
                                                name="qa-query-batcher", daemon=True)
                self._worker.start()


_STOP = object()


def _serve_batches(requests: queue.SimpleQueue, encoder, max_batch: int) -> None:
    """The batching worker: every waiting question, up to ``max_batch``, in one model run."""
    while True:
        batch = [requests.get()]
        while len(batch) < max_batch:
            try:
                batch.append(requests.get_nowait())
            except queue.Empty:
                break
        stop = any(item is _STOP for item in batch)
        batch = [item for item in batch if item is not _STOP]
        if batch:
            try:
                vectors = encoder.encode([text for text, _ in batch])
            except Exception as exc:  # every waiting caller gets the error, the worker lives on
                for _, future in batch:
                    future.set_exception(exc)
            else:
                for (_, future), vector in zip(batch, vectors):
                    future.set_result(vector)
        if stop:
            return


def onnx_ready(settings: Settings) -> bool:
    """Whether encoding goes through the ONNX export: wanted, made and checked against torch (the
    graph-optimised copy is written by :func:`export_onnx` and removed again if the check fails)."""
    return settings.onnx_queries and optimized_path(settings.onnx_path()).exists()


def onnx_encoder(settings: Settings, *, bulk: bool = False) -> OnnxEncoder:
    """The exported model for queries (``query_threads``, threads that sleep when idle) or for a bulk encode
    such as an index build (every core, spinning threads)."""
    return OnnxEncoder(settings.onnx_path(), settings.resolved_model_path(),
                       threads=None if bulk else settings.query_threads, spinning=bulk)


def start_query_encoder(settings: Settings) -> Future | None:
    """The query encoder loading in a background thread, when the export is ready; None otherwise.

    onnxruntime releases the GIL while it builds a session (about 0.3 s here), so the caller can read its
    index meanwhile: a cold start waits for the slower of the two, not their sum.
    """
    if not onnx_ready(settings):
        return None
    future: Future = Future()

    def load() -> None:
        try:
            future.set_result(onnx_encoder(settings))
        except BaseException as exc:  # handed to whoever waits for the encoder
            future.set_exception(exc)

    # Not a daemon: a process that exits while onnxruntime is still building the session would abort
    # ("terminate called without an active exception"); exit waits for the load instead.
    threading.Thread(target=load, name="qa-query-model", daemon=False).start()
    return future


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

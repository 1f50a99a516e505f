"""Sentence embeddings from the model folder on disk (never a hub).

Two encoders give the same vectors: :class:`Encoder` runs sentence-transformers (torch) and is used to
build indexes; :class:`OnnxEncoder` runs the same network exported to ONNX with onnxruntime and the
model's own ``tokenizer.json``, and is used for queries because it starts in a fraction of the time
(no torch import). :func:`export_onnx` makes the ONNX file once and checks it against torch.

Both also give each text's *token* vectors (the model's contextual word-piece embeddings before pooling,
unit length, without [CLS] and [SEP]) with the word-piece ids: the ranker matches a question's word
pieces against a sentence's one by one (qa/rank.py, ``token_match``), which finds paraphrases that
neither the pooled vector nor the stems see.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import warnings
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from qa.config import Settings

_EXPORT_LOCK = threading.Lock()
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass(frozen=True)
class Embedded:
    """Texts encoded: one unit vector per text, and per text its word pieces' unit vectors and ids."""

    vectors: np.ndarray  # (texts, dim) float32
    tokens: list[np.ndarray]  # per text: (pieces, dim) float32
    token_ids: list[np.ndarray]  # per text: (pieces,) int32 word-piece ids

    @classmethod
    def empty(cls, dim: int) -> "Embedded":
        return cls(np.zeros((0, dim), dtype=np.float32), [], [])


def _unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _pieces(hidden: np.ndarray, ids: np.ndarray, mask: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per text, the unit token vectors and ids of its real word pieces (no padding, [CLS] or [SEP])."""
    tokens, token_ids = [], []
    for h, i, m in zip(hidden, ids, mask):
        n = int(m.sum())
        tokens.append(np.ascontiguousarray(_unit_rows(h[1 : n - 1]), dtype=np.float32))
        token_ids.append(i[1 : n - 1].astype(np.int32))
    return tokens, token_ids


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

    @property
    def vocabulary(self) -> list[str]:
        """Word pieces by id."""
        tokenizer = self._model.tokenizer
        return tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))

    def encode_tokens(self, texts: list[str]) -> Embedded:
        if not texts:
            return Embedded.empty(self.dim)
        out = self._model.encode(texts, batch_size=self.batch_size, output_value=None, show_progress_bar=False)
        vectors = _unit_rows(np.stack([o["sentence_embedding"].float().numpy() for o in out])).astype(np.float32)
        tokens, token_ids = [], []
        for o in out:
            t, i = _pieces(o["token_embeddings"].float().numpy()[None], o["input_ids"].numpy()[None],
                           o["attention_mask"].numpy()[None])
            tokens += t
            token_ids += i
        return Embedded(vectors, tokens, token_ids)

    def export_onnx(self, target: Path) -> None:
        """Write the transformer with mean pooling and L2 normalisation as one ONNX graph, whose second
        output is the (unnormalised) token vectors."""
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
                return torch.nn.functional.normalize(pooled, p=2, dim=1), hidden

        sample = self._model.tokenizer(["an example", "a slightly longer example sentence"], padding=True,
                                       return_tensors="pt")
        axes = {name: {0: "batch", 1: "tokens"} for name in INPUTS}
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer notes about shapes the dynamic axes already cover
            torch.onnx.export(Pooled(transformer), tuple(sample[n] for n in INPUTS), str(tmp), input_names=list(INPUTS),
                              output_names=["embedding", "tokens"],
                              dynamic_axes={**axes, "embedding": {0: "batch"}, "tokens": {0: "batch", 1: "tokens"}},
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
        return np.ascontiguousarray(self.session.run(["embedding"], self._feeds(texts))[0], dtype=np.float32)

    @cached_property
    def vocabulary(self) -> list[str]:
        """Word pieces by id."""
        return [self.tokenizer.id_to_token(i) for i in range(self.tokenizer.get_vocab_size())]

    def encode_tokens(self, texts: list[str], *, batch_size: int = 16) -> Embedded:
        if not texts:
            return Embedded.empty(self.dim)
        if len(texts) > batch_size:
            parts = [self.encode_tokens(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)]
            return Embedded(np.vstack([p.vectors for p in parts]), [t for p in parts for t in p.tokens],
                            [i for p in parts for i in p.token_ids])
        feeds = self._feeds(texts)
        vectors, hidden = self.session.run(["embedding", "tokens"], feeds)
        tokens, token_ids = _pieces(hidden, feeds["input_ids"], feeds["attention_mask"])
        return Embedded(np.ascontiguousarray(vectors, dtype=np.float32), tokens, token_ids)

    def _feeds(self, texts: list[str]) -> dict[str, np.ndarray]:
        batch = self.tokenizer.encode_batch(texts)
        return {
            "input_ids": np.array([e.ids for e in batch], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in batch], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in batch], dtype=np.int64),
        }


class BatchingEncoder:
    """Encodes single questions asked at the same time in one model run (dynamic batching).

    A server answers many questions at once; run one by one, each pays the model's fixed cost per run.
    One worker thread takes every question waiting, up to ``max_batch``, and encodes them together: at
    low load a batch is a single question (no added wait), under load the cost per question falls several
    times (docs/DECISIONS.md). Lists of several texts (index builds) go straight to the wrapped encoder.
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

    @property
    def vocabulary(self) -> list[str]:
        return self.encoder.vocabulary

    def encode(self, texts: list[str], **kwargs) -> np.ndarray:
        if len(texts) != 1:
            return self.encoder.encode(texts, **kwargs)
        return self.encode_tokens(texts).vectors

    def encode_tokens(self, texts: list[str], **kwargs) -> Embedded:
        if len(texts) != 1:
            return self.encoder.encode_tokens(texts, **kwargs)
        self._ensure_worker()
        future: Future = Future()
        self._queue.put((texts[0], future))
        vector, tokens, ids = future.result()
        return Embedded(vector[None, :], [tokens], [ids])

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
                done = encoder.encode_tokens([text for text, _ in batch])
            except Exception as exc:  # every waiting caller gets the error, the worker lives on
                for _, future in batch:
                    future.set_exception(exc)
            else:
                for (_, future), *result in zip(batch, done.vectors, done.tokens, done.token_ids):
                    future.set_result(tuple(result))
        if stop:
            return


def load_encoder(settings: Settings) -> Encoder:
    """The sentence-transformers encoder (torch) of the configured model."""
    return Encoder(settings.resolved_model_path())


def bulk_encoder(settings: Settings, sample: Callable[[], list[str]]):
    """The encoder an index build embeds with, and the torch encoder if it had to be loaded. The ONNX export
    gives the same vectors (checked when it is made, on ``sample()``) about twice as fast as torch and without
    torch's start-up, so builds use it once it exists; the first build exports it."""
    if onnx_ready(settings):
        return onnx_encoder(settings, bulk=True), None
    encoder = load_encoder(settings)
    if not settings.onnx_queries or not export_onnx(encoder, settings.onnx_path(), sample()):
        return encoder, encoder
    return onnx_encoder(settings, bulk=True), encoder


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

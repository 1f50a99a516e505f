"""The two encoders agree, and the query paths built on the ONNX one change no vector."""

from __future__ import annotations

import json
import threading
import time

import numpy as np

from qa.embed import BatchingEncoder, OnnxEncoder, start_query_encoder
from qa.index import passage_text
from tests.conftest import ROOT


def _onnx(engine) -> OnnxEncoder:
    s = engine.settings
    return OnnxEncoder(s.onnx_path(), s.resolved_model_path(), threads=1)


def _questions() -> list[str]:
    lines = (ROOT / "eval" / "gold.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["question"] for line in lines if line.strip()]


def test_onnx_and_torch_give_the_same_vectors(seed_engine, encoder):
    """Every sentence and passage of the seed corpus and every gold question: what both paths encode."""
    index = seed_engine.index
    texts = ([s.text for s in index.sentences] + [passage_text(p, index.sentences) for p in index.passages]
             + _questions())
    assert len(texts) >= 180
    a, b = encoder.encode(texts), _onnx(seed_engine).encode(texts)
    assert a.shape == b.shape == (len(texts), 384)
    assert float((a * b).sum(axis=1).min()) >= 0.9999


def test_onnx_and_torch_give_the_same_word_pieces(seed_engine, encoder):
    """Token vectors: unit length, one per word piece, without [CLS] and [SEP], alike on both paths."""
    texts = [s.text for s in seed_engine.index.sentences[:20]] + ["When did it reopen?"]
    a, b = encoder.encode_tokens(texts), _onnx(seed_engine).encode_tokens(texts)
    assert np.allclose(a.vectors, encoder.encode(texts), atol=1e-6)
    tokenizer = encoder._model.tokenizer
    for text, ta, tb, ia, ib in zip(texts, a.tokens, b.tokens, a.token_ids, b.token_ids):
        assert ia.tolist() == ib.tolist() == tokenizer(text)["input_ids"][1:-1]
        assert ta.shape == tb.shape == (len(ia), 384)
        assert np.allclose(np.linalg.norm(ta, axis=1), 1.0, atol=1e-5)
        assert float((ta * tb).sum(axis=1).min()) >= 0.9999
    assert tokenizer.convert_ids_to_tokens(b.token_ids[-1].tolist()) == ["when", "did", "it", "re", "##open", "?"]


def test_the_query_encoder_loads_in_the_background(seed_engine):
    future = start_query_encoder(seed_engine.settings)
    assert future is not None
    loaded = future.result(timeout=120)
    q = "When did the Torkham crossing reopen?"
    assert np.allclose(loaded.encode([q]), _onnx(seed_engine).encode([q]), atol=1e-6)


class _CountingEncoder:
    """The real ONNX encoder, recording the size of every model run."""

    def __init__(self, inner: OnnxEncoder):
        self.inner, self.dim, self.runs = inner, inner.dim, []
        self.held = 0  # questions in the first run, held until released
        self.release = threading.Event()

    def encode_tokens(self, texts, **kwargs):
        if not self.runs and not self.release.is_set():
            self.held = len(texts)
        self.release.wait(timeout=30)  # hold the first run so that the other questions queue up behind it
        self.runs.append(len(texts))
        return self.inner.encode_tokens(texts, **kwargs)


def test_concurrent_questions_are_encoded_together_with_unchanged_vectors(seed_engine):
    onnx = _onnx(seed_engine)
    counting = _CountingEncoder(onnx)
    batching = BatchingEncoder(counting, max_batch=8)
    questions = [f"What happened at the Torkham crossing on day {i}?" for i in range(12)]
    results: dict[int, np.ndarray] = {}

    def ask(i: int) -> None:
        results[i] = batching.encode([questions[i]])

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(questions))]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while counting.held + batching._queue.qsize() < len(questions):  # all asked: in the held run or waiting
        assert time.monotonic() < deadline, "the questions never reached the encoder"
        time.sleep(0.01)
    counting.release.set()
    for t in threads:
        t.join(timeout=60)
    assert sorted(results) == list(range(len(questions)))
    runs = counting.runs
    assert sum(runs) == len(questions) and max(runs) <= 8
    assert len(runs) <= 3 and runs[1:] and runs[1] == min(8, len(questions) - runs[0])  # the waiting ones together
    for i, q in enumerate(questions):
        assert results[i].shape == (1, 384)
        assert np.allclose(results[i], onnx.encode([q]), atol=1e-5)
    alone = batching.encode_tokens([questions[0]])  # a single question's word pieces come back with it
    direct = onnx.encode_tokens([questions[0]])
    assert np.array_equal(alone.token_ids[0], direct.token_ids[0])
    assert np.allclose(alone.tokens[0], direct.tokens[0], atol=1e-5)


def test_batching_passes_lists_through_and_reports_errors(seed_engine):
    class Failing:
        dim = 384

        def encode_tokens(self, texts, **kwargs):
            raise RuntimeError("model run failed")

    batching = BatchingEncoder(Failing())
    try:
        batching.encode(["a question"])
    except RuntimeError as exc:
        assert "model run failed" in str(exc)
    else:
        raise AssertionError("the error of the model run must reach the caller")
    onnx = BatchingEncoder(_onnx(seed_engine))
    texts = ["one sentence", "and another one"]
    assert onnx.encode(texts).shape == (2, 384) and onnx._worker is None  # a list never waits for the worker


def test_a_dropped_batcher_stops_its_worker_and_frees_the_model(seed_engine):
    import gc
    import weakref

    onnx = _onnx(seed_engine)
    model = weakref.ref(onnx)
    batching = BatchingEncoder(onnx)
    batching.encode(["Who is Faiz Hamid?"])
    worker = batching._worker
    assert worker.is_alive()
    del batching, onnx
    gc.collect()
    worker.join(timeout=30)
    assert not worker.is_alive() and model() is None

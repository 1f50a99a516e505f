"""Stand-ins for tests: conversation turns citing made-up sentences (:func:`turn`, :func:`cite`), and the
sentence encoder, so that ranking, abstention and conversation logic can be tested
without loading all-MiniLM-L6-v2 (the fast tier: ``pytest -m "not model"``).

:class:`HashedEncoder` has the interface of :class:`qa.embed.OnnxEncoder` (``dim``, ``vocabulary``,
``encode``, ``encode_tokens``) and splits text with the model's real tokenizer (a small JSON file shipped
with the model package), so word-piece ids, the vocabulary and ``rank.name_pieces`` behave as in
production. Each word piece gets a fixed pseudo-random unit vector seeded by its id; a text's vector is the
unit mean of its pieces'. Texts that share pieces are therefore close and unrelated texts nearly
orthogonal: a bag of word pieces, deterministic across runs and machines, with no notion of paraphrase.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

from qa.config import bundled_model_path
from qa.conversation.store import Turn, utc_now
from qa.embed import Embedded
from qa.types import Citation


@lru_cache(maxsize=1)
def _tokenizer(model_path: Path):
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_path / "tokenizer.json"))
    max_len = json.loads((model_path / "sentence_bert_config.json").read_text()).get("max_seq_length", 256)
    tokenizer.enable_truncation(max_len - 2)  # room for [CLS] and [SEP], which are never returned
    tokenizer.no_padding()
    return tokenizer


class HashedEncoder:
    """Deterministic bag-of-word-pieces vectors with the encoders' interface (see the module docstring)."""

    def __init__(self, dim: int = 384, model_path: Path | None = None):
        self.dim = dim
        self.tokenizer = _tokenizer(model_path or bundled_model_path())
        self._rows: dict[int, np.ndarray] = {}

    @property
    def vocabulary(self) -> list[str]:
        return [self.tokenizer.id_to_token(i) for i in range(self.tokenizer.get_vocab_size())]

    def _piece_vectors(self, ids: list[int]) -> np.ndarray:
        for i in ids:
            if i not in self._rows:
                v = np.random.default_rng(i).standard_normal(self.dim)
                self._rows[i] = (v / np.linalg.norm(v)).astype(np.float32)
        return np.stack([self._rows[i] for i in ids]) if ids else np.zeros((0, self.dim), np.float32)

    def encode_tokens(self, texts: list[str], **_) -> Embedded:
        if not texts:
            return Embedded.empty(self.dim)
        encodings = self.tokenizer.encode_batch(texts, add_special_tokens=False)
        tokens = [self._piece_vectors(e.ids) for e in encodings]
        means = np.stack([t.mean(axis=0) if len(t) else self._piece_vectors([0])[0] for t in tokens])
        vectors = means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
        return Embedded(np.ascontiguousarray(vectors, dtype=np.float32), tokens,
                        [np.asarray(e.ids, dtype=np.int32) for e in encodings])

    def encode(self, texts: list[str], **_) -> np.ndarray:
        return self.encode_tokens(texts).vectors


TORKHAM = "004_efe84b1d27e376f8.txt"


def cite(doc_id: str = TORKHAM, index: int = 0) -> Citation:
    return Citation(doc_id, "a title", index, 10 * index, 10 * index + 9)


def turn(question: str, understood_as: str | None = None, texts: list[str] | None = None) -> Turn:
    texts = texts or []
    return Turn(question, understood_as, bool(texts), [cite(index=i) for i in range(len(texts))],
                utc_now(), texts)


def engine_over(folder: Path, articles: dict[str, str], profile=None):
    """An engine over ``articles`` (file name → text) written into ``folder``/corpus, built with
    :class:`HashedEncoder` (no model), answering with ``profile`` (default: the shipped one)."""
    from qa import index as index_mod
    from qa.config import Settings
    from qa.engine import Engine, build_spec
    from qa.ingest import load_corpus

    corpus = folder / "corpus"
    corpus.mkdir()
    for name, text in articles.items():
        (corpus / name).write_text(text, encoding="utf-8")
    settings = Settings(corpus_dir=corpus, index_root=folder / "index", data_dir=folder / "var", onnx_queries=False)
    encoder = HashedEncoder()
    index_mod.build(load_corpus(corpus), encoder, build_spec(settings), settings.index_dir())
    return Engine(settings, index_mod.load(settings.index_dir(), nprobe=settings.ann_nprobe), encoder, profile=profile)

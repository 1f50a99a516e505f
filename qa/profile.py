"""The ranking profile: every fitted or hand-set scoring parameter of qa, by name, in one versioned file.

A profile is a JSON file (``qa/profiles/<name>.json``, or any path): how many passages each retriever hands
on and how they are fused, the weight of each sentence feature per retriever, the abstention model per
retriever with its threshold and the reader's term, the reader's re-ranking, the learned follow-up model and
the conversation reading's gains. :func:`load_profile` refuses a file with an unknown or a missing name
anywhere, so a weight can neither be misspelt nor silently fall back to a default. Tuning and training
scripts write profiles (:func:`write_profile`); ``QA_PROFILE`` chooses the one in service, and its name and
hash go into every ``qa eval`` report.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"
DEFAULT_PROFILE = "default"
FORMAT = 1  # the layout of a profile file; a file of another format is refused

RETRIEVERS = ("hybrid", "bm25", "dense")
# A sentence's score is the sum of these features times the weights of its retriever (qa/rank.py).
SENTENCE_FEATURES = ("dense", "lexical", "answer_type", "heading_penalty", "context", "context_dense", "token",
                     "context_token")


class ProfileError(ValueError):
    """A profile that cannot be used as it is; the message names the file and the offending key."""


@dataclass(frozen=True)
class Ranking:
    """Sentence ranking besides the per-retriever weights."""

    candidate_passages: int  # passages each retriever hands on before fusion
    rrf_k: int  # reciprocal rank fusion's k
    token_depth: int  # sentences, best by the other features, that the word-piece match re-scores
    name_context: float  # share of the word-piece match that a question's names take from the neighbours
    answer_kinds: dict[str, float]  # the cue weight of each answer kind beyond number, date and person
    duplicate_cosine: float  # cosine from which two sentences may be the same statement (also_in)
    near_cosine: float  # cosine from which another document's sentence is compared for a disagreement
    near_limit: int  # closest sentences of other documents the per-build table keeps (0: none)


@dataclass(frozen=True)
class Abstention:
    """The decision to answer: per retriever a logistic model over named features (qa.rank.DECISION_FEATURES,
    plus ``bias``), the reader's term, and the thresholds under which the answer is "not found"."""

    models: dict[str, dict[str, float]]
    threshold: float
    threshold_within: float  # for a question answered within given sentences (a follow-up kept to its topic)
    token_match_centre: float  # the best sentence's word-piece match is read relative to this
    reader_weight: float  # the reader's logit (clipped to ± reader_logit_bound, minus reader_centre) × this
    reader_centre: float
    reader_logit_bound: float


@dataclass(frozen=True)
class Reader:
    """The trained reader's part in the ranking (hybrid only)."""

    depth: int  # sentences, best by the ranker, it re-reads (0: never read)
    weight: float  # its logit's weight in their scores (0: it reads only for the decision)


@dataclass(frozen=True)
class Profile:
    name: str
    version: int
    sha256: str  # of the file's bytes: what a report or an index records
    about: str
    ranking: Ranking
    sentence_weights: dict[str, dict[str, float]]  # retriever → feature of SENTENCE_FEATURES → weight
    abstention: Abstention
    reader: Reader
    followup_model: dict[str, float]  # qa.conversation.FOLLOWUP_FEATURES → weight (hybrid follow-ups)
    conversation: dict[str, Any]  # the fields of qa.conversation.Reading
    provenance: dict[str, Any]  # how its fitted parts were made: commands, dates, data, figures (free form)

    @property
    def label(self) -> str:
        """``name@hash``: how a report names the profile it measured."""
        return f"{self.name}@{self.sha256[:12]}"

    def to_dict(self) -> dict:
        """The profile as its file holds it (a copy: changing it changes no loaded profile)."""
        a = self.abstention
        return copy.deepcopy({"format": FORMAT, "name": self.name, "version": self.version, "about": self.about,
                "ranking": _fields(self.ranking), "sentence_weights": self.sentence_weights,
                "abstention": {"models": a.models, "threshold": a.threshold, "threshold_within": a.threshold_within,
                               "token_match_centre": a.token_match_centre,
                               "reader": {"weight": a.reader_weight, "centre": a.reader_centre,
                                          "logit_bound": a.reader_logit_bound}},
                "reader": _fields(self.reader), "followup_model": self.followup_model,
                "conversation": self.conversation, "provenance": self.provenance})

    def updated(self, changes: dict[str, Any], name: str | None = None) -> "Profile":
        """This profile with ``changes`` (dotted paths into its JSON form, e.g. ``"reader.weight"`` or
        ``"sentence_weights.hybrid.token"``) applied and checked as a file would be."""
        data = self.to_dict()
        for path, value in changes.items():
            *parents, last = path.split(".")
            node = data
            for key in parents:
                if not isinstance(node, dict) or key not in node:
                    raise ProfileError(f"no {path!r} in a profile")
                node = node[key]
            if not isinstance(node, dict) or last not in node:
                raise ProfileError(f"no {path!r} in a profile")
            node[last] = value
        if name is not None:
            data["name"] = name
        text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
        return parse_profile(text, f"{data['name']} (changed)")


def _fields(obj) -> dict:
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


def profile_path(choice: str | Path) -> Path:
    """A profile name (``default``: ``qa/profiles/default.json``) or a path to a profile file."""
    text = str(choice)
    if "/" not in text and not text.endswith(".json"):
        return PROFILES_DIR / f"{text}.json"
    return Path(choice)


@lru_cache(maxsize=16)
def _load(path: Path, mtime_ns: int) -> Profile:
    return parse_profile(path.read_text(encoding="utf-8"), str(path))


def load_profile(choice: str | Path = DEFAULT_PROFILE) -> Profile:
    """The profile named ``choice`` (or at that path), checked: read once per process and file version."""
    path = profile_path(choice).resolve()
    try:
        return _load(path, path.stat().st_mtime_ns)
    except FileNotFoundError:
        raise ProfileError(f"no profile {str(choice)!r} ({path})") from None


def write_profile(profile: Profile, path: Path) -> Path:
    """Write ``profile`` as a profile file (what tuning and training scripts produce)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(profile.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def parse_profile(text: str, where: str) -> Profile:
    """A profile from its JSON text; :class:`ProfileError` naming ``where`` and the key on any problem."""
    from qa.answer_checks import CHECKS, RANKED_KINDS, kind_names
    from qa.conversation.reading import FOLLOWUP_FEATURES, Reading
    from qa.rank import FEATURES

    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ProfileError(f"{where}: not JSON ({exc})") from None
    check = _Checker(where)
    if isinstance(data, dict):
        data = {"provenance": {}, **data}  # the one optional part
    top = check.keys(data, "", ("format", "name", "version", "about", "ranking", "sentence_weights", "abstention",
                                "reader", "followup_model", "conversation", "provenance"))
    if not isinstance(top["provenance"], dict):
        raise ProfileError(f"{where}: provenance must be an object")
    if top["format"] != FORMAT:
        raise ProfileError(f"{where}: format {top['format']!r}, this qa reads format {FORMAT}")
    ranking = check.keys(top["ranking"], "ranking", [f.name for f in fields(Ranking)])
    extra_kinds = tuple(k for k in kind_names() if k not in RANKED_KINDS)
    ranking["answer_kinds"] = check.numbers(ranking["answer_kinds"], "ranking.answer_kinds", extra_kinds)
    weights = check.keys(top["sentence_weights"], "sentence_weights", RETRIEVERS)
    sentence = {mode: check.numbers(weights[mode], f"sentence_weights.{mode}", SENTENCE_FEATURES)
                for mode in RETRIEVERS}
    abstention = check.keys(top["abstention"], "abstention", ("models", "threshold", "threshold_within",
                                                               "token_match_centre", "reader"))
    models = check.keys(abstention["models"], "abstention.models", RETRIEVERS)
    known = ("bias", *FEATURES, *CHECKS)
    for mode in RETRIEVERS:  # a model names the features it weighs; any it leaves out weighs 0
        unknown = sorted(set(models[mode]) - set(known))
        if unknown:
            raise ProfileError(f"{where}: abstention.models.{mode} weighs unknown features {unknown} "
                               f"(known: {', '.join(known)})")
        check.numbers(models[mode], f"abstention.models.{mode}", tuple(models[mode]))
    reader_term = check.numbers(abstention["reader"], "abstention.reader", ("weight", "centre", "logit_bound"))
    reader = check.numbers(top["reader"], "reader", ("depth", "weight"))
    followup = check.numbers(top["followup_model"], "followup_model", FOLLOWUP_FEATURES)
    conversation = check.keys(top["conversation"], "conversation",
                              [f.name for f in fields(Reading) if f.name != "followup_model"])
    try:
        profile = Profile(
            name=str(top["name"]), version=int(top["version"]), sha256=hashlib.sha256(text.encode()).hexdigest(),
            about=str(top["about"]),
            ranking=Ranking(candidate_passages=int(ranking["candidate_passages"]), rrf_k=int(ranking["rrf_k"]),
                            token_depth=int(ranking["token_depth"]), name_context=float(ranking["name_context"]),
                            answer_kinds=ranking["answer_kinds"], duplicate_cosine=float(ranking["duplicate_cosine"]),
                            near_cosine=float(ranking["near_cosine"]), near_limit=int(ranking["near_limit"])),
            sentence_weights=sentence,
            abstention=Abstention(models={m: {k: float(v) for k, v in models[m].items()} for m in RETRIEVERS},
                                  threshold=float(abstention["threshold"]),
                                  threshold_within=float(abstention["threshold_within"]),
                                  token_match_centre=float(abstention["token_match_centre"]),
                                  reader_weight=reader_term["weight"], reader_centre=reader_term["centre"],
                                  reader_logit_bound=reader_term["logit_bound"]),
            reader=Reader(depth=int(reader["depth"]), weight=float(reader["weight"])),
            followup_model=followup, conversation=conversation, provenance=top["provenance"])
    except (TypeError, ValueError) as exc:
        raise ProfileError(f"{where}: {exc}") from None
    for name, value in (("abstention.threshold", profile.abstention.threshold),
                        ("abstention.threshold_within", profile.abstention.threshold_within)):
        if not 0.0 <= value <= 1.0:
            raise ProfileError(f"{where}: {name} is {value}, not within 0 and 1")
    Reading(**conversation, followup_model=None)  # its own checks
    return profile


class _Checker:
    def __init__(self, where: str):
        self.where = where

    def keys(self, node: Any, path: str, expected) -> dict:
        """``node`` as a dict holding exactly the ``expected`` keys."""
        if not isinstance(node, dict):
            raise ProfileError(f"{self.where}: {path or 'the file'} must be an object")
        unknown = sorted(set(node) - set(expected))
        missing = [k for k in expected if k not in node]
        if unknown:
            raise ProfileError(f"{self.where}: unknown name(s) {unknown} in {path or 'the file'}")
        if missing:
            raise ProfileError(f"{self.where}: missing name(s) {missing} in {path or 'the file'}")
        return dict(node)

    def numbers(self, node: Any, path: str, expected) -> dict[str, float]:
        """``node`` as a dict of exactly the ``expected`` keys, each a number."""
        values = self.keys(node, path, expected)
        for key, value in values.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ProfileError(f"{self.where}: {path}.{key} must be a number, not {value!r}")
        return {k: float(values[k]) for k in expected}


def configured(overrides: dict[str, Any], folder: Path, name: str = "variant"):
    """Settings with ``overrides`` as benchmarks take them (``--set name=value``): a name with a dot is a path
    into the profile (``reader.weight``, ``sentence_weights.hybrid.token``), any other a Settings field
    (``reader_dir``, ``profile``). A changed profile is written to ``folder`` as ``<name>.json`` and chosen."""
    from qa.config import Settings

    fields = {k: v for k, v in overrides.items() if "." not in k}
    changes = {k: v for k, v in overrides.items() if "." in k}
    settings = Settings(**fields)
    if changes:
        changed = load_profile(settings.profile).updated(changes, name=name)
        settings = settings.model_copy(update={"profile": str(write_profile(changed, folder / f"{name}.json"))})
    return settings

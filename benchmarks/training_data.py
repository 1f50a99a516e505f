"""The training data of the models trained here (benchmarks/train_reader.py, benchmarks/train_encoder.py).

Only the data that ../shared/data/README.md allows for training: SQuAD 1.1 dev's articles that are not in
squad-v2.0-dev-half.json.gz (matched by title; those 16 articles are the held-out SQuAD evaluation set) and
SelQA dev + test. Never WikiQA, CoQA or the seed gold set. A few of the allowed articles and SelQA questions
(crc32 of title / question, about one in 12) are held out to measure a trained model.

A :class:`Group` is one question with its answer sentence first, then its hard negatives: for SQuAD, sentences
of the same paragraph and the sentences of other paragraphs of the article closest to the question by tf-idf
(what a retriever would bring); for SelQA, its labelled wrong candidates.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qa.datasets import SQUAD_FILE
from qa.ingest import split_sentences
from qa.types import Document

SQUAD11 = "squad/dev-v1.1.reconstructed.json.gz"
SELQA = ("selqa/selqa-ass-dev.json.gz", "selqa/selqa-ass-test.json.gz")
HELD_OUT_RULE = "SQuAD 1.1 articles and SelQA questions with crc32(title or question) % 12 == 0"


@dataclass(frozen=True)
class Group:
    """One question with its answer sentence first, then its negatives."""

    question: str
    sentences: tuple[str, ...]
    source: str


def held_out(key: str, share: int = 12) -> bool:
    """A fixed, content-derived hold-out: about one in ``share``."""
    return zlib.crc32(key.encode()) % share == 0


def squad_groups(data_dir: Path, negatives: int, rng: random.Random) -> tuple[list[Group], list[Group]]:
    """(train, held-out) groups from the SQuAD 1.1 dev articles that SQuAD-half does not hold. About half the
    negatives (rounded up) are sentences of the answer's paragraph, the rest the tf-idf-closest sentences of
    the article's other paragraphs (all of them when the paragraph has no other sentence)."""
    with gzip.open(data_dir / SQUAD_FILE, "rt", encoding="utf-8") as fh:
        evaluation_titles = {a["title"] for a in json.load(fh)["data"]}
    with gzip.open(data_dir / SQUAD11, "rt", encoding="utf-8") as fh:
        articles = [a for a in json.load(fh)["data"] if a["title"] not in evaluation_titles]
    from sklearn.feature_extraction.text import TfidfVectorizer

    train, dev = [], []
    for article in articles:
        paragraphs = [split_sentences(Document(f"p{p}", "", para["context"]), layout=False)
                      for p, para in enumerate(article["paragraphs"])]
        texts = [s.text for sents in paragraphs for s in sents]
        owner = np.array([p for p, sents in enumerate(paragraphs) for _ in sents])
        questions = [(p, qa) for p, para in enumerate(article["paragraphs"]) for qa in para["qas"]]
        tfidf = TfidfVectorizer(stop_words="english", sublinear_tf=True).fit(texts)
        vectors = tfidf.transform(texts)
        similarity = (tfidf.transform([qa["question"] for _, qa in questions]) @ vectors.T).toarray()
        offset = np.cumsum([0] + [len(s) for s in paragraphs])
        target = dev if held_out(article["title"]) else train
        for (p, qa), sims in zip(questions, similarity):
            at = qa["answers"][0]["answer_start"]
            gold = [k for k, s in enumerate(paragraphs[p]) if s.start <= at < s.end]
            if not gold:
                continue
            positive = offset[p] + gold[0]
            same = [int(offset[p] + k) for k in range(len(paragraphs[p])) if k != gold[0]]
            near = [int(i) for i in np.argsort(-sims) if owner[i] != p][:negatives]
            picked = rng.sample(same, min(len(same), (negatives + 1) // 2))
            picked += [i for i in near if i not in picked][: negatives - len(picked)]
            target.append(Group(qa["question"], (texts[positive], *(texts[i] for i in picked)), "squad11"))
    return train, dev


def selqa_groups(data_dir: Path, negatives: int, rng: random.Random) -> tuple[list[Group], list[Group]]:
    """(train, held-out) groups from SelQA: each answer sentence against the question's wrong candidates."""
    train, dev = [], []
    for name in SELQA:
        with gzip.open(data_dir / name, "rt", encoding="utf-8") as fh:
            items = json.load(fh)
        for item in items:
            wrong = [c for k, c in enumerate(item["candidates"]) if k not in item["answers"]]
            if not item["answers"] or not wrong:
                continue
            target = dev if held_out(item["question"]) else train
            for k in item["answers"][:1]:
                picked = rng.sample(wrong, min(len(wrong), negatives))
                target.append(Group(item["question"], (item["candidates"][k], *picked), "selqa"))
    return train, dev


def training_groups(data_dir: Path, negatives: int, seed: int) -> tuple[list[Group], list[Group], list[Group], dict]:
    """(train, SQuAD held-out, SelQA held-out, counts): both sources' groups, the training ones shuffled with
    ``seed``. The same seed and ``negatives`` give the same groups in every script."""
    rng = random.Random(seed)
    squad_train, squad_dev = squad_groups(data_dir, negatives, rng)
    selqa_train, selqa_dev = selqa_groups(data_dir, negatives, rng)
    train = squad_train + selqa_train
    rng.shuffle(train)
    return train, squad_dev, selqa_dev, {"squad11": len(squad_train), "selqa": len(selqa_train)}


def seeded_groups(hp, threads: int, max_groups: int | None) -> tuple[list[Group], list[Group], list[Group], dict]:
    """:func:`training_groups` for a training script: torch seeded with ``hp.seed`` and on ``threads``, the
    shared data read from ``Settings().shared_data_dir``, and with ``max_groups`` (a smoke run) that many
    training groups and half as many held-out ones of each source."""
    import torch

    from qa.config import Settings

    torch.manual_seed(hp.seed)
    torch.set_num_threads(threads)
    train, squad_dev, selqa_dev, counts = training_groups(Settings().shared_data_dir, hp.negatives, hp.seed)
    if max_groups:
        train = train[:max_groups]
        squad_dev, selqa_dev = squad_dev[: max_groups // 2], selqa_dev[: max_groups // 2]
    return train, squad_dev, selqa_dev, counts


def group_accuracy(score, groups: list[Group]) -> dict[str, float]:
    """Share of held-out groups whose answer sentence scores highest, and its mean reciprocal rank;
    ``score(question, sentences)`` gives one score per sentence."""
    hits, rr = [], []
    for g in groups:
        s = np.asarray(score(g.question, list(g.sentences)))
        rank = 1 + int((s[1:] > s[0]).sum())
        hits.append(rank == 1)
        rr.append(1.0 / rank)
    return {"groups": len(groups), "hit@1": round(float(np.mean(hits)), 4), "mrr": round(float(np.mean(rr)), 4)}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def data_files(data_dir: Path) -> dict[str, str]:
    """The training files with their sha256."""
    return {name: sha256(data_dir / name) for name in (SQUAD11, *SELQA)}


def excluded_articles(data_dir: Path) -> dict[str, str]:
    """The evaluation file whose articles are excluded by title, with its sha256."""
    return {SQUAD_FILE: sha256(data_dir / SQUAD_FILE)}

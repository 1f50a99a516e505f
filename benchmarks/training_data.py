"""The training data of the models trained here (benchmarks/train_reader.py, benchmarks/train_encoder.py).

Only the data that ../shared/data/README.md allows for training: SQuAD 1.1 dev's articles that are not in
squad-v2.0-dev-half.json.gz (matched by title; those 16 articles are the held-out SQuAD evaluation set) and
SelQA dev + test. Never WikiQA, CoQA, SQuAD-half or the seed gold set. A few of the allowed articles and SelQA
questions (crc32 of title / question, about one in 12) are held out to measure a trained model.

A :class:`Group` is one question with its answer sentence first, then negatives chosen to teach the failure
the product must avoid, a sentence that names the question's subject and does not answer it:

- ``same_article``: sentences of the question's own article most like the question by tf-idf (they name its
  subject: its entities and rarest terms), other than the answer's; for SelQA its labelled wrong candidates,
  which come from the same article section;
- ``other_article``: the sentences of other articles most like the question (the same subject elsewhere);
- ``off_topic``: a random sentence of another article.

Never a negative that holds an answer's text (SQuAD gives every annotator's answer; a sentence containing
one of them, case folded, is never a negative). A share of the questions (``no_answer_share``) also gives a
group without an answer (``answered`` False): the question against sentences of other articles only (the
most alike first), so that the pair logit learns to refuse.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from qa.datasets import SQUAD_FILE
from qa.ingest import split_sentences
from qa.types import Document

SQUAD11 = "squad/dev-v1.1.reconstructed.json.gz"
SELQA = ("selqa/selqa-ass-dev.json.gz", "selqa/selqa-ass-test.json.gz")
HELD_OUT_RULE = "SQuAD 1.1 articles and SelQA questions with crc32(title or question) % 12 == 0"
CANDIDATE_POOL = 6  # a negative of a kind is drawn from the this-many most alike sentences of that kind


@dataclass(frozen=True)
class Group:
    """One question with its answer sentence first (when ``answered``), then its negatives."""

    question: str
    sentences: tuple[str, ...]
    source: str
    answered: bool = True


@dataclass(frozen=True)
class NegativeMix:
    """How many negatives of each kind a group gets, and the share of questions that also give a group
    without an answer (``no_answer_size`` sentences of other articles)."""

    same_article: int = 2
    other_article: int = 1
    off_topic: int = 1
    no_answer_share: float = 0.2
    no_answer_size: int = 4

    @property
    def negatives(self) -> int:
        return self.same_article + self.other_article + self.off_topic


def held_out(key: str, share: int = 12) -> bool:
    """A fixed, content-derived hold-out: about one in ``share``."""
    return zlib.crc32(key.encode()) % share == 0


class SentencePool:
    """Every candidate sentence of a source with the article it belongs to, and a tf-idf space to find the
    ones most like a question."""

    def __init__(self, texts: list[str], article: np.ndarray):
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.texts, self.article = texts, article
        self.tfidf = TfidfVectorizer(stop_words="english", sublinear_tf=True).fit(texts)
        self.vectors = self.tfidf.transform(texts)

    def similarity(self, questions: list[str]) -> np.ndarray:
        return (self.tfidf.transform(questions) @ self.vectors.T).toarray()

    def negatives(self, sims: np.ndarray, article: int, mix: NegativeMix, rng: random.Random, *,
                  banned: set[int], answers: list[str], same_article: list[int] | None = None) -> list[int]:
        """Sentence ids: ``mix.same_article`` of ``same_article`` (default: the article's sentences most like
        the question), ``mix.other_article`` of the other articles' most alike, ``mix.off_topic`` at random from
        other articles; none in ``banned`` (the answer sentences) nor holding one of ``answers``' texts."""
        order = np.argsort(-sims, kind="stable")
        mine = self.article[order] == article
        if same_article is None:
            same_article = [int(i) for i in order[mine] if sims[i] > 0]
        same = self._allowed(same_article, banned, answers)
        other = self._allowed([i for i in order[~mine][: CANDIDATE_POOL * 4].tolist() if sims[i] > 0], banned, answers)
        picked = rng.sample(same, min(len(same), mix.same_article))
        picked += rng.sample(other, min(len(other), mix.other_article))
        return picked + self.off_topic(article, mix.off_topic, rng, banned | set(picked), answers)

    def off_topic(self, article: int, n: int, rng: random.Random, banned: set[int], answers: list[str]) -> list[int]:
        """``n`` random sentences of other articles (fewer if the draws keep failing)."""
        out: list[int] = []
        for _ in range(n * 20):
            if len(out) == n:
                break
            i = rng.randrange(len(self.texts))
            if self.article[i] != article and i not in out and self._allowed([i], banned, answers):
                out.append(i)
        return out

    def no_answer(self, sims: np.ndarray, article: int, mix: NegativeMix, rng: random.Random,
                  banned: set[int], answers: list[str]) -> list[int]:
        """Sentences of other articles only: some of the most alike, the rest off-topic."""
        order = np.argsort(-sims, kind="stable")
        other = self._allowed([i for i in order[self.article[order] != article][: CANDIDATE_POOL * 4].tolist()
                               if sims[i] > 0], banned, answers)
        picked = rng.sample(other, min(len(other), mix.no_answer_size - 1))
        return picked + self.off_topic(article, mix.no_answer_size - len(picked), rng, banned | set(picked), answers)

    def _allowed(self, ids: list[int], banned: set[int], answers: list[str]) -> list[int]:
        """The first :data:`CANDIDATE_POOL` of ``ids`` that are not banned and hold no answer's text."""
        return [int(i) for i in ids if int(i) not in banned and not holds_answer(self.texts[i], answers)][:CANDIDATE_POOL]


def holds_answer(text: str, answers: list[str]) -> bool:
    folded = text.casefold()
    return any(a.strip() and a.strip().casefold() in folded for a in answers)


def squad_groups(data_dir: Path, mix: NegativeMix, rng: random.Random) -> tuple[list[Group], list[Group]]:
    """(train, held-out) groups from the SQuAD 1.1 dev articles that SQuAD-half does not hold (the answer
    sentence: the one holding ``answer_start``, split by the project's own ``split_sentences``)."""
    with gzip.open(data_dir / SQUAD_FILE, "rt", encoding="utf-8") as fh:
        evaluation_titles = {a["title"] for a in json.load(fh)["data"]}
    with gzip.open(data_dir / SQUAD11, "rt", encoding="utf-8") as fh:
        articles = [a for a in json.load(fh)["data"] if a["title"] not in evaluation_titles]
    texts, owner, offsets = [], [], []  # offsets[a][p]: id of paragraph p's first sentence
    spans = []
    for a, article in enumerate(articles):
        offsets.append([])
        for p, para in enumerate(article["paragraphs"]):
            sentences = split_sentences(Document(f"p{p}", "", para["context"]), layout=False)
            offsets[-1].append(len(texts))
            spans.append([(s.start, s.end) for s in sentences])
            texts += [s.text for s in sentences]
            owner += [a] * len(sentences)
    pool = SentencePool(texts, np.array(owner))
    train, dev = [], []
    paragraph = 0
    for a, article in enumerate(articles):
        target = dev if held_out(article["title"]) else train
        questions = [(p, qa) for p, para in enumerate(article["paragraphs"]) for qa in para["qas"]]
        similarity = pool.similarity([qa["question"] for _, qa in questions])
        for (p, qa), sims in zip(questions, similarity):
            at = qa["answers"][0]["answer_start"]
            first = offsets[a][p]
            gold = [first + k for k, (s, e) in enumerate(spans[paragraph + p]) if s <= at < e]
            if not gold:
                continue
            answers = [ans["text"] for ans in qa["answers"]]
            picked = pool.negatives(sims, a, mix, rng, banned={gold[0]}, answers=answers)
            target.append(Group(qa["question"], (texts[gold[0]], *(texts[i] for i in picked)), "squad11"))
            if rng.random() < mix.no_answer_share:
                empty = pool.no_answer(sims, a, mix, rng, {gold[0]}, answers)
                target.append(Group(qa["question"], tuple(texts[i] for i in empty), "squad11", answered=False))
        paragraph += len(article["paragraphs"])
    return train, dev


def selqa_groups(data_dir: Path, mix: NegativeMix, rng: random.Random) -> tuple[list[Group], list[Group]]:
    """(train, held-out) groups from SelQA: each question's first answer sentence against its labelled wrong
    candidates (same article section), the most alike candidates of other articles and an off-topic one."""
    items = []
    for name in SELQA:
        with gzip.open(data_dir / name, "rt", encoding="utf-8") as fh:
            items += json.load(fh)
    texts, article_of, first = [], [], []
    names: dict[str, int] = {}
    for item in items:
        first.append(len(texts))
        texts += item["candidates"]
        article_of += [names.setdefault(item["article"], len(names))] * len(item["candidates"])
    pool = SentencePool(texts, np.array(article_of))
    train, dev = [], []
    batch = 256
    for start in range(0, len(items), batch):
        chunk = items[start:start + batch]
        similarity = pool.similarity([item["question"] for item in chunk])
        for k, (item, sims) in enumerate(zip(chunk, similarity)):
            base = first[start + k]
            wrong = [base + j for j in range(len(item["candidates"])) if j not in item["answers"]]
            if not item["answers"] or not wrong:
                continue
            target = dev if held_out(item["question"]) else train
            answer = base + item["answers"][0]
            banned = {base + j for j in item["answers"]}
            article = names[item["article"]]
            wrong.sort(key=lambda i: -sims[i])
            picked = pool.negatives(sims, article, mix, rng, banned=banned, answers=[], same_article=wrong)
            target.append(Group(item["question"], (texts[answer], *(texts[i] for i in picked)), "selqa"))
            if rng.random() < mix.no_answer_share:
                empty = pool.no_answer(sims, article, mix, rng, banned, [])
                target.append(Group(item["question"], tuple(texts[i] for i in empty), "selqa", answered=False))
    return train, dev


def training_groups(data_dir: Path, mix: NegativeMix, seed: int) -> tuple[list[Group], list[Group], list[Group], dict]:
    """(train, SQuAD held-out, SelQA held-out, counts): both sources' groups, the training ones shuffled with
    ``seed``. The same seed and mix give the same groups in every script."""
    rng = random.Random(seed)
    squad_train, squad_dev = squad_groups(data_dir, mix, rng)
    selqa_train, selqa_dev = selqa_groups(data_dir, mix, rng)
    train = squad_train + selqa_train
    rng.shuffle(train)
    counts = {"squad11": sum(g.answered for g in squad_train), "selqa": sum(g.answered for g in selqa_train),
              "without_answer": sum(not g.answered for g in train), "negative_mix": asdict(mix)}
    return train, squad_dev, selqa_dev, counts


def seeded_groups(seed: int, mix: NegativeMix, threads: int,
                  max_groups: int | None) -> tuple[list[Group], list[Group], list[Group], dict]:
    """:func:`training_groups` for a training script: torch seeded with ``seed`` and on ``threads``, the shared
    data read from ``Settings().shared_data_dir``, and with ``max_groups`` (a smoke run) that many training
    groups and half as many held-out ones of each source."""
    import torch

    from qa.config import Settings

    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    train, squad_dev, selqa_dev, counts = training_groups(Settings().shared_data_dir, mix, seed)
    if max_groups:
        train = train[:max_groups]
        squad_dev, selqa_dev = squad_dev[: max_groups // 2], selqa_dev[: max_groups // 2]
    return train, squad_dev, selqa_dev, counts


def run_groups(run_dir: Path, seed: int, mix: NegativeMix, threads: int,
               max_groups: int | None) -> tuple[list[Group], list[Group], list[Group], dict]:
    """:func:`seeded_groups`, kept in ``run_dir/groups.json.gz`` by the run's first session and read back by a
    resumed one: the same groups without rebuilding them (a minute and a half on two cores)."""
    path = run_dir / "groups.json.gz"
    if path.exists():
        import torch

        torch.manual_seed(seed)  # as seeded_groups does: the model's initial weights follow the seed
        torch.set_num_threads(threads)
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            saved = json.load(fh)
        parts = [[Group(**{**g, "sentences": tuple(g["sentences"])}) for g in saved[k]] for k in ("train", "squad", "selqa")]
        return parts[0], parts[1], parts[2], saved["counts"]
    train, squad_dev, selqa_dev, counts = seeded_groups(seed, mix, threads, max_groups)
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        json.dump({"train": [asdict(g) for g in train], "squad": [asdict(g) for g in squad_dev],
                   "selqa": [asdict(g) for g in selqa_dev], "counts": counts}, fh)
    return train, squad_dev, selqa_dev, counts


def group_accuracy(score, groups: list[Group]) -> dict[str, float]:
    """Over the held-out groups with an answer: the share whose answer sentence scores highest, and its mean
    reciprocal rank; ``score(question, sentences)`` gives one score per sentence."""
    hits, rr = [], []
    for g in groups:
        if not g.answered:
            continue
        s = np.asarray(score(g.question, list(g.sentences)))
        rank = 1 + int((s[1:] > s[0]).sum())
        hits.append(rank == 1)
        rr.append(1.0 / rank)
    if not hits:
        return {"groups": 0, "hit@1": 0.0, "mrr": 0.0}
    return {"groups": len(hits), "hit@1": round(float(np.mean(hits)), 4), "mrr": round(float(np.mean(rr)), 4)}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def data_files(data_dir: Path) -> dict[str, str]:
    """The training files with their sha256."""
    return {name: sha256(data_dir / name) for name in (SQUAD11, *SELQA)}


def excluded_articles(data_dir: Path) -> dict[str, str]:
    """The evaluation file whose articles are excluded by title, with its sha256."""
    return {SQUAD_FILE: sha256(data_dir / SQUAD_FILE)}

"""The reader's training negatives (benchmarks/training_data.py): they name the question's subject without
answering it, and never hold an answer's text."""

from __future__ import annotations

import random

import numpy as np
import pytest

pytest.importorskip("sklearn")

from benchmarks.training_data import NegativeMix, SentencePool, holds_answer  # noqa: E402

TEXTS = [  # article 0: the question's own; article 1: the same subject elsewhere; article 2: off-topic
    "The Torkham border crossing reopened on Friday after six days.",
    "Traders at the Torkham crossing lost money while it was closed.",
    "The Torkham crossing is the busiest between the two countries.",
    "Trucks waited at the Torkham crossing for a week, drivers said.",
    "A new railway line opened in Punjab this week.",
    "The national cricket final will be played in Lahore on Sunday.",
    "Tickets sold out within an hour.",
]
ARTICLE = np.array([0, 0, 0, 1, 2, 2, 2])


def test_negatives_name_the_subject_and_never_hold_the_answer():
    pool = SentencePool(TEXTS, ARTICLE)
    question = "When did the Torkham crossing reopen?"
    sims = pool.similarity([question])[0]
    mix = NegativeMix(same_article=2, other_article=1, off_topic=1)
    for seed in range(20):
        picked = pool.negatives(sims, 0, mix, random.Random(seed), banned={0}, answers=["on Friday"])
        texts = [TEXTS[i] for i in picked]
        assert 0 not in picked and not any(holds_answer(t, ["on Friday"]) for t in texts)
        assert {1, 2} <= set(picked)  # the article's other sentences about Torkham
        assert 3 in picked  # the same subject in another article
        assert len(picked) == 4 and ARTICLE[picked[-1]] != 0  # and one off-topic sentence


def test_a_group_without_an_answer_holds_only_other_articles():
    pool = SentencePool(TEXTS, ARTICLE)
    sims = pool.similarity(["When did the Torkham crossing reopen?"])[0]
    empty = pool.no_answer(sims, 0, NegativeMix(no_answer_size=3), random.Random(0), {0}, ["Friday"])
    assert len(empty) == 3 and all(ARTICLE[i] != 0 for i in empty)
    assert not holds_answer(TEXTS[5], ["Friday"]) and holds_answer("on FRIDAY", ["friday "])

"""The shipped reader (models/reader) loaded by path, and its place in the engine's ranking."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from qa import rank
from qa.reader import ReaderFiles, load_reader

SHIPPED = Path(__file__).resolve().parent.parent / "models" / "reader"


def test_the_shipped_reader_ranks_the_answer_sentence_above_its_distractors():
    reader = load_reader(SHIPPED)
    question = "When did the Torkham border crossing reopen?"
    answer = ("On Friday, the Torkham border crossing reopened – after being closed by the Taliban on Sunday and "
              "then reopened days later, only to be closed again by Pakistan.")
    distractors = [  # the sentences around it in seeds/004_efe84b1d27e376f8.txt
        "Now, as tensions between the border forces of Pakistan and the Taliban at the Torkham crossing "
        "increase, a high-ranking delegation of Pakistani government officials again traveled to Kabul.",
        "Only people with family living in Pakistan and Pakistani citizens are allowed to cross.",
        "Investors and truck drivers have said the closure of the border crossing has caused huge financial "
        "losses to them.",
    ]
    logits = reader.score(question, [*distractors, answer])
    assert logits.shape == (4,) and logits.dtype == np.float32
    assert int(np.argmax(logits)) == 3


def test_scores_barely_depend_on_the_other_sentences_of_the_batch():
    reader = load_reader(SHIPPED)
    question = "Who led the delegation?"
    alone = reader.score(question, ["The delegation was led by the defence minister."])
    together = reader.score(question, ["A much longer sentence that forces padding in the batch, with many "
                                       "more words than the first one has.",
                                       "The delegation was led by the defence minister."])
    # Padding is masked out; what remains is int8 dynamic quantization's one activation scale per batch.
    assert together[1] == pytest.approx(alone[0], abs=0.15)
    assert reader.score(question, []).shape == (0,)
    assert np.isfinite(reader.score("why " * 400, ["A sentence longer than the budget. " * 20])).all()


def test_the_manifest_says_how_the_shipped_model_was_made():
    files = ReaderFiles(SHIPPED)
    assert files.exists()
    manifest = files.manifest()
    assert manifest["seed"] == manifest["hyper_parameters"]["seed"]
    assert all(len(h) == 64 for h in manifest["training_data"].values())
    assert not any("wikiqa" in name or "coqa" in name for name in manifest["training_data"])
    assert sum(p.stat().st_size for p in SHIPPED.iterdir()) < 100 * 2**20
    json.dumps(manifest)  # plain data


def test_the_engine_rescored_its_first_sentences_with_the_reader(seed_engine):
    assert seed_engine.reader is not None
    question = "When did the Torkham border crossing reopen?"
    ranked = seed_engine.ranked(seed_engine.query(question, "hybrid"), "hybrid")
    read = seed_engine.read(ranked.index, question, ranked.scored)
    depth = min(seed_engine.profile.reader.depth, len(read.ids))
    assert np.isfinite(read.reader[:depth]).all() and np.isnan(read.reader[depth:]).all()
    assert (np.diff(read.scores[:depth]) <= 1e-6).all()  # ordered by the new score (rank.with_reader)


def test_with_the_shipped_weights_the_reader_reads_only_where_it_could_change_the_decision(seed_engine):
    abstention, threshold = seed_engine.profile.abstention, seed_engine.threshold
    assert seed_engine.profile.reader.weight == 0  # the shipped profile: the reader only joins the decision
    for question in ("When did the Torkham border crossing reopen?", "What is the capital of Afghanistan?"):
        ranked = seed_engine.ranked(seed_engine.query(question, "hybrid"), "hybrid")
        assert ranked.scored.reader is None  # scoring alone does not run the reader
        full = seed_engine.confidence(ranked, question, "hybrid", exact=True)  # always read
        lazy = seed_engine.confidence(ranked, question, "hybrid")
        assert (full >= threshold) == (lazy >= threshold)
        z = rank.log_odds(seed_engine.decision_features(ranked, question), abstention.models["hybrid"])
        if rank.reader_could_decide(z, abstention, threshold):
            assert lazy == full

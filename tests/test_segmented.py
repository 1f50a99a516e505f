"""Segments composed into one index answer as an index built from scratch over the live documents."""

import numpy as np
import pytest

from qa import index as index_mod
from qa.config import Settings
from qa.engine import Engine, build_spec
from qa.index.segmented import compose
from qa.profile import load_profile
from qa.types import Document
from tests.fakes import HashedEncoder

A = Document("a.txt", "Border", "Border talks\n\nThe Torkham crossing closed on Monday after a clash. Traders "
                                "waited with trucks of fruit at the gate. Officials in Nangarhar met the next day.\n")
B = Document("b.txt", "Floods", "Floods in Sindh\n\nHeavy rain flooded villages across Sindh province. Relief "
                                "agencies sent tents and food to the families.\n")
C = Document("c.txt", "Talks", "Talks in Kabul\n\nA delegation led by the defence minister visited Kabul. The talks "
                               "covered trade and the security of the border.\n")
C2 = Document("c.txt", "Talks", "Talks in Kabul\n\nA delegation led by the foreign minister visited Kabul. The talks "
                                "covered trade and the security of the border.\n")
D = Document("d.txt", "Trade", "Trade resumes\n\nTrade through the crossing resumed on Friday. Exporters said the "
                               "closure cost them millions.\n")
QUESTIONS = ("When did the Torkham crossing close?", "Who led the delegation to Kabul?",
             "What did relief agencies send?", "When did trade resume?", "What did the talks cover?")


def _segment(tmp_path, name: str, docs: list[Document], encoder, settings: Settings):
    target = tmp_path / name
    index_mod.build(docs, encoder, build_spec(settings, layout=True), target)
    return index_mod.load(target)


def _live(tmp_path):
    """What the update tests share: settings under ``tmp_path``, the stand-in encoder, the spec, a profile without
    the near-sentence table, the index folder ``live`` and a writer of a segment of some documents there."""
    from qa.index.build import write_build

    settings = Settings(corpus_dir=tmp_path / "corpus", index_root=tmp_path / "index", data_dir=tmp_path / "var",
                        onnx_queries=False)
    encoder, spec = HashedEncoder(), build_spec(settings, layout=True)
    target = tmp_path / "live"
    return (settings, encoder, spec, load_profile().updated({"ranking.near_limit": 0}), target,
            lambda docs: write_build(docs, encoder, spec, target, reuse=False))


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("segments")
    settings = Settings(corpus_dir=tmp / "corpus", index_root=tmp / "index", data_dir=tmp / "var", onnx_queries=False)
    encoder = HashedEncoder()
    profile = load_profile().updated({"ranking.near_limit": 0})
    first = _segment(tmp, "s1", [A, B, C], encoder, settings)
    second = _segment(tmp, "s2", [C2, D], encoder, settings)
    composed = compose([first, second], [frozenset({"c.txt"}), frozenset()], path=tmp / "gen", manifest={})
    whole = _segment(tmp, "whole", [A, B, C2, D], encoder, settings)
    return (Engine(settings, composed, encoder, profile=profile), Engine(settings, whole, encoder, profile=profile))


def _answer(engine: Engine, question: str, mode: str) -> list[tuple]:
    answer = engine.ask(question, retriever=mode, top_k=5, abstain=False)
    return [(s.citation.doc_id, s.citation.sentence_index, s.text, round(s.score, 5),
             sorted((c.doc_id, c.sentence_index) for c in s.also_in)) for s in answer.sentences] + \
        [round(answer.confidence, 5)]


@pytest.mark.parametrize("mode", ["bm25", "dense", "hybrid"])
def test_composed_segments_answer_as_one_index_of_the_live_documents(engines, mode):
    composed, whole = engines
    for question in QUESTIONS:
        assert _answer(composed, question, mode) == _answer(whole, question, mode), question


def test_a_deleted_document_is_in_no_lookup(engines):
    composed, whole = engines
    index = composed.index
    assert sorted(index.documents) == sorted(whole.index.documents) == ["a.txt", "b.txt", "c.txt", "d.txt"]
    assert "defence" not in " ".join(index.sentences[i].text for i in index.document_sentences["c.txt"])
    assert index.lexical_sentences.n_docs == whole.index.lexical_sentences.n_docs
    assert index.faiss_index.ntotal == whole.index.faiss_index.ntotal
    assert np.allclose(index.tokens.weights, whole.index.tokens.weights)
    assert composed.ask("Who led the delegation to Kabul?").sentences[0].text.startswith("A delegation led by the "
                                                                                         "foreign minister")


def test_the_composed_lookups_are_those_of_one_index(engines):
    from qa.cues import proper_words_of

    composed, whole = (e.index for e in engines)
    texts = lambda index: {d: [index.sentences[int(i)].text for i in ids]  # noqa: E731
                           for d, ids in index.document_sentences.items()}
    assert texts(composed) == texts(whole)
    assert {k: composed.sentences[i].text for k, i in composed.sentence_ids.items()} == \
        {k: whole.sentences[i].text for k, i in whole.sentence_ids.items()}
    assert ("c.txt", 1) in composed.sentence_ids and ("c.txt", 99) not in composed.sentence_ids
    rows, vectors = composed.document_vectors
    whole_rows, whole_vectors = whole.document_vectors
    assert rows.keys() == whole_rows.keys()
    assert all(np.allclose(vectors[rows[d]], whole_vectors[whole_rows[d]], atol=1e-6) for d in rows)
    first = composed.segments[0]
    fresh = compose(composed.segments, composed.deleted, path=composed.path, manifest={})  # nothing cached yet
    proper_words_of(first)
    assert proper_words_of(fresh, previous=first) == proper_words_of(whole)  # counted from the change only
    assert "defence" not in proper_words_of(composed) and "kabul" in proper_words_of(whole)


def test_the_near_sentence_table_of_an_update_is_that_of_a_build(tmp_path):
    from qa.index.segments import update

    settings, encoder, spec, _, target, segment = _live(tmp_path)
    echo = Document("e.txt", "Border", A.raw.replace("Monday", "Tuesday"))  # A's sentences, a day changed
    echo2 = Document("e.txt", "Border", A.raw.replace("Monday", "Sunday"))
    index_mod.build([A, B, C, echo], encoder, spec, target)
    first = Engine(settings, index_mod.load(target), encoder)
    assert first.near_sentences is not None and len(first.near_sentences.neighbours)  # A and echo pair up
    update(target, first.index, [C2, D, echo2], [], segment, spec)
    second = first.with_index(index_mod.load(target, loaded=index_mod.segments_of(first.index)))
    whole = _segment(tmp_path, "whole", [A, B, C2, D, echo2], encoder, settings)
    rebuilt = Engine(settings, whole, encoder)

    def pairs(engine):
        index, table = engine.index, engine.near_sentences
        name = lambda i: (index.sentences[i].doc_id, index.sentences[i].index)  # noqa: E731
        return {(name(a), name(b), round(float(c), 5)) for a, b, c in zip(*table.pairs())}

    assert pairs(second) == pairs(rebuilt) and pairs(rebuilt)


def test_passage_count_is_what_make_passages_makes():
    from qa.index.spec import make_passages, passage_count
    from qa.types import Sentence

    for n in range(0, 12):
        sentences = [Sentence("d", i, i, i + 1, "x") for i in range(n)]
        for size, overlap in ((3, 1), (2, 0), (4, 2), (1, 0)):
            assert passage_count(n, size, overlap) == len(make_passages(sentences, size, overlap)), (n, size)


def test_an_update_publishes_a_generation_that_answers_as_a_full_build(tmp_path):
    from qa.index.segments import update

    settings, encoder, spec, profile, target, segment = _live(tmp_path)
    index_mod.build([A, B, C], encoder, spec, target)
    first = index_mod.load(target)

    update(target, first, [C2, D], [], segment, spec)
    second = index_mod.load(target, loaded=[first])
    assert second.segments[0] is first and len(second.segments) == 2  # the segment in service is shared
    assert second.manifest["documents"] == 4 and second.manifest["segments"][0]["deleted"] == ["c.txt"]
    assert second.fingerprint == index_mod.corpus_fingerprint([A, B, C2, D])  # the folder need not be read
    whole = _segment(tmp_path, "whole", [A, B, C2, D], encoder, settings)
    for mode in ("bm25", "hybrid"):
        for question in QUESTIONS:
            ours = _answer(Engine(settings, second, encoder, profile=profile), question, mode)
            assert ours == _answer(Engine(settings, whole, encoder, profile=profile), question, mode), question
    update(target, second, [], ["b.txt"], segment, spec)  # a deletion: no new segment
    third = index_mod.load(target, loaded=second.segments)
    assert sorted(third.documents) == ["a.txt", "c.txt", "d.txt"] and len(third.segments) == 2
    answer = Engine(settings, third, encoder, profile=profile).ask("What did relief agencies send?",
                                                                   retriever="bm25", abstain=False)
    assert all(s.citation.doc_id != "b.txt" for s in answer.sentences)
    assert sorted(p.name for p in target.glob("build-*")) == sorted(s.path.name for s in third.segments)


def test_the_merge_policy_merges_a_full_tier_and_rewrites_a_mostly_deleted_segment():
    from qa.index.merge import MergePolicy

    policy = MergePolicy(per_tier=3, floor=100, max_deleted=0.5)
    assert policy.tier(10) == policy.tier(299) == 0 and policy.tier(300) == policy.tier(899) == 1
    assert policy.tier(900) == 2 and policy.tier(3000) == 3
    assert policy.choose([50, 60], [0.0, 0.0]) is None
    assert policy.choose([5000, 50, 40, 60, 30], [0.0] * 5) == [1, 2, 4]  # the 3 smallest of tier 0
    assert policy.choose([5000, 50], [0.0, 0.6]) == [1]


def test_merged_segments_answer_as_before_and_later_deletions_carry_over(tmp_path):
    from qa.index.segments import merge_segments, update

    settings, encoder, spec, profile, target, segment = _live(tmp_path)
    index_mod.build([A, B], encoder, spec, target)

    first = index_mod.load(target)
    update(target, first, [C], [], segment, spec)
    second = index_mod.load(target, loaded=[first])
    update(target, second, [C2, D], [], segment, spec)
    third = index_mod.load(target, loaded=second.segments)
    assert len(third.segments) == 2  # the segment of C alone was dropped once C was replaced
    # a deletion published while the merge is written: the merged segment must not bring b.txt back
    update(target, third, [], ["b.txt"], segment, spec)
    merge_segments(target, third, [0, 1], spec, ann_min_passages=100_000)
    merged = index_mod.load(target)
    assert len(merged.segments) == 1 and sorted(merged.documents) == ["a.txt", "c.txt", "d.txt"]
    assert merged.manifest["segments"][0]["deleted"] == ["b.txt"]
    assert merged.fingerprint_chunks.keys() == {"a.txt", "c.txt", "d.txt"}
    whole = _segment(tmp_path, "whole", [A, C2, D], encoder, settings)
    for question in QUESTIONS:
        ours = _answer(Engine(settings, merged, encoder, profile=profile), question, "hybrid")
        assert ours == _answer(Engine(settings, whole, encoder, profile=profile), question, "hybrid"), question


def _story(n: int, version: int) -> Document:
    """A small made-up article, different for each ``n`` and ``version``, whose words overlap other stories'."""
    rng = np.random.default_rng(n * 1000 + version)
    places = ["Quenton", "Aldgate", "Kestrel", "Torkham", "Sindh", "Kabul", "Zorvane", "Marlow"]
    things = ["bridge", "harbour", "library", "observatory", "crossing", "market", "school", "clinic"]
    verbs = ["reopened", "closed", "expanded", "flooded", "moved", "opened"]
    days = ["Monday", "Tuesday", "Friday", "Sunday"]
    lines = [f"Report {n} version {version}"]
    for k in range(int(rng.integers(2, 6))):
        lines.append(f"The {rng.choice(things)} in {rng.choice(places)} {rng.choice(verbs)} on "
                     f"{rng.choice(days)} after {int(rng.integers(2, 90))} days, note{n}x{version}x{k} said.")
    return Document(f"story-{n:03d}.txt", f"Report {n}", lines[0] + "\n\n" + " ".join(lines[1:]) + "\n")


def test_a_random_sequence_of_adds_replaces_and_deletes_answers_as_a_full_rebuild(tmp_path):
    """120 random changes, checked against a full rebuild after 60 and after 120."""
    from qa.index.segments import merge_due, update

    settings, encoder, spec, profile, target, segment = _live(tmp_path)
    corpus = {n: _story(n, 0) for n in range(12)}
    index_mod.build(list(corpus.values()), encoder, spec, target)
    index = index_mod.load(target)
    rng = np.random.default_rng(7)
    version, merges = 1, 0

    for step in range(120):
        action = rng.choice(["add", "replace", "delete"], p=[0.4, 0.4, 0.2])
        if action == "delete" and len(corpus) > 3:
            n = int(rng.choice(sorted(corpus)))
            removed, changed = [corpus.pop(n).doc_id], []
        else:
            n = int(rng.integers(0, 40)) if action == "add" else int(rng.choice(sorted(corpus)))
            corpus[n], removed = _story(n, version), []
            changed, version = [corpus[n]], version + 1
        update(target, index, changed, removed, segment, spec)
        merges += merge_due(target, index, spec)
        index = index_mod.load(target, loaded=index_mod.segments_of(index))
        if step in (59, 119):
            whole_target = tmp_path / f"whole-{step}"
            index_mod.build(sorted(corpus.values(), key=lambda d: d.doc_id), encoder, spec, whole_target)
            whole = index_mod.load(whole_target)
            assert index.fingerprint == whole.fingerprint
            ours, theirs = (Engine(settings, x, encoder, profile=profile) for x in (index, whole))
            for question in ("When did the bridge in Quenton reopen?", "Which market closed on Friday?",
                             "What flooded in Sindh?"):
                for mode in ("bm25", "hybrid"):
                    assert _answer(ours, question, mode) == _answer(theirs, question, mode), (step, question, mode)
    assert merges > 0 and len(index_mod.segments_of(index)) < 40  # merges kept the segments few


def test_an_index_held_through_a_merge_answers_as_before_and_keeps_its_folders(tmp_path):
    from qa.index.merge import MergePolicy
    from qa.index.segments import merge_due, update

    settings, encoder, spec, profile, target, segment = _live(tmp_path)
    index_mod.build([A, B], encoder, spec, target)

    held = index_mod.load(target)
    for doc in (C, D):
        update(target, held, [doc], [], segment, spec)
        previous, held = held, index_mod.load(target, loaded=index_mod.segments_of(held))
        previous.lease.release()
    assert len(held.segments) == 3
    before = [_answer(Engine(settings, held, encoder, profile=profile), q, "hybrid") for q in QUESTIONS]
    assert merge_due(target, held, spec, policy=MergePolicy(per_tier=2, floor=1)) >= 1
    merged = index_mod.load(target)
    assert len(merged.segments if hasattr(merged, "segments") else [merged]) < 3
    assert all(segment.path.is_dir() for segment in held.segments)  # leased: not removed under a reader
    assert [_answer(Engine(settings, held, encoder, profile=profile), q, "hybrid") for q in QUESTIONS] == before
    assert [_answer(Engine(settings, merged, encoder, profile=profile), q, "hybrid") for q in QUESTIONS] == before
    held.lease.release()
    update(target, merged, [C2], [], segment, spec)  # the next publish removes what no reader holds
    in_use = {p.name for p in target.glob("build-*")}
    assert not any(segment.path.name in in_use for segment in held.segments
                   if segment.path.name not in {s.path.name for s in index_mod.segments_of(merged)})


CHILD = """
import sys
from pathlib import Path
from qa import index as index_mod
from qa.config import Settings
from qa.engine import build_spec
from qa.index.build import write_build
from qa.index.merge import MergePolicy
from qa.index.segments import merge_due, update
from tests.fakes import HashedEncoder
from tests.test_segmented import _story

target, log, first = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
settings = Settings(corpus_dir=target, index_root=target.parent, onnx_queries=False)
encoder, spec = HashedEncoder(), build_spec(settings, layout=True)
index = index_mod.load(target)
for n in range(first, first + 10_000):
    update(target, index, [_story(n, 0)], [], lambda docs: write_build(docs, encoder, spec, target, reuse=False), spec)
    with log.open("a") as fh:  # acknowledged: the update is published
        fh.write(f"{n}\\n")
    merge_due(target, index, spec, policy=MergePolicy(per_tier=3, floor=2))  # a merge every few updates
    index = index_mod.load(target, loaded=index_mod.segments_of(index))
"""


def test_kill_9_during_updates_and_merges_loses_no_acknowledged_change(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from qa.config import PROJECT_ROOT

    settings = Settings(corpus_dir=tmp_path / "corpus", index_root=tmp_path, onnx_queries=False)
    target = tmp_path / "live"
    index_mod.build([_story(1000, 0)], HashedEncoder(), build_spec(settings, layout=True), target)
    log = tmp_path / "acknowledged.txt"
    log.write_text("")
    rng = np.random.default_rng(3)
    first = 0
    for round_ in range(4):
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(target), str(log), str(first)], cwd=PROJECT_ROOT,
                                 env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
        time.sleep(1.5 + float(rng.uniform(0, 2.0)))  # at any moment: mid-segment, mid-merge, mid-publish
        child.send_signal(signal.SIGKILL)
        child.wait()
        acknowledged = [int(x) for x in log.read_text().split()]
        index = index_mod.load(target)  # opens, whatever the moment of the kill
        held = {d for d in index.documents}
        assert {f"story-{n:03d}.txt" for n in acknowledged} <= held, round_
        assert "story-1000.txt" in held
        first = (max(acknowledged) + 1) if acknowledged else first
        index.lease.release()
    assert len(acknowledged) > 4  # the rounds did update

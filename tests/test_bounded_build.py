"""A corpus built in segments of a few sentences (qa/index/bounded.py) answers as one build of it."""

import pytest

from qa import index as index_mod
from qa.config import Settings
from qa.engine import Engine, build_spec
from qa.index.bounded import parts
from qa.index.merge import MergePolicy
from qa.profile import load_profile
from tests.test_segmented import QUESTIONS, _answer, _story, A, B, C2, D

DOCS = sorted([A, B, C2, D, *(_story(n, 0) for n in range(12))], key=lambda d: d.doc_id)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The same corpus as one build and as a generation of segments of at most 9 sentences."""
    from tests.fakes import HashedEncoder

    tmp = tmp_path_factory.mktemp("bounded")
    settings = Settings(corpus_dir=tmp / "corpus", index_root=tmp / "index", data_dir=tmp / "var", onnx_queries=False)
    encoder, spec = HashedEncoder(), build_spec(settings, layout=True)
    profile = load_profile().updated({"ranking.near_limit": 0})
    index_mod.build(DOCS, encoder, spec, tmp / "whole", reuse=False)
    index_mod.build(DOCS, encoder, spec, tmp / "parts", reuse=False, segment_sentences=9)
    whole, segmented = index_mod.load(tmp / "whole"), index_mod.load(tmp / "parts")
    return (Engine(settings, segmented, encoder, profile=profile), Engine(settings, whole, encoder, profile=profile),
            encoder, spec, tmp)


def test_a_bounded_build_publishes_a_generation_of_small_segments(built):
    segmented, whole = built[0].index, built[1].index
    sizes = [len(s.sentences) for s in segmented.segments]
    assert len(sizes) > 3 and max(sizes) <= 9 and sum(sizes) == len(whole.sentences)
    assert all(not e["deleted"] for e in segmented.manifest["segments"])
    for key in ("corpus_fingerprint", "documents", "sentences", "passages"):
        assert segmented.manifest[key] == whole.manifest[key], key
    assert [s.text for s in segmented.sentences] == [s.text for s in whole.sentences]


@pytest.mark.parametrize("mode", ["bm25", "dense", "hybrid"])
def test_a_bounded_build_answers_as_one_build(built, mode):
    segmented, whole = built[:2]
    for question in (*QUESTIONS, "What reopened in Kestrel?", "Which clinic closed on Friday?"):
        assert _answer(segmented, question, mode) == _answer(whole, question, mode), question


def test_a_corpus_under_the_size_is_one_build_folder(built):
    _, whole, encoder, spec, tmp = built
    folder = index_mod.build(DOCS, encoder, spec, tmp / "one", reuse=False, segment_sentences=10_000)
    assert folder.name.startswith("build-")
    assert index_mod.read_manifest(tmp / "one")["corpus_fingerprint"] == whole.index.manifest["corpus_fingerprint"]


def test_parts_cut_between_documents_and_keep_their_order():
    got = list(parts(DOCS, True, 9, None, lambda done: None))
    assert [d.doc_id for p in got for d in p.docs] == [d.doc_id for d in DOCS]
    assert all(len(p.sentences) == len(p.rows) and (p.rows < 0).all() for p in got)
    assert all({s.doc_id for s in p.sentences} == {d.doc_id for d in p.docs} for p in got)
    assert [p.last for p in got] == [False] * (len(got) - 1) + [True]
    one = list(parts(DOCS[:1], True, 1, None, lambda done: None))  # a document longer than a part: alone
    assert len(one) == 1 and len(one[0].sentences) > 1 and one[0].last


def test_the_merge_cap_leaves_full_segments_and_fits_merges_under_it():
    policy = MergePolicy(per_tier=3, floor=100, max_sentences=400)
    assert policy.choose([250, 260, 270, 10], [0.0] * 4) is None  # over half the cap: full
    assert policy.choose([190, 160, 150, 170], [0.0] * 4) == [1, 2]  # the 3 smallest, the largest left out
    assert policy.choose([250, 10], [0.7, 0.0]) == [0]  # a full segment is still rewritten for its deletions
    assert MergePolicy(per_tier=3, floor=100).choose([150, 160, 170], [0.0] * 3) == [0, 1, 2]


def test_a_bounded_build_reuses_the_build_in_service(built):
    """Each segment starts from the build in service as a single build does: only the new document is split
    and embedded."""
    from qa.types import Document
    from tests.test_segmented import C

    _, _, encoder, spec, tmp = built
    index_mod.build(DOCS, encoder, spec, tmp / "grown", reuse=False, segment_sentences=10_000)
    grown = sorted([*DOCS, Document("c0.txt", C.title, C.raw)], key=lambda d: d.doc_id)
    index_mod.build(grown, encoder, spec, tmp / "grown", segment_sentences=9)
    manifest = index_mod.read_manifest(tmp / "grown")
    assert len(manifest["segments"]) > 3 and manifest["split_documents"] == 1
    assert manifest["encoded_texts"] == 1  # C's sentences are C2's but for one word: that one sentence


def test_a_segment_is_ivf_when_the_whole_index_calls_for_it(built):
    import faiss
    import numpy as np

    vectors = np.random.default_rng(0).standard_normal((80, 16)).astype(np.float32)
    assert isinstance(index_mod.dense_index(vectors, 64, index_passages=5000), faiss.IndexIVF)
    assert not isinstance(index_mod.dense_index(vectors[:40], 64, index_passages=5000), faiss.IndexIVF)
    assert not isinstance(index_mod.dense_index(vectors[:40], 64), faiss.IndexIVF)
    _, whole, encoder, spec, tmp = built
    spec = type(spec)(**{**spec.__dict__, "ann_min_passages": 16})
    index_mod.build(DOCS, encoder, spec, tmp / "ivf", reuse=False, segment_sentences=40)
    segmented = index_mod.load(tmp / "ivf")
    assert len(segmented.segments) > 1 and segmented.manifest["passages"] >= 16
    kinds = [isinstance(s.faiss_index, faiss.IndexIVF) for s in segmented.segments]
    assert kinds == [len(s.passages) >= 16 for s in segmented.segments] and any(kinds)
    assert segmented.faiss_index.ntotal == whole.index.faiss_index.ntotal


@pytest.mark.parametrize("segment_sentences", [9, 10_000])
def test_a_build_reuses_a_published_generation(built, segment_sentences):
    """A build over a generation (a bounded build's, an update's) reads its segments as one previous build: only
    the new document is split and embedded, and its word pieces are those of a build from scratch."""
    import numpy as np

    from qa.types import Document
    from tests.test_segmented import C

    _, _, encoder, spec, tmp = built
    target, fresh = tmp / f"again-{segment_sentences}", tmp / f"fresh-{segment_sentences}"
    index_mod.build(DOCS, encoder, spec, target, reuse=False, segment_sentences=9)
    grown = sorted([*DOCS, Document("c0.txt", C.title, C.raw)], key=lambda d: d.doc_id)
    index_mod.build(grown, encoder, spec, target, segment_sentences=segment_sentences)
    index_mod.build(grown, encoder, spec, fresh, reuse=False, segment_sentences=segment_sentences)
    manifest = index_mod.read_manifest(target)
    assert manifest["split_documents"] == 1 and manifest["encoded_texts"] == 1
    again, scratch = index_mod.load(target), index_mod.load(fresh)
    ids = np.arange(len(scratch.sentences))
    assert all(np.array_equal(a, b) for a, b in zip(again.tokens.of(ids), scratch.tokens.of(ids)))
    assert np.array_equal(again.sentence_vectors[ids], scratch.sentence_vectors[ids])

import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from qa import index as index_mod
from qa import leases
from qa.conversation.followup import same_story
from qa.index import reuse
from qa.engine import Engine, build_spec
from qa.index import index_is_current
from qa.ingest import load_corpus
from qa.types import Document, Sentence
from tests.fakes import HashedEncoder
from tests.conftest import SEEDS
from tests.processes import alive, descendants


def _sents(doc_lengths):
    out = []
    for d, n in enumerate(doc_lengths):
        out += [Sentence(f"d{d}", i, 0, 1, f"s{d}.{i}") for i in range(n)]
    return out


@pytest.mark.parametrize("size,overlap", [(1, 0), (3, 1), (4, 2), (5, 0)])
def test_passages_cover_every_sentence_and_stay_inside_a_document(size, overlap):
    sents = _sents([7, 1, 4])
    passages = index_mod.make_passages(sents, size, overlap)
    covered = sorted({sid for p in passages for sid in p.sentence_ids})
    assert covered == list(range(len(sents)))
    for p in passages:
        assert len(p.sentence_ids) <= size
        assert {sents[i].doc_id for i in p.sentence_ids} == {p.doc_id}
        assert list(p.sentence_ids) == list(range(p.sentence_ids[0], p.sentence_ids[-1] + 1))
    first_doc = [p for p in passages if p.doc_id == "d0"]
    for a, b in zip(first_doc, first_doc[1:]):
        assert len(set(a.sentence_ids) & set(b.sentence_ids)) == min(overlap, len(b.sentence_ids))


def test_passages_reject_overlap_not_smaller_than_size():
    with pytest.raises(ValueError):
        index_mod.make_passages(_sents([3]), 2, 2)


def test_build_load_round_trip(seed_engine):
    idx = seed_engine.index
    m = idx.manifest
    assert m["format_version"] == index_mod.FORMAT_VERSION
    assert m["dim"] == 384 and m["passage_size"] == seed_engine.settings.passage_size
    assert len(idx.sentences) == m["sentences"] and idx.faiss_index.ntotal == m["passages"]
    assert idx.sentence_vectors.shape == (m["sentences"], 384)
    assert np.allclose(np.linalg.norm(idx.sentence_vectors, axis=1), 1.0, atol=1e-4)
    for s in idx.sentences:
        assert idx.documents[s.doc_id].raw[s.start:s.end] == s.text
    assert (idx.path.parent / index_mod.CURRENT).is_symlink()
    # the analyzer comes back with the lemma of every corpus word, so questions are analysed as the corpus
    assert idx.analyzer.lemmatize and idx.analyzer.lemmas["met"] == "meet" and idx.analyzer.lemmas["talks"] == "talk"


def test_stale_index_is_detected_and_rebuilt(tmp_path, seed_engine):
    from qa.config import Settings

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for p in seed_engine.settings.corpus_dir.glob("*.txt"):
        shutil.copy(p, corpus / p.name)
    settings = Settings(corpus_dir=corpus, index_root=tmp_path / "index")
    first = Engine.open(settings)
    target = settings.index_dir()
    assert index_is_current(target, load_corpus(corpus), build_spec(settings)) == (True, "up to date")

    (corpus / "new.txt").write_text("A new report\n\nThe Khyber Pass was closed on Monday.\n", encoding="utf-8")
    current, why = index_is_current(target, load_corpus(corpus), build_spec(settings))
    assert not current and why == "the corpus changed"
    reasons = []
    second = Engine.open(settings, on_rebuild=reasons.append)
    assert reasons == ["the corpus changed"]
    assert "new.txt" in second.index.documents and "new.txt" not in first.index.documents
    assert first.index.path.exists()  # `first` still holds a lease on its build: kept
    answer = second.ask("When was the Khyber Pass closed?", top_k=1)
    assert answer.sentences[0].citation.doc_id == "new.txt"
    first.index.lease.release()  # its readers have moved: the next publish removes it
    (corpus / "newer.txt").write_text("Another report\n\nThe pass reopened on Friday.\n", encoding="utf-8")
    third = Engine.open(settings)
    assert not first.index.path.exists() and second.index.path.exists()
    assert sorted(p.name for p in target.glob("build-*")) == sorted([second.index.path.name, third.index.path.name])


def test_missing_and_corrupt_index_say_what_to_run(tmp_path, seed_engine):
    target = tmp_path / "idx"
    with pytest.raises(index_mod.IndexMissing, match="qa index"):
        index_mod.load(target)
    shutil.copytree(seed_engine.index.path, target / "build-x")
    (target / "current").symlink_to("build-x")
    index_mod.load(target)  # a faithful copy loads
    (target / "build-x" / "passages.faiss").write_bytes(b"garbage")
    with pytest.raises(index_mod.IndexCorrupt, match="qa index --rebuild"):
        index_mod.load(target)
    (target / "build-x" / "manifest.json").write_text(json.dumps({"format_version": 0}))
    with pytest.raises(index_mod.IndexCorrupt, match="qa index --rebuild"):
        index_mod.load(target)


def test_parallel_split_gives_the_sequential_sentences(monkeypatch):
    docs = load_corpus(SEEDS)
    sequential = index_mod.split_documents(docs, True, lambda done: None)
    monkeypatch.setattr(reuse, "PARALLEL_SPLIT_CHARS", 0)
    monkeypatch.setattr(reuse.os, "cpu_count", lambda: 2)
    seen: list[int] = []
    assert index_mod.split_documents(docs, True, seen.append) == sequential
    assert seen[-1] == len(docs)


class _WordLengths:
    """A stand-in model: a text's vector is (its length, 1); one word piece per word, whose vector is
    (word length, 1) and whose id is the word length. Records what it is asked to encode."""

    dim = 2

    def __init__(self):
        self.seen: list[str] = []

    def encode(self, texts):
        self.seen += texts
        return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)

    def encode_tokens(self, texts):
        from qa.embed import Embedded

        words = [t.split() for t in texts]
        return Embedded(self.encode(texts),
                        [np.array([[len(w), 1.0] for w in ws], dtype=np.float32) for ws in words],
                        [np.array([len(w) for w in ws], dtype=np.int32) for ws in words])


def test_each_distinct_text_is_encoded_once():
    enc = _WordLengths()
    texts = ["the same line", "another", "the same line", "x"]
    totals: list[int] = []
    vecs, tokens = index_mod.encode_texts(enc, texts, lambda done, total: totals.append(total), batch=2)
    assert sorted(enc.seen) == sorted(set(texts))
    assert vecs.tolist() == [[13, 1], [7, 1], [13, 1], [1, 1]]
    assert totals == [3, 3] and tokens is None


def test_word_pieces_are_kept_per_sentence_in_order():
    enc = _WordLengths()
    texts = ["a bb ccc", "dddd", "a bb ccc", "passage text only"]
    vecs, tokens = index_mod.encode_texts(enc, texts, lambda *_: None, batch=2, keep_tokens=3)
    rows, offsets, ids = tokens.vectors, tokens.offsets, tokens.ids
    assert tokens.previous_rows.tolist() == [-1, -1, -1]
    assert sorted(enc.seen) == sorted(set(texts))  # each distinct text once, tokens and vector together
    assert vecs[:, 0].tolist() == [8, 4, 8, 17]
    assert offsets.tolist() == [0, 3, 4, 7]  # the first three texts (the sentences), not the passage
    assert ids.tolist() == [1, 2, 3, 4, 1, 2, 3]
    assert rows.dtype == np.float16 and rows[:, 0].tolist() == [1, 2, 3, 4, 1, 2, 3]


def test_token_weights_are_idf_for_content_pieces_and_zero_for_the_rest():
    vocabulary = ["[PAD]", "[CLS]", "the", "border", "##s", ",", "crossing", "reopened"]
    # three sentences: "the border ," / "the crossing reopened" / "the borders"
    ids = np.array([2, 3, 5, 2, 6, 7, 2, 3, 4])
    offsets = np.array([0, 3, 6, 9])
    w = index_mod.token_weights(ids, offsets, vocabulary, frozenset({"the"}))
    assert w[0] == w[1] == w[2] == w[5] == 0.0  # special, stop word, punctuation
    assert w[3] == pytest.approx(np.log(4 / 2.5)) and w[6] == pytest.approx(np.log(4 / 1.5))
    assert w[4] == pytest.approx(np.log(4 / 1.5))  # a continuation piece is content
    assert w[6] > w[3] > 0  # rarer pieces weigh more


def test_the_index_keeps_every_sentences_word_pieces(seed_engine):
    idx = seed_engine.index
    tokens = idx.tokens
    assert tokens is not None and len(tokens) == len(idx.sentences)
    onnx = seed_engine.query_encoder
    sample = np.array([0, 5, len(idx.sentences) - 1])
    expected = onnx.encode_tokens([idx.sentences[i].text for i in sample.tolist()])
    rows, scales, starts = tokens.of(sample)
    got = rows.astype(np.float32) * scales[:, None]
    for k, sid in enumerate(sample.tolist()):
        want = expected.tokens[k]
        mine = got[starts[k] : starts[k] + len(want)]
        assert np.array_equal(tokens.ids_of(sid), expected.token_ids[k])
        assert float((mine * want).sum(axis=1).min()) >= 0.999  # int8 with a scale per row
    assert len(got) == sum(len(t) for t in expected.tokens)


def test_dense_index_is_flat_when_small_and_ivf_from_the_threshold():
    import faiss

    rng = np.random.default_rng(7)
    vecs = rng.normal(size=(12000, 16)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    flat = index_mod.dense_index(vecs, ann_min=20000)
    ivf = index_mod.dense_index(vecs, ann_min=12000)
    assert isinstance(flat, faiss.IndexFlatIP) and isinstance(ivf, faiss.IndexIVFFlat)
    assert ivf.ntotal == flat.ntotal == 12000
    queries = vecs[:20] + 0.1
    _, exact = flat.search(queries, 10)
    ivf.nprobe = ivf.nlist  # scanning every list is exact search
    _, scanned = ivf.search(queries, 10)
    assert np.array_equal(np.sort(exact, axis=1), np.sort(scanned, axis=1))


def test_vector_rows_read_exactly_what_numpy_saved(tmp_path):
    saved = np.random.default_rng(3).normal(size=(50, 8)).astype(np.float32)
    np.save(tmp_path / "v.npy", saved)
    rows = index_mod.VectorRows(tmp_path / "v.npy")
    assert rows.shape == (50, 8) and len(rows) == 50
    ids = np.array([7, 3, 4, 5, 49, 7, 0])  # out of order, a run, a repeat, both ends
    assert np.array_equal(rows[ids], saved[ids])
    assert np.array_equal(rows[12], saved[12]) and rows[np.array([], dtype=np.int64)].shape == (0, 8)
    assert np.array_equal(np.asarray(rows), saved)
    with pytest.raises(IndexError):
        rows[np.array([50])]


def test_passage_vectors_are_the_normalised_means_of_their_sentences():
    from qa.types import Passage

    vecs = np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32)
    passages = [Passage(0, "d", (0, 1, 2)), Passage(1, "d", (2, 3, 4)), Passage(2, "d", (4,)),
                Passage(3, "e", (5, 6, 7)), Passage(4, "e", (7, 8, 9))]
    got = index_mod.mean_vectors(vecs, passages)
    assert got.dtype == np.float32 and got.shape == (5, 4)
    for p, row in zip(passages, got):
        mean = vecs[list(p.sentence_ids)].mean(axis=0)
        assert np.allclose(row, mean / np.linalg.norm(mean), atol=1e-6)


def test_a_rebuild_encodes_only_the_sentences_it_has_not_embedded(tmp_path, seed_engine):
    from qa.types import Document

    class Counting:
        def __init__(self, inner):
            self.inner, self.dim, self.seen = inner, inner.dim, []
            self.vocabulary = inner.encoder.vocabulary

        def encode_tokens(self, texts, **kwargs):
            self.seen += texts
            return self.inner.encode_tokens(texts, **kwargs)

    encoder = Counting(seed_engine.query_encoder)
    spec = build_spec(seed_engine.settings)
    target = tmp_path / "idx"
    docs = load_corpus(SEEDS)
    index_mod.build(docs, encoder, spec, target)
    first = index_mod.load(target)
    assert len(encoder.seen) == len({s.text for s in first.sentences})

    added = Document("new.txt", "A new report", "A new report\n\nThe Khyber Pass was closed on Monday. "
                                                "Traders waited at the gate.\n")
    encoder.seen = []
    index_mod.build(docs + [added], encoder, spec, target)
    second = index_mod.load(target)
    assert sorted(encoder.seen) == sorted({s.text for s in second.sentences if s.doc_id == "new.txt"})
    old = np.arange(len(first.sentences))  # the seed documents come first in both builds
    assert [s.text for s in second.sentences[: len(old)]] == [s.text for s in first.sentences]
    assert np.array_equal(second.sentence_vectors[old], first.sentence_vectors[old])
    assert np.array_equal(second.tokens.offsets[: len(old) + 1], first.tokens.offsets[: len(old) + 1])
    a, b = second.tokens.of(old), first.tokens.of(old)
    assert np.array_equal(a[0], b[0]) and np.allclose(a[1], b[1], rtol=1e-3)  # reused, not re-encoded

    encoder.seen = []
    index_mod.build(docs + [added], encoder, spec, target, reuse=False)  # `qa index --rebuild`
    assert len(encoder.seen) == len({s.text for s in second.sentences})


def test_published_build_names_the_build_in_service(tmp_path, seed_engine):
    assert index_mod.published_build(seed_engine.settings.index_dir()) == seed_engine.index.path.name
    assert index_mod.published_build(tmp_path / "nothing here") is None


def test_build_lock_lets_one_builder_in_at_a_time(tmp_path):
    """flock excludes every other open of the lock file, in this process or another."""
    order = []

    def second_builder():
        with index_mod.build_lock(tmp_path / "index"):
            order.append("second")

    with index_mod.build_lock(tmp_path / "index"):
        other = threading.Thread(target=second_builder)
        other.start()
        other.join(timeout=0.5)
        assert other.is_alive()  # still waiting for the lock
        order.append("first")
    other.join()
    assert order == ["first", "second"]


def test_the_next_build_removes_a_killed_builds_temporary_folder(tmp_path):
    target = tmp_path / "index"
    stale = target / f"{index_mod.TMP_PREFIX}build-20260101T000000-deadbeef"
    stale.mkdir(parents=True)
    (stale / "sentence_vectors.npy").write_bytes(b"half written")
    keep = target / "build-20260101T000000-cafecafe"
    keep.mkdir()
    assert not index_mod.build_running(target)
    with index_mod.build_lock(target):
        assert not stale.exists() and keep.exists()  # only temporary folders go
        assert index_mod.build_running(target)  # the lock is seen from any open of the lock file
    assert not index_mod.build_running(target)


def test_a_held_build_lock_keeps_another_builders_temporary_folder(tmp_path):
    """A temporary folder is only removed by whoever holds the lock, so never while it is being written."""
    import subprocess
    import sys

    target = tmp_path / "index"
    target.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from qa import index as m\n"
        f"t = Path({str(target)!r})\n"
        "with m.build_lock(t):\n"
        "    (t / (m.TMP_PREFIX + 'build-in-progress')).mkdir(); print('held', flush=True); time.sleep(60)\n")],
        stdout=subprocess.PIPE, text=True, cwd=str(SEEDS.parent))
    in_progress = target / f"{index_mod.TMP_PREFIX}build-in-progress"
    lock = index_mod.build_lock(target)
    waiting = threading.Thread(target=lock.__enter__, daemon=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert index_mod.build_running(target)
        waiting.start()
        waiting.join(timeout=0.5)
        assert waiting.is_alive() and in_progress.exists()
    finally:
        holder.kill()  # the holder dies: its lock is released, and the folder it was writing is stale
        holder.wait()
    waiting.join(timeout=10)
    assert not waiting.is_alive() and not in_progress.exists()
    lock.__exit__(None, None, None)


def test_a_killed_build_leaves_no_split_worker_or_resource_tracker(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    script = (
        "from qa.index import reuse as m\nfrom qa.types import Document\n"
        "m.PARALLEL_SPLIT_CHARS = 0\nm.os.cpu_count = lambda: 2\n"
        "text = 'Title\\n\\n' + ' '.join(f'Sentence number {i} says something.' for i in range(3000))\n"
        "docs = [Document(f'd{i}.txt', 'Title', text) for i in range(400)]\n"
        "m.split_documents(docs, True, lambda done: print(done, flush=True))\n")
    build = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                             cwd=str(SEEDS.parent))
    try:
        deadline = time.monotonic() + 60
        children: set[int] = set()
        while len(children) < 3 and time.monotonic() < deadline:  # two workers and the resource tracker
            children = descendants(build.pid)
            time.sleep(0.1)
        assert len(children) >= 3, "the split pool did not start"
    finally:
        build.send_signal(signal.SIGKILL)
        build.wait()
    deadline = time.monotonic() + 5
    while any(alive(c) for c in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [c for c in children if alive(c)]


def test_documents_that_tell_the_same_story_are_found_by_their_mean_vectors(seed_engine):
    idx = seed_engine.index
    rows, vectors = idx.document_vectors
    assert sorted(rows) == sorted(idx.document_sentences) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0)
    first, second = sorted(rows)
    cosine = float(vectors[rows[first]] @ vectors[rows[second]])
    assert same_story(idx, [first], cosine - 1e-4) == [first, second]  # both seeds tell one story
    assert same_story(idx, [first], cosine + 1e-4) == [first]
    assert same_story(idx, ["not-a-document.txt"], 0.0) == ["not-a-document.txt"]


# -- publishing and loading while other processes do ---------------------------------------------------------

HARBOUR = Document("a.txt", "Harbour", "Harbour reopens\n\nThe Kestrel harbour reopened on Monday. Boats returned.\n")
BRIDGE = Document("b.txt", "Bridge", "Bridge closed\n\nThe Aldgate bridge was closed in March. Traffic moved.\n")


def _build(docs, target):
    spec = index_mod.BuildSpec(model="hashed", passage_size=3, passage_overlap=1)
    with index_mod.build_lock(target):
        return index_mod.build(docs, HashedEncoder(), spec, target)


def test_a_build_being_read_is_kept_until_its_readers_have_moved(tmp_path):
    target = tmp_path / "idx"
    first = _build([HARBOUR], target)
    reader = index_mod.load(target)  # a server serving the first build
    second = _build([HARBOUR, BRIDGE], target)
    assert first.exists() and reader.path == first  # leased: not removed under its reader
    reader.lease.release()
    third = _build([BRIDGE], target)
    assert [p.name for p in target.glob("build-*")] == [third.name]  # nobody reads the first or the second now
    assert second.name != third.name
    assert not list(target.glob(f"{index_mod.TMP_PREFIX}*"))  # removed builds leave no trash behind


def test_a_load_whose_build_is_replaced_and_removed_meanwhile_loads_the_current_one(tmp_path, monkeypatch):
    target = tmp_path / "idx"
    first = _build([HARBOUR], target)
    real_take, found = leases.take, []

    def late(folder):  # another process publishes a new build, and removes this one, before the lease
        if not found:
            found.append(folder)
            _build([HARBOUR, BRIDGE], target)
        return real_take(folder)

    monkeypatch.setattr(leases, "take", late)
    loaded = index_mod.load(target)
    assert found[0].name == first.name and not first.exists()
    assert loaded.path.name == index_mod.published_build(target) and "b.txt" in loaded.documents


def test_the_build_lock_can_be_taken_again_by_the_thread_that_holds_it(tmp_path):
    target = tmp_path / "idx"
    with index_mod.build_lock(target):
        with index_mod.build_lock(target):  # e.g. an update that holds it calls qa.updates.refreshed
            assert index_mod.build_running(target)
        assert index_mod.build_running(target)  # released by the outer hold only
    assert not index_mod.build_running(target)

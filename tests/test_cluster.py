"""The sharded index (qa/cluster): the same answers as one index, built on a local 2-CPU Ray instance
and served through Ray Serve, and no Ray import without it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from qa.conversation.followup import same_story
from qa.types import Document

ROOT = Path(__file__).resolve().parent.parent
GOLD = ROOT / "eval" / "gold.jsonl"
CONVERSATIONS = ROOT / "eval" / "conversations.jsonl"


def generated_documents(seed_docs: list[Document], n: int = 24) -> list[Document]:
    """News-like articles made of the seeds' sentences with their words reordered (a vocabulary shared with
    the seeds, so that statistics across shards matter). No verbatim copy of a seed: a sharded build embeds
    it in other batches than one process, so the tie between the copies falls by the seventh digit of their
    vectors; copies embedded alike tie in the updates test."""
    from qa.ingest import split_sentences

    rng = np.random.default_rng(7)
    sentences = [s.text for d in seed_docs for s in split_sentences(d) if s.kind == "body"]
    docs = []
    for i in range(n):
        paragraphs = []
        for j in rng.choice(len(sentences), size=6, replace=False).tolist():
            words = sentences[j].rstrip(".").split()
            rng.shuffle(words)
            paragraphs.append(" ".join(words).capitalize() + ".")
        title = f"Regional report {i}: " + " ".join(sentences[i % len(sentences)].split()[:5])
        docs.append(Document(f"gen_{i:03d}.txt", title, title + "\n\n" + "\n\n".join(paragraphs) + "\n"))
    return docs


def ask_all(engine, questions: list[str]) -> list:
    return [engine.ask(q, abstain=False) for q in questions]


@pytest.fixture(scope="module")
def squad():
    """The SQuAD 2.0 dev half (its paragraphs and questions) when the shared data is here, else None."""
    from qa.config import Settings
    from qa.datasets import load_squad

    try:
        return load_squad(Settings().shared_data_dir)
    except FileNotFoundError:
        return None


SQUAD_ARTICLES = ("00", "01", "02", "03")  # 4 of SQuAD-half's 35 articles: its first 100 questions and others


@pytest.fixture(scope="module")
def corpus(squad) -> list[Document]:
    """The seeds and generated articles, and the paragraphs of SQuAD-half's first articles when the shared data
    is here (the whole half would take minutes to index twice, single and sharded; benchmarks/ray_bench.py
    measures it). Sorted by id, as a folder's documents are read: the corpus's canonical order."""
    from qa.ingest import load_corpus

    seeds = load_corpus(ROOT / "seeds")
    paragraphs = [d for d in squad.documents if d.doc_id.split("-")[1] in SQUAD_ARTICLES] if squad else []
    return sorted(seeds + generated_documents(seeds) + paragraphs, key=lambda d: d.doc_id)


@pytest.fixture(scope="module")
def cluster_settings(seed_settings, seed_engine):
    """Settings of an index beside the seeds' (sharing its ONNX export, which ``seed_engine`` made)."""
    return seed_settings.model_copy(update={"index_name": "cluster"})


@pytest.fixture(scope="module")
def single(cluster_settings, corpus):
    """One index of the same corpus. Its table of close sentences is off (``near_limit`` 0): a sharded front
    holds no sentence vectors and looks for ``also_in`` and ``disagrees`` among the candidates only, as
    one index then does (docs/SCALE.md)."""
    from qa.engine import Engine

    engine = Engine.open(cluster_settings, documents=corpus)
    return engine.with_index(engine.index, profile=engine.profile.updated({"ranking.near_limit": 0}))


@pytest.fixture(scope="module")
def local_ray():
    pytest.importorskip("ray")
    from qa.cluster.build import ray_session

    with ray_session(num_cpus=2):
        yield


@pytest.fixture(scope="module")
def shard_set(local_ray, cluster_settings, corpus):
    from qa.cluster.build import build_sharded

    return build_sharded(corpus, cluster_settings, shards=2, workers=2)


@pytest.fixture(scope="module")
def conversations() -> list[list[str]]:
    """The questions of each gold conversation (eval/conversations.jsonl), turn by turn."""
    lines = CONVERSATIONS.read_text(encoding="utf-8").splitlines()
    return [[t["question"] for t in json.loads(line)["turns"]] for line in lines if line.strip()]


@pytest.fixture(scope="module")
def questions(squad) -> list[str]:
    """Every question of the seed gold set, then SQuAD's first 100 when the shared data is here."""
    gold = [json.loads(line)["question"] for line in GOLD.read_text(encoding="utf-8").splitlines() if line.strip()]
    return gold + ([q.question for q in squad.questions[:100]] if squad is not None else [])


def play(engine, conversations: list[list[str]], store: Path, mode: str = "hybrid") -> list:
    """Every conversation asked turn by turn through ``engine.ask`` (kept in a store of its own at ``store``):
    the answers of all the turns, in order."""
    from qa.conversation import ConversationStore, attach_store

    attach_store(engine, ConversationStore(store))
    try:
        return [engine.ask(q, conversation_id=f"c{n}", create_missing=True, abstain=False, retriever=mode)
                for n, questions in enumerate(conversations) for q in questions]
    finally:
        engine.conversations.close()


def assert_same_up_to_copies(expected, got) -> None:
    """As :func:`assert_same`, except which of two copies of a sentence (the same text in two documents, with
    the same score to 1e-5) leads its group and which is listed in ``also_in``: a sharded build embeds a
    sentence in other batches than one process does, which moves its vector in the seventh digit, so such a
    tie may fall either way (docs/SCALE.md, "Limits")."""
    for a, b in zip(expected, got, strict=True):
        assert [s.text for s in b.sentences] == [s.text for s in a.sentences], a.question
        assert [{s.citation, *s.also_in} for s in b.sentences] == [{s.citation, *s.also_in} for s in a.sentences]
        np.testing.assert_allclose([s.score for s in b.sentences], [s.score for s in a.sentences], atol=1e-5)
        assert b.answered == a.answered and abs(b.confidence - a.confidence) <= 1e-5, a.question
        assert not b.degraded


def test_partition_keeps_corpus_order_and_balances_length():
    from qa.cluster.shards import partition

    docs = [Document(str(i), "", "x" * n) for i, n in enumerate([10, 10, 10, 10, 40])]
    parts = partition(docs, 2)
    assert [d for p in parts for d in p] == docs
    assert [len(p) for p in parts] == [4, 1]
    assert len(partition(docs[:1], 3)) == 1


def test_statistics_from_counts_equal_rank_bm25():
    from rank_bm25 import BM25Okapi

    from qa.cluster.shards import _document_frequencies
    from qa.lexical import CorpusStatistics

    corpus = [["a", "b", "a"], ["b", "c"], ["b"], ["d", "b", "e"]]
    first, second = _document_frequencies(corpus[:2]), _document_frequencies(corpus[2:])
    merged = dict(first)
    for term, n in second.items():
        merged[term] = merged.get(term, 0) + n
    stats = CorpusStatistics.okapi(merged, len(corpus), sum(map(len, corpus)))
    bm = BM25Okapi(corpus)
    assert stats.idf == bm.idf and stats.avgdl == bm.avgdl


def test_candidate_lexicon_scores_as_the_corpus_index():
    from qa.cluster.front import CorpusLexicon
    from qa.lexical import LexicalIndex

    corpus = [["a", "b", "a"], ["b", "c"], ["c"], ["d", "a"], ["e"], ["e", "b"]]
    full = LexicalIndex.build(corpus)
    terms = ["b", "d", "unknown"]
    rows = np.array([1, 3, 5])  # some sentences: the candidates
    counts = np.array([[corpus[i].count(t) for t in terms] for i in rows], dtype=np.int32)
    view = CorpusLexicon.of_corpus(full.vocab, full.idf, full.n_docs, full.avgdl).of_rows(
        terms, np.array([len(corpus[i]) for i in rows]), counts)
    local = np.arange(len(rows))
    np.testing.assert_array_equal(view.scores_of(terms, local), full.scores_of(terms, rows))
    np.testing.assert_array_equal(view.contains(local, terms), full.contains(rows, terms))
    assert view.n_docs == len(corpus) and view.idf_of("c") == full.idf_of("c") and view.idf_of("unknown") is None


def test_two_shards_on_ray_answer_as_one_index(single, shard_set, cluster_settings, questions):
    from qa.cluster.front import open_local

    assert len(shard_set.shards) == 2 and shard_set.manifest["sentences"] == len(single.index.sentences)
    sharded = open_local(cluster_settings, shard_set.path.parent)
    assert sharded.index.manifest["documents"] == single.index.manifest["documents"]
    for mode in ("hybrid", "bm25", "dense"):
        expected = [single.ask(q, abstain=False, retriever=mode) for q in questions]
        assert_same_up_to_copies(expected, [sharded.ask(q, abstain=False, retriever=mode) for q in questions])


def test_front_holds_the_document_vectors_of_one_index(single, shard_set, cluster_settings):
    from qa.cluster.front import open_local

    sharded = open_local(cluster_settings, shard_set.path.parent)
    rows, vectors = sharded.index.document_vectors
    expected_rows, expected = single.index.document_vectors
    assert rows == expected_rows
    np.testing.assert_allclose(vectors, expected, atol=1e-6)
    first = next(iter(single.index.documents))
    assert same_story(sharded.index, [first], 0.85) == same_story(single.index, [first], 0.85)


def test_conversations_on_two_shards_answer_as_one_index(single, shard_set, cluster_settings, conversations,
                                                          tmp_path):
    from qa.cluster.front import open_local

    sharded = open_local(cluster_settings, shard_set.path.parent)
    for mode in ("hybrid", "bm25"):
        expected = play(single, conversations, tmp_path / f"single-{mode}.sqlite3", mode)
        got = play(sharded, conversations, tmp_path / f"sharded-{mode}.sqlite3", mode)
        assert_same_up_to_copies(expected, got)
        assert [a.understood_as for a in got] == [a.understood_as for a in expected]


class OneShardDown:
    """The shards in process, one of which never answers (as a dead replica)."""

    def __init__(self, shards, down: int):
        self.shards, self.down = shards, down

    def __len__(self) -> int:
        return len(self.shards)

    def fan_out(self, method: str, calls: dict[int, tuple]) -> dict:
        up = self.shards.fan_out(method, {i: a for i, a in calls.items() if i != self.down})
        return {**up, **({self.down: None} if self.down in calls else {})}


def test_a_dead_shard_leaves_a_degraded_answer_from_the_others(shard_set, cluster_settings, questions,
                                                                conversations, tmp_path):
    from qa.cluster.front import open_local

    engine = open_local(cluster_settings, shard_set.path.parent)  # opening reads every shard's catalogue
    shard_docs = {s.doc_id for s in engine.shards.searchers[0].index_of().sentences}
    engine.shards = OneShardDown(engine.shards, down=1)
    for question in questions[:10]:
        answer = engine.ask(question, abstain=False)
        assert answer.degraded and answer.sentences
        assert {s.citation.doc_id for s in answer.sentences} <= shard_docs
    for answer in play(engine, conversations[:2], tmp_path / "down.sqlite3"):  # follow-ups too
        assert answer.degraded and {s.citation.doc_id for s in answer.sentences} <= shard_docs


@pytest.fixture(scope="module")
def changing(local_ray, cluster_settings, corpus, tmp_path_factory):
    """A corpus folder of the seeds and generated articles (as files), its index built once as one index and
    once as two shards (with ``settings.corpus_dir`` the folder, which updates read)."""
    from qa.cluster.build import build_sharded
    from qa.engine import Engine
    from qa.ingest import load_corpus

    folder = tmp_path_factory.mktemp("changing")
    for doc in corpus:  # the seeds and the generated articles
        if not doc.doc_id.startswith("squad"):
            (folder / doc.doc_id).write_text(doc.raw, encoding="utf-8")
    settings = cluster_settings.model_copy(update={"corpus_dir": folder, "index_name": "changing"})
    docs = load_corpus(folder)
    single = Engine.open(settings)
    single = single.with_index(single.index, profile=single.profile.updated({"ranking.near_limit": 0}))
    return settings, single, build_sharded(docs, settings, shards=2, workers=2)


def test_updates_on_two_shards_answer_as_one_index(changing, questions, conversations, tmp_path):
    """Adds (one an exact copy of a document of the other shard: their passages tie), a replacement, a
    deletion and a change found in the folder, each written as a segment by the shard that owns the file, then
    the shards' merges: after each step every answer (the first gold questions, then the first gold
    conversations) equals one index's, updated the same way."""
    from qa import updates
    from qa.cluster.front import open_local
    from qa.cluster.search import ShardSearcher
    from qa.cluster.updates import ShardedIndex, changed_files, home_shard
    from qa.ingest import load_corpus

    settings, single, shard_set = changing
    folder = settings.corpus_dir
    sharded = open_local(settings, shard_set.path.parent,
                         lambda f: ShardSearcher(f, nprobe=settings.ann_nprobe, settings=settings))
    index = ShardedIndex(shard_set.path.parent, sharded.shards)
    near_off = single.profile
    generated = sorted(p.name for p in folder.iterdir() if p.name.startswith("gen_0"))
    note = "Field note\n\nThe council of Glenhaven approved 412 new homes in March 2023. It met in the town hall.\n"
    copy = next(name for name in (f"zz_copy_{k}.txt" for k in range(20))
                if home_shard(name, 2) != home_shard("aa_note.txt", 2))  # the same text in the other shard
    steps = [
        {"aa_note.txt": note},
        {copy: note, generated[3]: "Regional report replaced\n\nThe river port of Dunmarrow reopened after the "
                                   "floods.\n"},
        {generated[5]: None},
    ]
    asked = questions[:15] + ["Where did the council approve new homes?", "Which port reopened after the floods?"]
    for step in steps:
        for name, text in step.items():
            if text is None:
                (folder / name).unlink()
            else:
                (folder / name).write_text(text, encoding="utf-8")
        single = updates.with_files(single, list(step)).with_index(updates.published(single).index,
                                                                   profile=near_off)
        fingerprint = sharded.index.manifest["corpus_fingerprint"]
        sharded = index.with_files(sharded, list(step))
        assert sharded.index.manifest["documents"] == single.index.manifest["documents"]
        assert sharded.index.manifest["corpus_fingerprint"] != fingerprint  # what /health reports
        for mode in ("hybrid", "bm25", "dense"):
            assert_same_up_to_copies([single.ask(q, abstain=False, retriever=mode) for q in asked],
                                     [sharded.ask(q, abstain=False, retriever=mode) for q in asked])
    assert {generated[5]} & set(sharded.index.documents) == set()
    (folder / generated[7]).write_text("Harbour report\n\nThe Kestrel Point lighthouse was painted red.\n",
                                       encoding="utf-8")  # a change found in the folder (--watch)
    assert changed_files(sharded, load_corpus(folder)) == [generated[7]]
    single = updates.refreshed(single).with_index(updates.published(single).index, profile=near_off)
    sharded = index.refreshed(sharded)
    asked.append("What colour was the Kestrel Point lighthouse painted?")
    assert_same_up_to_copies([single.ask(q, abstain=False) for q in asked],
                             [sharded.ask(q, abstain=False) for q in asked])
    assert index.merge_due(sharded) >= 0  # whatever the policy finds due; the answers stay the same
    sharded = index.published(sharded)
    assert index.name_of(sharded) == index.published_name(settings)
    expected = play(single, conversations[:8], tmp_path / "single.sqlite3")
    assert_same_up_to_copies(expected, play(sharded, conversations[:8], tmp_path / "sharded.sqlite3"))


def test_serving_on_ray_serve_and_a_dead_shard(shard_set, cluster_settings, single, questions, conversations,
                                                tmp_path):
    import httpx
    import ray
    from ray import serve

    from qa.cluster import serve as cluster_serve

    url = "http://127.0.0.1:18765"
    cluster_serve.run(cluster_settings, shard_set.path.parent, port=18765, blocking=False, shard_timeout_s=1.0)
    try:
        question = questions[0]
        expected = [(s.citation.doc_id, s.citation.sentence_index)
                    for s in single.ask(question, abstain=False).sentences]

        def ask() -> dict:
            response = httpx.post(f"{url}/ask", json={"question": question, "abstain": False}, timeout=60)
            assert response.status_code == 200  # never a 5xx, whatever the shards do
            return response.json()

        got = ask()
        assert [(s["doc_id"], s["sentence_index"]) for s in got["sentences"]] == expected
        assert "degraded" not in got
        opener, follow_up = conversations[0][:2]  # a conversation: its id comes back with the first answer
        started = httpx.post(f"{url}/ask", json={"question": opener, "abstain": False}, timeout=60).json()
        turn = httpx.post(f"{url}/ask", json={"question": follow_up, "abstain": False,
                                              "conversation_id": started["conversation_id"]}, timeout=60)
        assert turn.status_code == 200
        alone = play(single, [[opener, follow_up]], tmp_path / "single.sqlite3")[1]
        assert [(s["doc_id"], s["sentence_index"]) for s in turn.json()["sentences"]] == \
            [(s.citation.doc_id, s.citation.sentence_index) for s in alone.sentences]
        assert turn.json().get("understood_as") == alone.understood_as
        actors = [a for a in ray.util.list_named_actors(all_namespaces=True) if "shard-1" in a["name"]]
        ray.kill(ray.get_actor(actors[0]["name"], namespace=actors[0]["namespace"]), no_restart=True)
        after = ask()  # from shard 0 alone, unless Serve has already replaced the replica
        assert after.get("degraded") or [(s["doc_id"], s["sentence_index"]) for s in after["sentences"]] == expected
        for _ in range(120):  # Serve replaces the dead replica: answers are whole again
            if not ask().get("degraded"):
                break
            time.sleep(1)
        else:
            pytest.fail("the dead shard replica was not replaced within two minutes")
    finally:
        serve.shutdown()


def test_documents_put_and_deleted_through_ray_serve(changing):
    """PUT and DELETE with the admin token on `qa serve --ray`: the front routes the file to a shard, which
    indexes it as a segment; the next question is answered from it, and after the DELETE no longer."""
    import httpx
    from pydantic import SecretStr
    from ray import serve

    from qa.cluster import serve as cluster_serve

    settings, _, shard_set = changing
    settings = settings.model_copy(update={"admin_token": SecretStr("cluster-secret")})
    url, auth = "http://127.0.0.1:18766", {"Authorization": "Bearer cluster-secret"}
    cluster_serve.run(settings, shard_set.path.parent, port=18766, blocking=False)
    try:
        def cited(question: str) -> list[str]:
            answer = httpx.post(f"{url}/ask", json={"question": question, "abstain": False}, timeout=60).json()
            return [s["doc_id"] for s in answer["sentences"]]

        text = "Harbour news\n\nThe lighthouse of Kestrel Point was repainted red and white in May 2023.\n"
        assert httpx.put(f"{url}/documents/kestrel.txt", content=text, timeout=60).status_code == 401
        put = httpx.put(f"{url}/documents/kestrel.txt", content=text, headers=auth, timeout=120)
        assert put.status_code == 201, put.text
        assert cited("What colour was the Kestrel Point lighthouse repainted?")[0] == "kestrel.txt"
        assert (settings.corpus_dir / "kestrel.txt").read_text(encoding="utf-8") == text
        gone = httpx.delete(f"{url}/documents/kestrel.txt", headers=auth, timeout=120)
        assert gone.status_code == 200, gone.text
        assert "kestrel.txt" not in cited("What colour was the Kestrel Point lighthouse repainted?")
        assert httpx.get(f"{url}/documents/kestrel.txt", timeout=60).status_code == 404
    finally:
        serve.shutdown()


def test_without_ray_nothing_imports_it():
    code = "import sys, qa.cli, qa.engine, qa.api; sys.exit('ray' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0

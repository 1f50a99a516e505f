"""qa/agreement.py: the table of close sentences of other documents, and also_in / disagrees through the
engine on a tiny corpus indexed with the stand-in encoder (tests/fakes.py)."""

from __future__ import annotations

import numpy as np
import pytest

from qa import agreement, claims
from qa import index as index_mod
from qa.agreement import NearSentences
from qa.config import Settings
from qa.engine import Engine, build_spec
from qa.ingest import load_corpus
from qa.profile import load_profile
from tests.fakes import HashedEncoder, engine_over

CLASH = "Six Taliban fighters were killed in the clash near Torkham on Monday, officials in Nangarhar said."
ARTICLES = {
    "torkham.txt": f"Torkham crossing reopens after border clash\n\n{CLASH}\n\n"
                   "The crossing reopened on Friday for trucks carrying fruit and vegetables.\n",
    "wire.txt": f"Deadly clash at the Afghan border\n\n{CLASH}\n\nThe border area has seen repeated clashes.\n",
    "tribune.txt": "Border clash toll disputed\n\n" + CLASH.replace("Six", "Nine") + "\n\n"
                   "Traders on both sides closed their shops.\n",
    "herald.txt": "Clash at the border\n\n" + CLASH.replace("Nangarhar", "Kunar") + "\n\n"
                  "Schools in the district stayed closed.\n",
    "daily.txt": "Fighting at the crossing\n\n" + CLASH.replace("Monday", "Sunday") + "\n\n"
                 "The army sent more troops.\n",
    "sindh.txt": "Floods in Sindh\n\nHeavy monsoon rain flooded villages across Sindh province.\n\n"
                 "Relief agencies sent tents and food to the families who lost their homes.\n",
    "cricket.txt": "Lahore hosts the cricket final\n\nThe national cricket final will be played in Lahore on Sunday.\n",
    "budget.txt": "Government presents the annual budget\n\n"
                  "The finance ministry presented a budget that raises spending on schools and hospitals.\n",
}


# Worded as the original: the stand-in encoder knows only shared word pieces.
QUESTION = "Were six Taliban fighters killed in the clash near Torkham on Monday, say officials in Nangarhar?"


def _engine(tmp_path, articles: dict[str, str], **profile_changes) -> Engine:
    """An engine over ``articles`` on the stand-in encoder; ``profile_changes``: the profile's values to change,
    by path (``ranking__near_limit=0`` for ``ranking.near_limit``)."""
    profile = load_profile().updated({k.replace("__", "."): v for k, v in profile_changes.items()})
    return engine_over(tmp_path, articles, profile)


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return _engine(tmp_path_factory.mktemp("agreement"), ARTICLES)


def _first(engine: Engine, question: str, **kwargs):
    answer = engine.ask(question, top_k=3, abstain=False, **kwargs)
    first = next(s for s in answer.sentences if "Taliban fighters" in s.text)
    return answer, first


def test_a_copy_is_also_in_and_a_changed_one_disagrees(engine):
    answer, first = _first(engine, QUESTION)
    same = {c.doc_id for c in first.also_in} | {first.citation.doc_id}
    assert same == {"torkham.txt", "wire.txt"}
    differ = {d.citation.doc_id: d.differs for d in first.disagrees}
    assert differ == {"tribune.txt": (("Six", "Nine"),), "herald.txt": (("Nangarhar", "Kunar"),),
                      "daily.txt": (("Monday", "Sunday"),)}
    for d in first.disagrees:
        raw = engine.index.documents[d.citation.doc_id].raw
        assert raw[d.citation.start:d.citation.end] == d.text
    # A disagreeing sentence is shown beside the answer, not again as an answer of its own.
    assert sum("Taliban fighters" in s.text for s in answer.sentences) == 1


def test_disagreements_are_found_beyond_the_candidates(tmp_path):
    """With one candidate passage, the changed copies are no candidates: the index's table finds them."""
    engine = _engine(tmp_path, ARTICLES, ranking__candidate_passages=1)
    scored = engine.score(engine.query("Six Taliban fighters killed Torkham Monday Nangarhar trucks fruit vegetables", "bm25"), "bm25")
    docs = {engine.index.sentences[i].doc_id for i in scored.ids.tolist()}
    assert not docs & {"tribune.txt", "herald.txt", "daily.txt"}
    _, first = _first(engine, "Six Taliban fighters killed Torkham Monday Nangarhar trucks fruit vegetables", retriever="bm25")
    assert {d.citation.doc_id for d in first.disagrees} == {"tribune.txt", "herald.txt", "daily.txt"}
    assert {c.doc_id for c in first.also_in} | {first.citation.doc_id} == {"torkham.txt", "wire.txt"}


def test_without_the_table_only_candidates_are_compared(tmp_path):
    engine = _engine(tmp_path, ARTICLES, ranking__candidate_passages=1, ranking__near_limit=0)
    assert engine.near_sentences is None
    _, first = _first(engine, "Six Taliban fighters killed Torkham Monday Nangarhar trucks fruit vegetables", retriever="bm25")
    assert first.disagrees == []


def test_a_sentence_that_says_more_is_its_own_answer(tmp_path):
    more = {**ARTICLES, "tribune.txt": "Border clash\n\n" + CLASH.replace(" on Monday", "") + "\n"}
    engine = _engine(tmp_path, more)
    answer = engine.ask(QUESTION, top_k=5, abstain=False)
    places = [{s.citation.doc_id, *(c.doc_id for c in s.also_in)} for s in answer.sentences]
    assert not any("tribune.txt" in p and "torkham.txt" in p for p in places)
    assert not any(d.citation.doc_id == "tribune.txt" for s in answer.sentences for d in s.disagrees)


def test_the_answer_object_carries_disagrees(engine):
    answer, first = _first(engine, QUESTION)
    out = next(s for s in answer.to_dict()["sentences"] if "Taliban fighters" in s["text"])
    d = next(d for d in out["disagrees"] if d["doc_id"] == "tribune.txt")
    assert set(d) == {"doc_id", "title", "sentence_index", "start", "end", "page", "text", "differs"}
    assert d["page"] is None and d["differs"] == [["Six", "Nine"]]


def _brute_pairs(vectors, documents, keys, threshold):
    sims = vectors @ vectors.T
    same_key = (keys[:, None] == keys[None, :]) & (keys[:, None] != 0)
    a, b = np.nonzero(((sims >= threshold) | same_key) & (documents[:, None] != documents[None, :]))
    return {(int(i), int(j)) for i, j in zip(a, b)}


def _keys(n: int, shared: list[tuple[int, ...]]) -> np.ndarray:
    """Wording keys: 0 for most sentences, one shared key per tuple of sentence ids."""
    keys = np.zeros(n, dtype=np.int64)
    for k, ids in enumerate(shared, start=1):
        keys[list(ids)] = 1000 + k
    return keys


def _table_pairs(table: NearSentences):
    a, b, _ = table.pairs()
    return set(zip(a.tolist(), b.tolist()))


def _vectors(n: int, seed: int):
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n, 16)).astype(np.float32)
    base[1::4] = base[::4][: len(base[1::4])] + 0.1 * rng.standard_normal((len(base[1::4]), 16))  # near copies
    return base / np.linalg.norm(base, axis=1, keepdims=True)


def test_the_table_holds_every_close_pair_of_other_documents():
    """Close by cosine, or worded the same (a shared key: pairs 0–59 and 10–11–40, whatever their cosine;
    10 and 11 share a document)."""
    vectors, documents, keys = _vectors(60, 0), np.arange(60) // 3, _keys(60, [(0, 59), (10, 11, 40)])
    table = NearSentences.compute(vectors, documents, keys, 0.8, limit=100, batch=7)
    assert _table_pairs(table) == _brute_pairs(vectors, documents, keys, 0.8)
    assert {(0, 59), (10, 40), (11, 40)} <= _table_pairs(table) and (10, 11) not in _table_pairs(table)
    for sid in range(len(table)):
        ids, cosines = table.of(sid)
        assert list(cosines) == sorted(cosines, reverse=True)
        assert np.allclose(cosines, vectors[ids] @ vectors[sid], atol=1e-5)


def test_the_table_keeps_the_closest_up_to_its_limit():
    vectors, documents = _vectors(60, 1), np.arange(60)
    full = NearSentences.compute(vectors, documents, np.zeros(60, np.int64), 0.0, limit=100)
    capped = NearSentences.compute(vectors, documents, np.zeros(60, np.int64), 0.0, limit=3)
    for sid in range(60):
        assert capped.of(sid)[0].tolist() == full.of(sid)[0][:3].tolist()


def test_an_updated_table_equals_one_computed_afresh():
    """Documents 0–2 kept, 3 changed, 4 removed, 5 added: only the changed and added ones are searched."""
    old_vectors, old_docs = _vectors(30, 2), np.arange(30) // 6
    old = NearSentences.compute(old_vectors, old_docs, _keys(30, [(1, 20, 27), (2, 13)]), 0.7, limit=100)
    kept_rows = np.arange(18)
    rng = np.random.default_rng(3)
    changed = old_vectors[18:24] + 0.3 * rng.standard_normal((6, 16)).astype(np.float32)
    added = old_vectors[:6] + 0.05 * rng.standard_normal((6, 16)).astype(np.float32)
    new_vectors = np.concatenate([old_vectors[kept_rows], changed, added])
    new_vectors /= np.linalg.norm(new_vectors, axis=1, keepdims=True)
    new_docs = np.arange(30) // 6
    kept = np.full(30, -1)
    kept[kept_rows] = kept_rows
    new_keys = _keys(30, [(1, 20, 27), (2, 26)])  # 13 kept its key; 20 and 27 are new sentences, 26 too
    new_keys[13] = 1002
    asked = []
    updated = old.updated(kept, new_vectors, new_docs, lambda i: asked.append(i) or int(new_keys[i]))
    assert sorted(asked) == list(range(18, 30))  # only the changed and added documents' sentences are read
    afresh = NearSentences.compute(new_vectors, new_docs, new_keys, 0.7, limit=100)
    assert _table_pairs(updated) == _table_pairs(afresh)
    for sid in range(30):  # each sentence's neighbours closest first, as a table computed afresh orders them
        assert updated.of(sid)[0].tolist() == afresh.of(sid)[0].tolist(), sid
    order = np.concatenate([np.arange(17, -1, -1), np.arange(18, 30)])  # the kept sentences' ids reversed (as a merge renumbers): sorted again
    reordered = kept.copy()
    reordered[:18] = kept[:18][::-1]
    moved = old.updated(reordered, new_vectors[order], new_docs[order], lambda i: int(new_keys[order][i]))
    assert _table_pairs(moved) == _table_pairs(NearSentences.compute(new_vectors[order], new_docs[order],
                                                                     new_keys[order], 0.7, limit=100))


def test_the_table_is_saved_with_the_build_and_read_back(engine):
    table = engine.near_sentences
    r = engine.profile.ranking
    path = agreement.table_path(engine.index, r.near_cosine, r.near_limit)
    assert path.exists() and path.parent == engine.index.path
    again = NearSentences.load(path)
    assert _table_pairs(again) == _table_pairs(table) and again.threshold == pytest.approx(table.threshold)


def test_a_changed_corpus_carries_the_table_over(tmp_path, engine):
    corpus = tmp_path / "c"
    index_root = tmp_path / "i"
    s = Settings(corpus_dir=corpus, index_root=index_root, data_dir=tmp_path / "v", onnx_queries=False)
    corpus.mkdir()
    for name, text in ARTICLES.items():
        (corpus / name).write_text(text, encoding="utf-8")
    encoder = HashedEncoder()
    index_mod.build(load_corpus(corpus), encoder, build_spec(s), s.index_dir())
    first = Engine(s, index_mod.load(s.index_dir()), encoder)
    assert first.near_sentences is not None
    (corpus / "daily.txt").unlink()
    (corpus / "extra.txt").write_text("More clashes\n\n" + CLASH.replace("Six", "Seven") + "\n", encoding="utf-8")
    index_mod.build(load_corpus(corpus), encoder, build_spec(s), s.index_dir())
    second = first.with_index(index_mod.load(s.index_dir()))
    keys = [claims.wording_key(x.text, second.claim_vocabulary) for x in second.index.sentences]
    r = second.profile.ranking
    fresh = NearSentences.compute(np.asarray(second.index.sentence_vectors), second.index.sentence_documents, keys,
                                  r.near_cosine, r.near_limit)
    assert _table_pairs(second.near_sentences) == _table_pairs(fresh)
    _, head = _first(second, QUESTION)
    assert "extra.txt" in {d.citation.doc_id for d in head.disagrees}


def test_every_seed_sentence_is_in_one_statement(seed_engine):
    """On the seed articles (the real model): each sentence is a head, the same claim as its head (within the
    duplicate cosine) or a disagreement with it (of another document, within the near cosine)."""
    from qa import claims

    index, r = seed_engine.index, seed_engine.profile.ranking
    ids = np.arange(len(index.sentences))
    groups = agreement.group_statements(index, ids, len(ids), r.duplicate_cosine, r.near_cosine)
    members = [sid for g in groups for sid in [g.head, *g.same, *(d for d, _ in g.differ)]]
    assert sorted(members) == ids.tolist()
    vectors = np.asarray(index.sentence_vectors)
    text = [x.text for x in index.sentences]
    for g in groups:
        for other in g.same:
            assert float(vectors[g.head] @ vectors[other]) >= r.duplicate_cosine
            assert claims.compare(text[g.head], text[other]).verdict == "same"
        for other, differs in g.differ:
            assert index.sentences[other].doc_id != index.sentences[g.head].doc_id
            assert claims.compare(text[g.head], text[other]).differs == differs
    assert any(g.same and index.sentences[g.same[0]].doc_id != index.sentences[g.head].doc_id for g in groups)
    assert len(agreement.group_statements(index, ids, 3, r.duplicate_cosine, r.near_cosine)) == 3


# -- what the user sees: the API, its schema, the stored turns and the CLI -----------------------------------


def test_the_api_returns_and_documents_disagrees(engine):
    from fastapi.testclient import TestClient

    from qa.api import create_app

    with TestClient(create_app(engine)) as client:
        body = client.post("/ask", json={"question": QUESTION, "top_k": 3, "abstain": False}).json()
        first = next(s for s in body["sentences"] if "Taliban fighters" in s["text"])
        d = next(d for d in first["disagrees"] if d["doc_id"] == "tribune.txt")
        assert d["page"] is None and d["differs"] == [["Six", "Nine"]]
        assert "understood_as" not in body and "context" not in first  # unset keys stay absent
        turns = client.get(f"/conversations/{body['conversation_id']}").json()["turns"]
        at = [c["doc_id"] for c in turns[0]["citations"]].index(first["doc_id"])
        assert {x["doc_id"] for x in turns[0]["disagrees"][at]} == {x["doc_id"] for x in first["disagrees"]}
        schema = client.get("/openapi.json").json()["components"]["schemas"]
    assert set(schema["DisagreementOut"]["properties"]) == {"doc_id", "title", "sentence_index", "start", "end",
                                                            "page", "text", "differs"}
    assert "disagrees" in schema["AnswerSentenceOut"]["properties"]
    assert "disagrees" in schema["TurnOut"]["properties"]


def test_a_stored_turn_keeps_its_disagreements(engine, tmp_path):
    from qa.conversation.store import ConversationStore, Turn

    answer, _ = _first(engine, QUESTION)
    store = ConversationStore(tmp_path / "c.sqlite3")
    cid = store.append(None, Turn.from_answer(QUESTION, answer), create=True)
    (turn,) = store.turns(cid)
    assert turn.disagrees == [list(s.disagrees) for s in answer.sentences]
    store.close()


def test_the_cli_shows_both_versions_side_by_side(engine):
    from rich.console import Console

    from qa import console as terminal
    from qa.conversation.store import Turn

    answer, _ = _first(engine, QUESTION)
    console = Console(width=200, record=True, color_system=None)
    terminal.out, saved = console, terminal.out
    try:
        terminal.print_answer(answer)
        shown = console.export_text()
        terminal.print_sources(None, Turn.from_answer(QUESTION, answer))
        sources = console.export_text()
    finally:
        terminal.out = saved
    for text in (shown, sources):
        assert "sources differ: Six / Nine" in text and "sources differ: Nangarhar / Kunar" in text
        assert "tribune.txt" in text and "Nine Taliban fighters" in text

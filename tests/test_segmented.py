"""Segments composed into one index answer as an index built from scratch over the live documents."""

import numpy as np
import pytest

from qa import index as index_mod
from qa.config import Settings
from qa.engine import Engine, build_spec
from qa.index.segmented import compose, content_pieces
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


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("segments")
    settings = Settings(corpus_dir=tmp / "corpus", index_root=tmp / "index", data_dir=tmp / "var", onnx_queries=False)
    encoder = HashedEncoder()
    profile = load_profile().updated({"ranking.near_limit": 0})
    first = _segment(tmp, "s1", [A, B, C], encoder, settings)
    second = _segment(tmp, "s2", [C2, D], encoder, settings)
    content = content_pieces(encoder.vocabulary, first.analyzer.stopwords)
    composed = compose([first, second], [frozenset({"c.txt"}), frozenset()], path=tmp / "gen", manifest={},
                       content=content)
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

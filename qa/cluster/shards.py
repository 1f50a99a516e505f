"""A sharded build: the corpus cut into S shards by document, each a complete index folder whose scores
equal those of one index over the whole corpus.

Shards hold consecutive documents in corpus order, so shard ``s``'s sentence and passage ids are the
single index's ids minus the shard's offsets: ties between equal scores break the same way. What makes a
score depend on the rest of the corpus is gathered across the shards before any is written: BM25's
document frequencies and average lengths (passages and sentences), the word pieces' idf (the ranker's
token weights) and the analyzer's lemma table. Sentence vectors do not depend on the rest of the corpus.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qa import index as index_mod
from qa.index import BuildSpec, encode_texts
from qa.index.rows import content_pieces, piece_weights
from qa.ingest import split_sentences
from qa.lexical import CorpusStatistics, LexicalIndex
from qa.text import Analyzer, default_stopwords
from qa.types import Document, Passage, Sentence

SET_MANIFEST = "shards.json"


@dataclass
class ShardText:
    """One shard's documents split into sentences and passages (ids local to the shard) and analysed."""

    docs: list[Document]
    sentences: list[Sentence]
    passages: list[Passage]
    sentence_terms: list[list[str]]
    passage_terms: list[list[str]]
    lemmas: dict[str, str]


@dataclass
class ShardCounts:
    """What a shard adds to the corpus-wide statistics: small next to its text, sent to the coordinator.
    The frequency tables keep the order in which their terms first occur, as rank-bm25 sums them."""

    sentences: int
    passages: int
    sentence_df: dict[str, int]
    sentence_length: int
    passage_df: dict[str, int]
    passage_length: int
    lemmas: dict[str, str]


@dataclass
class ShardVectors:
    """One shard's sentence vectors, word pieces (vectors, offsets, ids) and each piece's sentence count."""

    sentences: np.ndarray
    tokens: index_mod.SentenceTokens | None
    piece_df: np.ndarray | None


@dataclass
class GlobalStatistics:
    """The corpus-wide statistics every shard is written with."""

    passages: CorpusStatistics
    sentences: CorpusStatistics
    n_sentences: int
    lemmas: dict[str, str]
    token_weights: np.ndarray | None
    piece_content: np.ndarray | None = None  # which word pieces are content: weights after an update use it


def partition(docs: list[Document], shards: int) -> list[list[Document]]:
    """``docs`` cut into ``shards`` runs of consecutive documents of about equal length (fewer when there
    are fewer documents), none empty."""
    if not docs:
        raise ValueError("the corpus has no readable documents")
    shards = max(1, min(shards, len(docs)))
    sizes = np.cumsum([len(d.raw) for d in docs])
    cuts = [0]
    for k in range(1, shards):
        wanted = int(np.searchsorted(sizes, sizes[-1] * k / shards)) + 1  # the document reaching the k-th share
        cuts.append(min(max(wanted, cuts[-1] + 1), len(docs) - (shards - k)))
    cuts.append(len(docs))
    return [docs[a:b] for a, b in zip(cuts, cuts[1:])]


def split_shard(docs: list[Document], spec: BuildSpec) -> tuple[ShardText, ShardCounts]:
    """Split and analyse one shard. Its own lemma table yields the same terms for its sentences as the
    corpus-wide one (a word's lemma does not depend on the other words)."""
    sentences = [s for d in docs for s in split_sentences(d, layout=spec.layout)]
    passages = index_mod.make_passages(sentences, spec.passage_size, spec.passage_overlap)
    analyzer = Analyzer(stopwords=default_stopwords(), lemmatize=True).with_lemmas_of(s.text for s in sentences)
    sentence_terms = [analyzer.terms(s.text) for s in sentences]
    passage_terms = [[t for j in p.sentence_ids for t in sentence_terms[j]] for p in passages]
    text = ShardText(docs, sentences, passages, sentence_terms, passage_terms, dict(analyzer.lemmas))
    counts = ShardCounts(len(sentences), len(passages), _document_frequencies(sentence_terms),
                         sum(map(len, sentence_terms)), _document_frequencies(passage_terms),
                         sum(map(len, passage_terms)), text.lemmas)
    return text, counts


def _document_frequencies(corpus: list[list[str]]) -> dict[str, int]:
    df: dict[str, int] = {}
    for doc in corpus:
        for term in dict.fromkeys(doc):
            df[term] = df.get(term, 0) + 1
    return df


def embed_shard(encoder, text: ShardText, spec: BuildSpec) -> ShardVectors:
    """Encode one shard's sentences with ``encoder`` (a passage's vector is its sentences' mean)."""
    texts = [s.text for s in text.sentences]
    vectors, tokens = encode_texts(encoder, texts, lambda *_: None, keep_tokens=len(texts) if spec.token_vectors else 0)
    piece_df = None
    if tokens is not None:
        piece_df = index_mod.piece_frequencies(tokens.ids, tokens.offsets, len(encoder.vocabulary))
    return ShardVectors(vectors, tokens, piece_df)


def gather_statistics(counts: list[ShardCounts], piece_dfs: list[np.ndarray | None], vocabulary: list[str],
                      ) -> GlobalStatistics:
    """The corpus-wide statistics from every shard's counts, listed in shard order."""
    sentence_df: dict[str, int] = {}
    passage_df: dict[str, int] = {}
    lemmas: dict[str, str] = {}
    for c in counts:
        for merged, part in ((sentence_df, c.sentence_df), (passage_df, c.passage_df)):
            for term, n in part.items():
                merged[term] = merged.get(term, 0) + n
        lemmas.update(c.lemmas)
    n_sentences = sum(c.sentences for c in counts)
    weights = content = None
    if piece_dfs and all(df is not None for df in piece_dfs):
        content = content_pieces(vocabulary, default_stopwords())
        weights = piece_weights(np.sum(piece_dfs, axis=0), n_sentences, content)
    return GlobalStatistics(
        passages=CorpusStatistics.okapi(passage_df, sum(c.passages for c in counts),
                                        sum(c.passage_length for c in counts)),
        sentences=CorpusStatistics.okapi(sentence_df, n_sentences, sum(c.sentence_length for c in counts)),
        n_sentences=n_sentences, lemmas=dict(sorted(lemmas.items())), token_weights=weights, piece_content=content)


def write_shard(folder: Path, text: ShardText, vectors: ShardVectors, stats: GlobalStatistics, spec: BuildSpec,
                dim: int, shard: dict) -> Path:
    """Write one shard as an index folder (``folder/current``, readable by ``qa.index.load``) scored with
    the corpus-wide ``stats``; ``shard`` (its number and id offsets) goes into its manifest."""
    started = time.perf_counter()
    lexical_p = LexicalIndex.build(text.passage_terms, statistics=stats.passages)
    lexical_s = LexicalIndex.build(text.sentence_terms, statistics=stats.sentences)
    analyzer = Analyzer(stopwords=default_stopwords(), lemmatize=True, lemmas=stats.lemmas)
    findex = index_mod.dense_index(index_mod.mean_vectors(vectors.sentences, text.passages), spec.ann_min_passages)
    parts = index_mod.BuildParts(text.docs, text.sentences, text.passages, findex, vectors.sentences, lexical_p,
                                 lexical_s, analyzer, vectors.tokens, token_weights=lambda *_: stats.token_weights,
                                 piece_content=stats.piece_content)
    build_dir = index_mod.save_build(folder, parts, {**spec.to_dict(), "dim": dim, "shard": shard,
                                                     "splitter": index_mod.splitter_version(),
                                                     "corpus_fingerprint": index_mod.corpus_fingerprint(text.docs)},
                                     started)
    index_mod.publish(folder, build_dir)
    return folder


@dataclass(frozen=True)
class ShardSet:
    """A published sharded index: its shards' folders, and the manifest of the build that made them (the
    spec, the analyzer's settings). What the front computes from (documents, statistics) it asks of the
    shards, whose indexes change with updates (qa/cluster/front.py)."""

    path: Path
    manifest: dict

    @property
    def shards(self) -> list[Path]:
        return [self.path / s["folder"] for s in self.manifest["shards"]]


def write_set(root: Path, shard_folders: list[Path], counts: list[ShardCounts], stats: GlobalStatistics,
              spec: BuildSpec, dim: int, fingerprint: str, started: float) -> ShardSet:
    """Publish the shards written under a new ``root/build-…`` folder as ``root/current``."""
    set_dir = shard_folders[0].parent
    offsets = shard_offsets(counts)
    manifest = {
        "format_version": index_mod.FORMAT_VERSION, **spec.to_dict(), "corpus_fingerprint": fingerprint,
        "dim": dim, "sentences": stats.n_sentences, "passages": int(offsets[-1][1]),
        "sentence_avgdl": stats.sentences.avgdl,
        "analyzer": Analyzer(stopwords=default_stopwords(), lemmatize=True).to_dict(),
        "shards": [{"folder": f.name, "sentence_offset": int(o[0]), "passage_offset": int(o[1])}
                   for f, o in zip(shard_folders, offsets[:-1])],
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "build_seconds": round(time.perf_counter() - started, 3),
    }
    (set_dir / SET_MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False), encoding="utf-8")
    index_mod.publish(root, set_dir)
    return ShardSet(root / index_mod.CURRENT, manifest)


def shard_offsets(counts: list[ShardCounts]) -> np.ndarray:
    """(shards + 1, 2): where each shard's sentence and passage ids start in the corpus, then the totals."""
    return np.concatenate([[[0, 0]], np.cumsum([[c.sentences, c.passages] for c in counts], axis=0)]).astype(int)


def new_set_folder(root: Path) -> Path:
    """A fresh folder for the shards of a new build (published by :func:`write_set`)."""
    folder = root / f"build-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True)
    return folder


def shard_folder(set_dir: Path, number: int) -> Path:
    return set_dir / f"shard-{number:03d}"


def load_set(root: Path) -> ShardSet:
    """The published sharded index under ``root``."""
    current = root / index_mod.CURRENT
    path = current / SET_MANIFEST
    if not path.exists():
        raise index_mod.IndexMissing(f"no sharded index built at {root}: run `qa index --ray`")
    return ShardSet(Path(os.path.realpath(current)), json.loads(path.read_text(encoding="utf-8")))


def sharded_root(settings) -> Path:
    """Where the sharded index of ``settings``' corpus lives (beside the single index)."""
    single = settings.index_dir()
    return single.with_name(single.name + ".shards")

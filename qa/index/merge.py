"""Merging segments: which to merge (a tiered policy, as Lucene's) and the merge itself, which copies what
the segments stored (sentences, vectors, word pieces, term counts) into one new segment without splitting or
embedding anything again.

Policy: a segment's tier is the order of magnitude of its live sentences over ``floor`` (tier 0 below
``floor`` · ``per_tier``, then one tier per factor of ``per_tier``). When a tier holds ``per_tier`` segments
or more, its ``per_tier`` smallest are merged into one of the next tier; a segment with more than
``max_deleted`` of its documents deleted is rewritten alone. So a corpus of ``n`` sentences keeps about
``per_tier`` · log(n) segments, each sentence is copied about log(n) times over its life, and the IVF
training of a large dense index happens only when a merge makes a segment that large.

``max_sentences`` caps a merge as Lucene's maximum merged segment size does: a merge holds its segments'
vectors and term counts in memory, so no merge makes a segment of more live sentences, and a segment of
more than half of it (a segment of a bounded build, qa/index/bounded.py) is merged only to drop deletions.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from qa.index.build import dense_index
from qa.index.corpus import CorpusIndex
from qa.index.rows import CopiedTokens, mean_vectors
from qa.index.spec import BuildSpec, document_chunk, fingerprint_of, splitter_version
from qa.index.storage import BuildParts, save_build
from qa.lexical import LexicalIndex
from qa.types import Passage


@dataclass(frozen=True)
class MergePolicy:
    per_tier: int = 10  # segments a tier holds before its smallest are merged
    floor: int = 1_000  # live sentences under which every segment counts as this size
    max_deleted: float = 0.5  # a segment with more of its documents deleted is rewritten
    max_sentences: int | None = None  # no merge makes a segment of more live sentences (None: no cap)

    def tier(self, sentences: int) -> int:
        """0 under ``floor`` · ``per_tier`` live sentences, then one more per factor of ``per_tier``."""
        tier, bound = 0, self.floor * self.per_tier
        while sentences >= bound:
            tier, bound = tier + 1, bound * self.per_tier
        return tier

    def choose(self, sizes: Sequence[int], deleted: Sequence[float]) -> list[int] | None:
        """The positions of the segments to merge next, or None. ``sizes``: each segment's live sentences;
        ``deleted``: the share of its documents deleted."""
        for i, share in enumerate(deleted):
            if share > self.max_deleted:
                return [i]
        cap = self.max_sentences
        tiers: dict[int, list[int]] = {}
        for i, size in enumerate(sizes):
            if cap is None or 2 * size <= cap:  # a larger segment is full: merged with no other
                tiers.setdefault(self.tier(size), []).append(i)
        for tier in sorted(tiers):
            members = tiers[tier]
            if len(members) >= self.per_tier:
                chosen = sorted(members, key=lambda i: (sizes[i], i))[:self.per_tier]
                while cap is not None and len(chosen) > 1 and sum(sizes[i] for i in chosen) > cap:
                    chosen.pop()  # the largest left out until the merge fits under the cap
                if len(chosen) > 1:
                    return sorted(chosen)
        return None


def merge(target: Path, segments: Sequence[CorpusIndex], deleted: Sequence[frozenset[str]], spec: BuildSpec,
          ann_min_passages: int, index_passages: int | None = None) -> Path:
    """Write one segment (a build folder under ``target``, not published) of the live documents of
    ``segments``, copying what they stored; its dense index is IVF when it, or the index of
    ``index_passages`` it is part of, reaches ``ann_min_passages`` (:func:`qa.index.build.dense_index`)."""
    started = time.perf_counter()
    docs, sentences, passages, stored = [], [], [], {}
    vector_parts, token_sources, sentence_counts, passage_counts = [], [], [], []
    lemmas: dict[str, str] = {}
    for segment, gone in zip(segments, deleted):
        live = [d for d in segment.documents if d not in gone]
        keep_docs = set(live)
        first_sentence, first_passage = len(sentences), len(passages)
        local = np.array([i for i, s in enumerate(segment.sentences) if s.doc_id in keep_docs], dtype=np.int64)
        renumber = np.full(len(segment.sentences), -1, dtype=np.int64)
        renumber[local] = np.arange(first_sentence, first_sentence + len(local))
        docs += [segment.documents[d] for d in live]
        stored.update({d: segment.stored_fields[d] for d in live if d in segment.stored_fields})
        sentences += [segment.sentences[i] for i in local.tolist()]
        sentence_counts.append(_counts_of(segment.lexical_sentences, local, first_sentence))
        kept_passages = [p for p in segment.passages if p.doc_id in keep_docs]
        passage_counts.append(_counts_of(segment.lexical_passages, np.array(
            [p.passage_id for p in kept_passages], dtype=np.int64), first_passage))
        passages += [Passage(first_passage + k, p.doc_id, tuple(int(renumber[s]) for s in p.sentence_ids))
                     for k, p in enumerate(kept_passages)]
        vector_parts.append(np.asarray(segment.sentence_vectors[local], dtype=np.float32))
        if segment.tokens is not None:
            token_sources.append((segment.tokens, local))
        lemmas.update(segment.analyzer.lemmas)
    vectors = np.concatenate(vector_parts) if vector_parts else np.zeros((0, 0), dtype=np.float32)
    lexical_s = _lexicon(len(sentences), sentence_counts)
    lexical_p = _lexicon(len(passages), passage_counts)
    analyzer = replace(segments[0].analyzer, lemmas=dict(sorted(lemmas.items())))
    content = segments[0].tokens.content if segments[0].tokens is not None else None
    tokens = CopiedTokens(token_sources, content) if content is not None and len(token_sources) == len(segments) \
        else None
    chunks = {d.doc_id: document_chunk(d.doc_id, d.raw, stored.get(d.doc_id, {})) for d in docs}
    manifest = {**spec.to_dict(), "dim": int(vectors.shape[1]), "splitter": splitter_version(),
                "corpus_fingerprint": fingerprint_of(chunks), "merged_from": [s.path.name for s in segments]}
    dense = dense_index(mean_vectors(vectors, passages), ann_min_passages, index_passages)
    parts = BuildParts(docs, sentences, passages, dense, vectors, lexical_p, lexical_s, analyzer, tokens,
                       stored_fields=stored)
    return save_build(target, parts, manifest, started)


def _counts_of(lexicon: LexicalIndex, rows: np.ndarray, first: int) -> tuple[list[str], np.ndarray, np.ndarray,
                                                                                np.ndarray]:
    """The term counts of the documents ``rows`` of ``lexicon``, renumbered from ``first`` in that order."""
    docs, terms, tfs = lexicon.counts()
    position = np.full(lexicon.n_docs, -1, dtype=np.int64)
    position[rows] = np.arange(len(rows))
    keep = position[docs] >= 0
    return lexicon.terms, position[docs[keep]] + first, terms[keep], tfs[keep]


def _lexicon(n_docs: int, parts: list[tuple[list[str], np.ndarray, np.ndarray, np.ndarray]]) -> LexicalIndex:
    """One lexicon of the documents whose counts ``parts`` hold (each with its own term list)."""
    ids: dict[str, int] = {}
    docs, terms, tfs = [], [], []
    for vocabulary, d, t, f in parts:
        remap = np.array([ids.setdefault(term, len(ids)) for term in vocabulary], dtype=np.int64)
        docs.append(d)
        terms.append(remap[t] if len(t) else t)
        tfs.append(f)
    return LexicalIndex.from_counts(n_docs, list(ids), np.concatenate(docs) if docs else np.zeros(0, np.int64),
                                    np.concatenate(terms) if terms else np.zeros(0, np.int64),
                                    np.concatenate(tfs) if tfs else np.zeros(0, np.int64))

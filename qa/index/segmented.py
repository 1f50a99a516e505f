"""An index made of segments, read as one: :func:`compose` turns loaded segments (each a
:class:`~qa.index.corpus.CorpusIndex` of its own documents, with local ids) and the documents deleted from
each into one :class:`SegmentedIndex` with global ids, whose every answer is the one an index built from
scratch over the live documents gives (qa/index/stacked.py: corpus-wide BM25 statistics and word-piece
weights over the live documents).

Ids: segment ``s`` holds the global sentence ids ``sentence_offsets[s]`` onwards and the global passage ids
``passage_offsets[s]`` onwards. A deleted document keeps its ids (nothing is renumbered until a merge) but is
in no lookup, no posting and no search result.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from itertools import chain

import numpy as np

from qa import leases
from qa.index.corpus import CorpusIndex
from qa.index.rows import gather_ranges, piece_weights
from qa.index.stacked import StackedLexicon, StackedRows
from qa.types import Document, Passage


class StackedTokens:
    """The word pieces of several segments' sentences by global sentence id (as
    :class:`qa.index.rows.TokenRows` gives one segment's), with weights over the live sentences of all."""

    def __init__(self, parts: Sequence, sentence_offsets: np.ndarray, live: Sequence[np.ndarray],
                 content: np.ndarray):
        self.parts = list(parts)
        self.sentence_offsets = np.asarray(sentence_offsets, dtype=np.int64)
        df = np.zeros(len(content), dtype=np.int64)
        for part, mask in zip(self.parts, live):  # each segment's counts, less those of its deleted sentences
            dead = np.flatnonzero(~mask)
            if len(dead) * 2 <= len(mask):
                df += part.frequencies(len(content)) - (part.frequencies(len(content), dead) if len(dead) else 0)
            else:
                df += part.frequencies(len(content), np.flatnonzero(mask))
        self.df, self.content = df, content
        self.weights = piece_weights(df, int(sum(int(m.sum()) for m in live)), content)

    def __len__(self) -> int:
        return int(self.sentence_offsets[-1])

    def frequencies(self, vocabulary_size: int) -> np.ndarray:
        """Per word piece: how many live sentences hold it (as :meth:`qa.index.rows.TokenRows.frequencies`)."""
        return self.df

    def of(self, sentence_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The word pieces of ``sentence_ids``, sentence after sentence: int8 vectors, each row's scale, and
        where each sentence's rows start."""
        sentence_ids = np.asarray(sentence_ids, dtype=np.int64)
        part = np.searchsorted(self.sentence_offsets, sentence_ids, side="right") - 1
        lengths = np.zeros(len(sentence_ids), dtype=np.int64)
        blocks: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        for p in np.unique(part).tolist():
            at = np.flatnonzero(part == p)
            local = sentence_ids[at] - self.sentence_offsets[p]
            offsets = self.parts[p].offsets
            lengths[at] = offsets[local + 1] - offsets[local]
            blocks[p] = (at, *self.parts[p].of(local)[:2])
        starts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        dim = next(iter(blocks.values()))[1].shape[1] if blocks else 0
        rows = np.empty((int(starts[-1]), dim), dtype=np.int8)
        scales = np.empty(int(starts[-1]), dtype=np.float32)
        for at, part_rows, part_scales in blocks.values():
            where = gather_ranges(starts[at], lengths[at])
            rows[where], scales[where] = part_rows, part_scales
        return rows, scales, starts[:-1]


class StackedDense:
    """The passages' dense indexes of several segments searched as one (FAISS's ``search`` and ``ntotal``):
    each segment asked for enough to make up for its deleted passages, merged by score, then id."""

    def __init__(self, parts: Sequence, passage_offsets: np.ndarray, live: Sequence[np.ndarray]):
        self.parts = list(parts)
        self.offsets = np.asarray(passage_offsets, dtype=np.int64)
        self.live = list(live)
        self.dead = [int((~m).sum()) for m in self.live]
        self.ntotal = int(sum(int(m.sum()) for m in self.live))

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores, ids = [], []
        for p, (index, mask) in enumerate(zip(self.parts, self.live)):
            wanted = min(k + self.dead[p], index.ntotal)
            if wanted <= 0:
                continue
            s, i = index.search(query, wanted)
            keep = i[0] >= 0
            s, i = s[0][keep], i[0][keep].astype(np.int64)
            alive = mask[i]
            scores.append(s[alive])
            ids.append(i[alive] + self.offsets[p])
        out_scores = np.full((1, k), -np.inf, dtype=np.float32)
        out_ids = np.full((1, k), -1, dtype=np.int64)
        if scores:
            s, i = np.concatenate(scores), np.concatenate(ids)
            order = np.lexsort((i, -s))[:k]
            out_scores[0, :len(order)], out_ids[0, :len(order)] = s[order], i[order]
        return out_scores, out_ids


class StackedPassages(Sequence):
    """The segments' passages by global passage id, with global sentence ids (made on demand: a question
    reads a few dozen)."""

    def __init__(self, parts: Sequence[Sequence[Passage]], passage_offsets: np.ndarray,
                 sentence_offsets: np.ndarray):
        self.parts = list(parts)
        self.offsets = np.asarray(passage_offsets, dtype=np.int64)
        self.sentence_offsets = np.asarray(sentence_offsets, dtype=np.int64)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, pid):
        if isinstance(pid, slice):
            return [self[i] for i in range(*pid.indices(len(self)))]
        p = int(np.searchsorted(self.offsets, pid, side="right") - 1)
        local = self.parts[p][int(pid - self.offsets[p])]
        base = int(self.sentence_offsets[p])
        return Passage(int(pid), local.doc_id, tuple(base + s for s in local.sentence_ids))


class SentenceIds(Mapping):
    """(doc_id, sentence index in the document) → global sentence id over the live documents, looked up in
    their sentence tables rather than made as one dictionary per generation."""

    def __init__(self, sentences: Sequence, document_sentences: dict[str, np.ndarray]):
        self.sentences, self.by_doc = sentences, document_sentences

    def __getitem__(self, key: tuple[str, int]) -> int:
        doc_id, index = key
        ids = self.by_doc.get(doc_id)
        if ids is None or not 0 <= index < len(ids) or self.sentences[int(ids[index])].index != index:
            raise KeyError(key)
        return int(ids[index])

    def __iter__(self):
        return ((d, self.sentences[int(i)].index) for d, ids in self.by_doc.items() for i in ids)

    def __len__(self) -> int:
        return sum(len(ids) for ids in self.by_doc.values())


class Leases:
    """The leases of every segment (and of the generation) an index was loaded from, released together."""

    def __init__(self, held: Sequence[leases.Lease]):
        self.held = list(held)

    def release(self) -> None:
        for lease in self.held:
            lease.release()


@dataclass(kw_only=True, eq=False)
class SegmentedIndex(CorpusIndex):
    """A :class:`CorpusIndex` over segments (see the module's docstring): its lookups leave deleted documents
    out, and a document replaced in a later segment is found there only."""

    segments: list[CorpusIndex] = field(default_factory=list)
    deleted: list[frozenset[str]] = field(default_factory=list)  # per segment: its documents not live
    live_sentences: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    sentence_offsets: np.ndarray = field(default_factory=lambda: np.zeros(1, dtype=np.int64))

    @cached_property
    def sentence_documents(self) -> np.ndarray:
        """Sentence id → the ordinal of its document in its segment, distinct across segments (a document
        replaced in a later segment is another document there)."""
        parts, base = [], 0
        for segment in self.segments:
            ordinals = segment.sentence_documents
            parts.append(ordinals + base)
            base += int(ordinals.max()) + 1 if len(ordinals) else 0
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    @cached_property
    def sentence_ids(self) -> "SentenceIds":
        return SentenceIds(self.sentences, self.document_sentences)

    def range_search(self, queries: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """FAISS's ``range_search`` over the live sentence vectors of all segments (limits, cosines, global
        ids): each segment searched through an exact index of its own vectors, made once per loaded segment,
        so a change is compared with the corpus without a matrix of all of it."""
        found_q, found_ids, found_cos = [], [], []
        for segment, base, end in zip(self.segments, self.sentence_offsets[:-1].tolist(),
                                      self.sentence_offsets[1:].tolist()):
            lims, cos, ids = _flat_search(segment).range_search(queries, threshold)
            ids = ids.astype(np.int64)
            keep = self.live_sentences[base:end][ids]
            found_q.append(np.repeat(np.arange(len(queries)), np.diff(lims.astype(np.int64)))[keep])
            found_ids.append(ids[keep] + base)
            found_cos.append(cos[keep])
        q = np.concatenate(found_q)
        order = np.argsort(q, kind="stable")
        limits = np.searchsorted(q[order], np.arange(len(queries) + 1)).astype(np.int64)
        return limits, np.concatenate(found_cos)[order], np.concatenate(found_ids)[order]

    @cached_property
    def sentence_order(self) -> np.ndarray:
        """Sentences by document id, then segment, then place: the order of a build of the live documents."""
        return canonical_order([seg.sentence_documents for seg in self.segments], self.document_ranks)

    @cached_property
    def passage_order(self) -> np.ndarray:
        return canonical_order([seg.passage_documents for seg in self.segments], self.document_ranks)

    @cached_property
    def document_ranks(self) -> list[np.ndarray]:
        """Per segment, its documents' ranks by id among all segments' (both orders use them)."""
        return document_ranks([seg.document_names for seg in self.segments])

    @cached_property
    def fingerprint_chunks(self) -> dict[str, bytes]:
        chunks: dict[str, bytes] = {}
        for segment in self.segments:  # a later segment's version of a document wins
            chunks.update({d: c for d, c in segment.fingerprint_chunks.items() if d in self.documents})
        return chunks

    @cached_property
    def document_sentences(self) -> dict[str, np.ndarray]:
        """Each live document's global sentence ids, from its segment's own table (no pass over the corpus)."""
        out: dict[str, np.ndarray] = {}
        for segment, gone, base in zip(self.segments, self.deleted, self.sentence_offsets.tolist()):
            out.update({d: ids + base for d, ids in segment.document_sentences.items() if d not in gone})
        return dict(sorted(out.items()))

    @cached_property
    def document_vectors(self) -> tuple[dict[str, int], np.ndarray]:
        """Each live document's unit mean sentence vector, taken from its segment's own table."""
        names, blocks = [], []
        for segment, gone in zip(self.segments, self.deleted):
            rows, vectors = segment.document_vectors
            keep = [(d, r) for d, r in rows.items() if d not in gone]
            names += [d for d, _ in keep]
            blocks.append(vectors[np.array([r for _, r in keep], dtype=np.int64)])
        order = sorted(range(len(names)), key=names.__getitem__)
        stacked = np.concatenate(blocks) if blocks else np.zeros((0, self.sentence_vectors.shape[1]), np.float32)
        return {names[i]: r for r, i in enumerate(order)}, stacked[np.array(order, dtype=np.int64)]


_flat_searches: "weakref.WeakKeyDictionary[CorpusIndex, object]" = weakref.WeakKeyDictionary()
_flat_lock = threading.Lock()


def _flat_search(segment: CorpusIndex):
    """An exact FAISS index of a segment's sentence vectors, kept as long as the segment is loaded."""
    import faiss

    with _flat_lock:
        flat = _flat_searches.get(segment)
        if flat is None:
            vectors = np.ascontiguousarray(np.asarray(segment.sentence_vectors), dtype=np.float32)
            flat = faiss.IndexFlatIP(vectors.shape[1])
            flat.add(vectors)
            _flat_searches[segment] = flat
    return flat


def document_ranks(names: Sequence[list[str]]) -> list[np.ndarray]:
    """Per segment, each of its documents' (``names[s]``) rank among the document ids of all segments."""
    flat = np.empty(sum(len(seg) for seg in names), dtype=object)
    flat[:] = [n for seg in names for n in seg]
    rank = np.unique(flat, return_inverse=True)[1].astype(np.int64).reshape(-1)
    return np.split(rank, np.cumsum([len(seg) for seg in names])[:-1])


def canonical_order(ordinals: Sequence[np.ndarray], ranks: Sequence[np.ndarray]) -> np.ndarray:
    """Each row's position when the rows of all segments are ordered by their document's id, then segment,
    then id: ``ordinals[s]`` gives segment ``s``'s rows' documents as ordinals into ``ranks[s]``
    (:func:`document_ranks`). The rows are concatenated in (segment, id) order, so a stable sort by rank is it."""
    doc_rank = np.concatenate([rank[rows] for rows, rank in zip(ordinals, ranks)])
    by_key = np.argsort(doc_rank, kind="stable")
    order = np.empty_like(by_key)
    order[by_key] = np.arange(len(by_key))
    return order


def compose(segments: Sequence[CorpusIndex], deleted: Sequence[frozenset[str]], *, path, manifest: dict,
            skipped: list | None = None, held: Sequence[leases.Lease] = ()) -> SegmentedIndex:
    """One index over ``segments``, each without its documents named in ``deleted`` (the same position). The
    word-piece weights are computed over the live sentences of all segments, from the content pieces each
    segment recorded (:func:`qa.index.rows.content_pieces`); without word pieces in every segment, none."""
    if not segments or len(segments) != len(deleted):
        raise ValueError("one set of deleted documents per segment, and at least one segment")
    live_sentences, live_passages = [], []
    for seg, gone in zip(segments, deleted):  # by each segment's own document ordinals, kept while it is loaded
        names = seg.document_names
        alive = np.fromiter((name not in gone for name in names), dtype=bool, count=len(names))
        live_sentences.append(alive[seg.sentence_documents])
        live_passages.append(alive[seg.passage_documents])
    sentence_offsets = np.concatenate([[0], np.cumsum([len(s.sentences) for s in segments])]).astype(np.int64)
    passage_offsets = np.concatenate([[0], np.cumsum([len(s.passages) for s in segments])]).astype(np.int64)
    documents: dict[str, Document] = {}
    for seg, gone in zip(segments, deleted):
        documents.update({d: doc for d, doc in seg.documents.items() if d not in gone})
    documents = dict(sorted(documents.items()))
    first = segments[0].analyzer
    lemmas = {w: lemma for seg in segments for w, lemma in seg.analyzer.lemmas.items()}
    content = segments[0].tokens.content if segments[0].tokens is not None else None
    keeps_pieces = content is not None and all(seg.tokens is not None for seg in segments)
    return SegmentedIndex(
        path=path, manifest=manifest, documents=documents,
        sentences=list(chain.from_iterable(seg.sentences for seg in segments)),
        passages=StackedPassages([seg.passages for seg in segments], passage_offsets, sentence_offsets),
        faiss_index=StackedDense([seg.faiss_index for seg in segments], passage_offsets, live_passages),
        sentence_vectors=StackedRows([seg.sentence_vectors for seg in segments]),
        lexical_passages=StackedLexicon([seg.lexical_passages for seg in segments], live_passages),
        lexical_sentences=StackedLexicon([seg.lexical_sentences for seg in segments], live_sentences),
        analyzer=replace(first, lemmas=lemmas),
        tokens=StackedTokens([seg.tokens for seg in segments], sentence_offsets, live_sentences, content)
        if keeps_pieces else None,
        skipped=list(skipped or []), lease=Leases(held),
        segments=list(segments), deleted=[frozenset(gone) for gone in deleted],
        live_sentences=np.concatenate(live_sentences),
        sentence_offsets=sentence_offsets)

"""Where the corpus repeats an answer sentence and where it contradicts it.

An answer sentence's ``also_in`` are the places that make the same claim, its ``disagrees`` the places
worded like it that differ in a name, number or date (qa/claims.py decides between the two). They are
looked for among the question's candidates (:func:`group_statements`) and among every sentence of another
document close to the answer sentence, candidate or not (:class:`NearSentences`): a sentence saying "15
killed" where the answer says "12 killed" may rank far below it for the question and still be what a
fact-checker needs to see.

:class:`NearSentences` is a table made once per index build: for each sentence, the sentences of other
documents within ``threshold`` cosine of it (FAISS range search over the sentence vectors). The relation is
symmetric and holds between pairs of sentences, so the table is made part by part — any set of sentences
against all the others (:meth:`NearSentences.compute` with ``rows``) — and an index that changes needs only
the pairs of its changed documents computed again (:meth:`NearSentences.updated`). It is saved beside the
build it describes and read back by every process that serves it.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qa import claims
from qa.index import CorpusIndex, SentenceSet, gather_ranges

log = logging.getLogger(__name__)

TABLE_VERSION = 2


@dataclass(frozen=True)
class NearSentences:
    """For every sentence id, the sentences of other documents within ``threshold`` cosine or worded the
    same apart from their names, numbers and dates (the same ``keys``, :func:`qa.claims.wording_key`),
    closest first (at most ``limit``): ``neighbours[offsets[i]:offsets[i + 1]]`` with their ``cosines``."""

    threshold: float
    limit: int
    offsets: np.ndarray  # int64, one more than the sentences
    neighbours: np.ndarray  # int64 sentence ids
    cosines: np.ndarray  # float32
    keys: np.ndarray  # int64 per sentence: its wording key (0: none)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def of(self, sentence_id: int) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self.offsets[sentence_id], self.offsets[sentence_id + 1]
        return self.neighbours[lo:hi], self.cosines[lo:hi]

    @classmethod
    def compute(cls, vectors, documents: np.ndarray, keys: np.ndarray, threshold: float, limit: int,
                rows: np.ndarray | None = None, batch: int = 4096, search=None) -> NearSentences:
        """The table of sentences ``vectors`` (unit rows; ``documents[i]``: sentence i's document ordinal;
        ``keys[i]``: its wording key), holding the pairs that involve ``rows`` (default: every sentence): each
        of ``rows`` against every sentence of another document, and the same pairs seen from the other side.
        ``search``: FAISS's ``range_search`` over all of ``vectors`` when the caller has one (an index of
        segments searches each); ``vectors`` then need only give rows by id (``vectors[ids]``)."""
        import faiss

        keys = np.asarray(keys, dtype=np.int64)
        n = len(keys)
        rows = np.arange(n, dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
        if not n or not len(rows):
            none = np.zeros(0, np.int64)
            return cls.from_pairs(n, none, none, np.zeros(0, np.float32), keys, threshold, limit)
        if search is None:
            vectors = np.ascontiguousarray(vectors, dtype=np.float32)
            flat = faiss.IndexFlatIP(vectors.shape[1])
            flat.add(vectors)
            search = flat.range_search
        found_a, found_b, found_cos = [], [], []
        for start in range(0, len(rows), batch):
            part = rows[start:start + batch]
            lims, cos, ids = search(np.ascontiguousarray(vectors[part], dtype=np.float32), threshold)
            owner = np.repeat(part, np.diff(lims.astype(np.int64)))
            other = documents[ids] != documents[owner]
            found_a.append(owner[other])
            found_b.append(ids[other].astype(np.int64))
            found_cos.append(cos[other].astype(np.float32))
        same_a, same_b = same_key_pairs(keys, documents, rows)
        found_a.append(same_a)
        found_b.append(same_b)
        found_cos.append(np.einsum("ij,ij->i", np.asarray(vectors[same_a], dtype=np.float32),
                                   np.asarray(vectors[same_b], dtype=np.float32)).astype(np.float32))
        a, b, cos = np.concatenate(found_a), np.concatenate(found_b), np.concatenate(found_cos)
        # Both directions of each pair, once: a pair found from both ends (both sentences in rows) twice.
        pairs = np.concatenate([np.stack([a, b]), np.stack([b, a])], axis=1)
        weights = np.concatenate([cos, cos])
        key = pairs[0] * n + pairs[1]
        key, first = np.unique(key, return_index=True)
        return cls.from_pairs(n, key // n, key % n, weights[first], keys, threshold, limit)

    @classmethod
    def from_pairs(cls, n: int, a: np.ndarray, b: np.ndarray, cos: np.ndarray, keys: np.ndarray, threshold: float,
                   limit: int) -> NearSentences:
        """The table of ``n`` sentences from directed pairs ``a → b``: each sentence keeps its ``limit``
        closest."""
        order = np.lexsort((b, -cos, a))
        a, b, cos = a[order], b[order], cos[order]
        starts = np.searchsorted(a, np.arange(n + 1))
        rank = np.arange(len(a)) - starts[a] if len(a) else np.zeros(0, np.int64)
        keep = rank < limit
        a, b, cos = a[keep], b[keep], cos[keep]
        offsets = np.searchsorted(a, np.arange(n + 1)).astype(np.int64)
        return cls(threshold, limit, offsets, b.astype(np.int64), cos.astype(np.float32), keys)

    def pairs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every directed pair (sentence, neighbour, cosine)."""
        owner = np.repeat(np.arange(len(self), dtype=np.int64), np.diff(self.offsets))
        return owner, self.neighbours, self.cosines

    def updated(self, kept: np.ndarray, vectors, documents: np.ndarray, key_of: Callable[[int], int],
                search=None, live: np.ndarray | None = None) -> NearSentences:
        """The table of a changed index: ``kept[i]`` is old sentence i's id in the new index (-1: its
        document changed or went); ``key_of(i)``, new sentence i's wording key, is asked for the others only.
        The pairs between kept sentences are carried over; the new index's other sentences (changed and
        added documents) are searched against all of it (``search``: as :meth:`compute` takes it). ``live``:
        the new index's live sentences (an index of segments keeps deleted ones), the others never paired.
        The result equals :meth:`compute` over the new index (up to ``limit`` ties)."""
        n = len(documents)
        fresh = np.ones(n, dtype=bool) if live is None else np.array(live, dtype=bool)  # a dead one: no pairs
        fresh[kept[kept >= 0]] = False
        keys = np.zeros(n, dtype=np.int64)
        keys[kept[kept >= 0]] = self.keys[kept >= 0]
        keys[fresh] = [key_of(i) for i in np.flatnonzero(fresh).tolist()]
        a, b, cos = self.pairs()
        carried = (kept[a] >= 0) & (kept[b] >= 0)
        new = NearSentences.compute(vectors, documents, keys, self.threshold, self.limit, np.flatnonzero(fresh),
                                    search=search)
        na, nb, ncos = new.pairs()
        ca, cb, ccos = kept[a[carried]], kept[b[carried]], cos[carried]
        survivors = kept[kept >= 0]
        if len(survivors) > 1 and not np.all(np.diff(survivors) > 0):  # ids reordered: sort everything again
            return NearSentences.from_pairs(n, np.concatenate([ca, na]), np.concatenate([cb, nb]),
                                            np.concatenate([ccos, ncos]), keys, self.threshold, self.limit)
        # Ids kept in order (a generation between merges): the carried pairs are still sorted, and only the
        # rows that gained pairs are sorted again; the rest is placed where it belongs.
        touched = np.zeros(n, dtype=bool)
        touched[na] = True
        moved = touched[ca]
        fixed = NearSentences.from_pairs(n, np.concatenate([ca[moved], na]), np.concatenate([cb[moved], nb]),
                                         np.concatenate([ccos[moved], ncos]), keys, self.threshold, self.limit)
        fa, fb, fcos = fixed.pairs()
        ua, ub, ucos = ca[~moved], cb[~moved], ccos[~moved]
        counts = np.bincount(ua, minlength=n) + np.bincount(fa, minlength=n)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        neighbours = np.empty(int(offsets[-1]), dtype=np.int64)
        cosines = np.empty(int(offsets[-1]), dtype=np.float32)
        for rows, others, cs in ((ua, ub, ucos), (fa, fb, fcos)):  # rows never share a sentence: no overlap
            starts = np.searchsorted(rows, np.arange(n + 1))
            at = offsets[rows] + np.arange(len(rows)) - starts[rows]
            neighbours[at], cosines[at] = others, cs
        return NearSentences(self.threshold, self.limit, offsets, neighbours, cosines, keys)

    # -- on disk, beside the build

    def save(self, path: Path) -> None:
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        with open(tmp, "wb") as fh:
            np.savez(fh, offsets=self.offsets, neighbours=self.neighbours, cosines=self.cosines, keys=self.keys,
                     meta=np.array([self.threshold, self.limit, TABLE_VERSION], dtype=np.float64))
        os.replace(tmp, path)  # processes serving the same build may race: the table is the same

    @classmethod
    def load(cls, path: Path) -> NearSentences | None:
        try:
            with np.load(path) as data:
                threshold, limit, version = data["meta"].tolist()
                if version != TABLE_VERSION:
                    return None
                return cls(threshold, int(limit), data["offsets"], data["neighbours"], data["cosines"], data["keys"])
        except (OSError, ValueError, KeyError):
            return None


def table_path(index: CorpusIndex, threshold: float, limit: int) -> Path:
    return index.path / f"near-sentences-v{TABLE_VERSION}-{threshold:.3f}-{limit}.npz"


def near_sentences(index: CorpusIndex, threshold: float, limit: int, vocabulary: claims.Vocabulary | None = None,
                   previous: tuple[CorpusIndex, NearSentences] | None = None) -> NearSentences | None:
    """The table of ``index``: read from its build folder, else made (from ``previous``, the table of the
    index it replaces, when given: only changed documents are searched) and saved there. ``vocabulary``
    reads the wording keys' names."""
    path = table_path(index, threshold, limit)
    table = NearSentences.load(path)
    if table is not None and len(table) == len(index.sentences):
        return table
    documents = index.sentence_documents
    live = getattr(index, "live_sentences", None)  # a segmented index keeps deleted documents' sentences
    search = getattr(index, "range_search", None)  # an index of segments: each searched, no matrix of all
    if previous is not None and previous[1] is not None and search is not None:
        vectors = index.sentence_vectors  # rows read by id: the changed documents' and same-wording pairs'
    else:
        search = None
        vectors = np.array(index.sentence_vectors, dtype=np.float32)
        if live is not None:
            vectors[~live] = 0.0  # within no cosine of anything: never a near sentence

    def key_of(sid: int) -> int:
        if live is not None and not live[sid]:
            return 0  # no wording key: never paired by its wording
        return claims.wording_key(index.sentences[sid].text, vocabulary)

    if previous is not None and previous[1] is not None:
        table = previous[1].updated(kept_sentences(previous[0], index), vectors, documents, key_of, search, live)
    else:
        keys = np.fromiter((key_of(i) for i in range(len(index.sentences))), dtype=np.int64, count=len(index.sentences))
        table = NearSentences.compute(vectors, documents, keys, threshold, limit)
    try:
        table.save(path)
    except OSError as exc:  # a read-only index: kept in memory only
        log.warning("could not save the near-sentence table (%s)", exc)
    return table


def same_key_pairs(keys: np.ndarray, documents: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (one of ``rows``, a sentence of another document) with the same non-zero wording key."""
    values, counts = np.unique(keys[keys != 0], return_counts=True)
    shared = values[counts > 1]
    mine = rows[np.isin(keys[rows], shared)]
    if not len(mine):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    order = np.argsort(keys, kind="stable")
    lo = np.searchsorted(keys[order], keys[mine], side="left")
    hi = np.searchsorted(keys[order], keys[mine], side="right")
    a = np.repeat(mine, hi - lo)
    b = order[gather_ranges(lo, hi - lo)]
    other = documents[a] != documents[b]
    return a[other], b[other].astype(np.int64)


def kept_sentences(old: CorpusIndex, new: CorpusIndex) -> np.ndarray:
    """For each sentence of ``old``, its id in ``new`` when its document is there with the same text (-1
    otherwise)."""
    kept = np.full(len(old.sentences), -1, dtype=np.int64)
    new_ids = new.document_sentences
    for doc_id, ids in old.document_sentences.items():
        doc = new.documents.get(doc_id)
        if doc is not None and doc.raw == old.documents[doc_id].raw and len(new_ids[doc_id]) == len(ids):
            kept[ids] = new_ids[doc_id]
    return kept


# -- grouping an answer's sentences ------------------------------------------------------------------------


@dataclass
class Statement:
    """An answer sentence (``head``, a sentence id) with the sentences that state the same (``same``) and
    those that say it differently (``differ``: id and the differing pairs)."""

    head: int
    same: list[int] = field(default_factory=list)
    differ: list[tuple[int, tuple[tuple[str, str], ...]]] = field(default_factory=list)

    def members(self) -> set[int]:
        return {self.head, *self.same, *(sid for sid, _ in self.differ)}


def group_statements(index: SentenceSet, ids: np.ndarray, top_k: int, same_cosine: float, near_cosine: float,
                     vocabulary: claims.Vocabulary | None = None, keys: np.ndarray | None = None) -> list[Statement]:
    """The first ``top_k`` statements among the ranked candidate sentences ``ids``, in rank order.

    A candidate within ``same_cosine`` of an earlier statement's head that makes the same claim joins its
    ``same``; one of another document within ``near_cosine`` (or with the head's wording key: ``keys``,
    per sentence id, when known) that is worded alike but differs in a name, number or date joins its
    ``differ``; any other takes a rank of its own (a sentence that says more or less than the head is
    another statement)."""
    vectors = index.sentence_vectors[ids]
    documents = index.sentence_documents[ids]
    wording = keys[ids] if keys is not None else np.zeros(len(ids), dtype=np.int64)
    texts = [index.sentences[i].text for i in ids.tolist()]
    groups: list[Statement] = []
    heads: list[int] = []  # per group: its head's position in ids
    to_head: list[np.ndarray] = []  # per group: every candidate's cosine to the group's head
    for pos, sid in enumerate(ids.tolist()):
        for group, head, cosines in zip(groups, heads, to_head):
            if cosines[pos] < near_cosine and not (wording[pos] and wording[pos] == wording[head]):
                continue
            verdict = claims.compare(texts[head], texts[pos], vocabulary)
            if verdict.verdict == "same" and cosines[pos] >= same_cosine:
                group.same.append(sid)
                break
            if verdict.verdict == "differs" and documents[pos] != documents[head]:
                group.differ.append((sid, verdict.differs))
                break
        else:
            if len(groups) == top_k:
                continue  # only lower-ranked duplicates of the kept groups are still of use
            groups.append(Statement(sid))
            heads.append(pos)
            to_head.append(vectors @ vectors[pos])  # a matrix-vector product: no BLAS thread pool wakes up
    return groups


def widen(index: SentenceSet, groups: Sequence[Statement], table: NearSentences, same_cosine: float,
          vocabulary: claims.Vocabulary | None = None) -> None:
    """Add to each statement the sentences of other documents close to its head that were not candidates:
    the same claim (within ``same_cosine``) to ``same``, a differing one to ``differ``. Ids are the
    corpus's (``index`` and ``table`` alike)."""
    listed = set().union(*(g.members() for g in groups)) if groups else set()
    for group in groups:
        near, cosines = table.of(group.head)
        head_text = index.sentences[group.head].text
        for sid, cos in zip(near.tolist(), cosines.tolist()):
            if sid in listed:
                continue
            verdict = claims.compare(head_text, index.sentences[sid].text, vocabulary)
            if verdict.verdict == "same" and cos >= same_cosine:
                group.same.append(sid)
            elif verdict.verdict == "differs":
                group.differ.append((sid, verdict.differs))
            else:
                continue
            listed.add(sid)

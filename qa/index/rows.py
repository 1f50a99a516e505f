"""Matrices of a build read row by row from disk (sentence vectors, word-piece vectors) and the word
pieces' weights: what a question needs of a large index without holding it in memory."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING
from pathlib import Path

import numpy as np

from qa.types import Passage

if TYPE_CHECKING:
    from qa.index.stacked import StackedTokenRows


QUANTISE_ROWS = 1 << 16  # word-piece rows quantised at once when a build writes them (about 100 MB of float32)


def row_ids(ids, rows: int) -> np.ndarray:
    """``ids`` as an int64 array of rows of a matrix of ``rows`` rows (IndexError for one outside it)."""
    ids = np.asarray(ids, dtype=np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= rows):
        raise IndexError("row id out of range")
    return ids


def gather_ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The positions ``starts[i]`` to ``starts[i] + lengths[i]`` for each ``i``, one range after the other."""
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    return np.arange(bounds[-1], dtype=np.int64) - np.repeat(bounds[:-1] - starts, lengths)


class VectorRows:
    """The rows of a saved ``.npy`` matrix, read from the file when asked for (``rows[ids]``).

    A query needs the vectors of its hundred-odd candidate sentences, not all of them. Memory-mapping
    the file would do, but the kernel maps whole neighbourhoods of every touched page into the process,
    and after a few hundred queries the serving process holds the entire file (1.5 GB per million
    sentences). Reads go through the page cache instead: shared, reclaimable, not the process's memory.
    Thread-safe (``os.pread`` has no shared file position).
    """

    def __init__(self, path: Path):
        with open(path, "rb") as fh:
            fmt = np.lib.format
            major, _ = fmt.read_magic(fh)
            read_header = fmt.read_array_header_1_0 if major == 1 else fmt.read_array_header_2_0
            shape, fortran, dtype = read_header(fh)
            self._offset = fh.tell()
        if fortran or len(shape) != 2:
            raise ValueError(f"{path} is not a C-ordered matrix")
        self.shape, self.dtype = shape, np.dtype(dtype)
        self._row_bytes = shape[1] * self.dtype.itemsize
        self._fd = os.open(path, os.O_RDONLY)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, ids) -> np.ndarray:
        """One row for an int; for an array of ids, their rows in that order (consecutive ids: one read)."""
        if isinstance(ids, (int, np.integer)):
            return self[np.array([ids])][0]
        ids = row_ids(ids, self.shape[0])
        wanted = np.unique(ids)
        out = np.empty((len(wanted), self.shape[1]), dtype=self.dtype)
        runs = np.split(np.arange(len(wanted)), np.flatnonzero(np.diff(wanted) != 1) + 1)
        for run in runs:
            if len(run):
                first = int(wanted[run[0]])
                data = os.pread(self._fd, len(run) * self._row_bytes, self._offset + first * self._row_bytes)
                out[run[0] : run[-1] + 1] = np.frombuffer(data, dtype=self.dtype).reshape(len(run), -1)
        return out[np.searchsorted(wanted, ids)]

    def ranges(self, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """Rows ``starts[i]`` to ``ends[i]`` for each ``i``, one after the other: one read per range."""
        out = np.empty((int((ends - starts).sum()), self.shape[1]), dtype=self.dtype)
        at = 0
        for start, end in zip(starts.tolist(), ends.tolist()):
            if end > start:
                data = os.pread(self._fd, (end - start) * self._row_bytes, self._offset + start * self._row_bytes)
                out[at : at + end - start] = np.frombuffer(data, dtype=self.dtype).reshape(end - start, -1)
                at += end - start
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        whole = self[np.arange(self.shape[0])]
        return whole if dtype is None else whole.astype(dtype)

    def __del__(self):
        fd = getattr(self, "_fd", None)
        if fd is not None:
            os.close(fd)


class TokenRows:
    """Every sentence's word-piece vectors and each word piece's weight.

    The vectors are one matrix with a row per word piece, sentence after sentence (``offsets[s]`` to
    ``offsets[s + 1]``), read on demand like :class:`VectorRows`: a question needs its candidates' rows.
    They are stored as int8 with a scale per row (a quarter of float32's disk; float16 would halve it
    but turns back into float32 several times slower, and the ranker reads two thousand rows a question).
    Each piece's weight is its idf over sentences, 0 for stop words and punctuation (:func:`token_weights`).
    """

    def __init__(self, folder: Path):
        self.vectors = VectorRows(folder / "token_vectors.npy")
        self.scales = np.load(folder / "token_scales.npy")  # 4 bytes a word piece: kept in memory
        self.offsets = np.load(folder / "token_offsets.npy")
        self.weights = np.load(folder / "token_weights.npy")
        content = folder / "token_content.npy"  # which pieces are content (weights over other segments' too)
        self.content = np.load(content) if content.exists() else None
        # Mapped now, read only by a rebuild that reuses this build: a mapping, like an open file, stays
        # readable once the build folder is removed, so a loaded index never reads its folder by path again.
        self._ids = np.load(folder / "token_ids.npy", mmap_mode="r")

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def of(self, sentence_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The word pieces of ``sentence_ids``, sentence after sentence: their int8 vectors, each row's
        scale (vector ≈ row × scale) and where each sentence's rows start."""
        starts, ends = self.offsets[sentence_ids], self.offsets[sentence_ids + 1]
        lengths = ends - starts
        rows = gather_ranges(starts, lengths)
        return self.vectors.ranges(starts, ends), self.scales[rows], np.concatenate([[0], np.cumsum(lengths)])[:-1]

    def piece_ids(self, rows: np.ndarray) -> np.ndarray:
        """The vocabulary ids of the word-piece rows ``rows`` (rows, not sentences)."""
        return np.asarray(self._ids[rows])

    def copy_rows(self, first: int, last: int, out_fd: int, out_at: int) -> None:
        """Word-piece rows ``first`` to ``last`` as stored into ``out_fd`` at ``out_at``, file to file."""
        _copy_bytes(self.vectors, first, last, out_fd, out_at)

    def ids_of(self, sentence_id: int) -> np.ndarray:
        return np.array(self._ids[self.offsets[sentence_id] : self.offsets[sentence_id + 1]])

    def frequencies(self, vocabulary_size: int, sentence_ids: np.ndarray | None = None) -> np.ndarray:
        """Per word piece of the vocabulary: how many of ``sentence_ids`` hold it; of every sentence when None
        (computed once: an index of segments sums these over its segments)."""
        if sentence_ids is None:
            if getattr(self, "_all_frequencies", None) is None or len(self._all_frequencies) != vocabulary_size:
                self._all_frequencies = piece_frequencies(np.asarray(self._ids), self.offsets, vocabulary_size)
            return self._all_frequencies
        starts, ends = self.offsets[sentence_ids], self.offsets[sentence_ids + 1]
        local = np.concatenate([[0], np.cumsum(ends - starts)]).astype(np.int64)
        return piece_frequencies(self.piece_ids(gather_ranges(starts, ends - starts)), local, vocabulary_size)

    @staticmethod
    def write(folder: Path, tokens: SentenceTokens, previous: TokenRows | StackedTokenRows | None,
              weights_of: Callable[[np.ndarray, np.ndarray], np.ndarray], content: np.ndarray | None = None) -> None:
        """Write every sentence's word pieces: those of newly encoded sentences quantised here, those of
        reused ones copied byte for byte from ``previous`` (no decoding, no second rounding), one copy per
        run of consecutive rows. At 100,000 sentences the vectors are over a gigabyte, so the copy stays
        in the kernel (``os.copy_file_range``) instead of passing through NumPy. ``content``
        (:func:`content_pieces`) is kept so that weights over several segments can be computed later."""
        source = tokens.previous_rows
        reused = source >= 0
        if reused.any() and previous is None:
            raise ValueError("reused word pieces need the build they come from")
        new_lengths = np.diff(tokens.offsets)
        lengths = np.zeros(len(source), dtype=np.int64)
        lengths[~reused] = new_lengths
        if reused.any():
            lengths[reused] = previous.offsets[source[reused] + 1] - previous.offsets[source[reused]]
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        new_scales = np.maximum(np.abs(tokens.vectors).max(axis=1, initial=0.0).astype(np.float32), 1e-12) / 127.0
        dim = tokens.vectors.shape[1] if not reused.any() else previous.vectors.shape[1]
        ids = np.empty(offsets[-1], dtype=np.int32)
        scales = np.empty(offsets[-1], dtype=np.float32)
        new_at = np.concatenate([[0], np.cumsum(~reused)])  # sentence → its position among the new ones
        with open(folder / "token_vectors.npy", "wb") as fh:
            header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.int8)), "fortran_order": False,
                      "shape": (int(offsets[-1]), int(dim))}
            np.lib.format.write_array_header_1_0(fh, header)
            fh.flush()
            data_at = fh.tell()
            for first, last in _runs(source):
                out = slice(offsets[first], offsets[last])
                if reused[first]:
                    lo, hi = previous.offsets[source[first]], previous.offsets[source[last - 1] + 1]
                    ids[out], scales[out] = previous._ids[lo:hi], previous.scales[lo:hi]
                    previous.copy_rows(lo, hi, fh.fileno(), data_at + out.start * dim)
                else:
                    lo, hi = tokens.offsets[new_at[first]], tokens.offsets[new_at[last]]
                    ids[out], scales[out] = tokens.ids[lo:hi], new_scales[lo:hi]
                    for at in range(lo, hi, QUANTISE_ROWS):  # a block at a time: float32 copies stay small
                        end = min(at + QUANTISE_ROWS, hi)
                        block = np.round(tokens.vectors[at:end].astype(np.float32) / new_scales[at:end, None])
                        os.pwrite(fh.fileno(), block.astype(np.int8).tobytes(), data_at + (out.start + at - lo) * dim)
            os.ftruncate(fh.fileno(), data_at + int(offsets[-1]) * dim)
        np.save(folder / "token_scales.npy", scales)
        np.save(folder / "token_offsets.npy", offsets)
        np.save(folder / "token_ids.npy", ids)
        np.save(folder / "token_weights.npy", weights_of(ids, offsets).astype(np.float32))
        if content is not None:
            np.save(folder / "token_content.npy", content)


@dataclass
class CopiedTokens:
    """Word pieces copied as stored from loaded segments (a merge): for each source, the
    :class:`TokenRows` and the local ids of the sentences taken from it, in the merged order."""

    sources: list[tuple[TokenRows, np.ndarray]]
    content: np.ndarray

    def write(self, folder: Path) -> None:
        """The token files of the merged sentences: rows copied file to file, one copy per run of consecutive
        sentences; the piece weights over the merged sentences."""
        lengths = [rows.offsets[ids + 1] - rows.offsets[ids] for rows, ids in self.sources]
        offsets = np.concatenate([[0], np.cumsum(np.concatenate(lengths) if lengths else [])]).astype(np.int64)
        dim = self.sources[0][0].vectors.shape[1]
        ids_out = np.empty(offsets[-1], dtype=np.int32)
        scales = np.empty(offsets[-1], dtype=np.float32)
        with open(folder / "token_vectors.npy", "wb") as fh:
            header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.int8)), "fortran_order": False,
                      "shape": (int(offsets[-1]), int(dim))}
            np.lib.format.write_array_header_1_0(fh, header)
            fh.flush()
            data_at, at = fh.tell(), 0
            for rows, ids in self.sources:
                for first, last in _runs(ids.astype(np.int64)):
                    lo, hi = int(rows.offsets[ids[first]]), int(rows.offsets[ids[last - 1] + 1])
                    ids_out[at:at + hi - lo], scales[at:at + hi - lo] = rows._ids[lo:hi], rows.scales[lo:hi]
                    rows.copy_rows(lo, hi, fh.fileno(), data_at + at * dim)
                    at += hi - lo
            os.ftruncate(fh.fileno(), data_at + int(offsets[-1]) * dim)
        np.save(folder / "token_scales.npy", scales)
        np.save(folder / "token_offsets.npy", offsets)
        np.save(folder / "token_ids.npy", ids_out)
        weights = piece_weights(piece_frequencies(ids_out, offsets, len(self.content)), len(offsets) - 1, self.content)
        np.save(folder / "token_weights.npy", weights)
        np.save(folder / "token_content.npy", self.content)


@dataclass
class SentenceTokens:
    """Where each sentence's word pieces come from: a row of the previous build (``previous_rows``, copied
    as stored) or this build's encoding (-1; their float16 vectors, offsets and ids, sentence after sentence)."""

    previous_rows: np.ndarray
    vectors: np.ndarray
    offsets: np.ndarray
    ids: np.ndarray


def _runs(source: np.ndarray) -> list[tuple[int, int]]:
    """``[first, last)`` runs of sentences that are all new, or reused from consecutive previous rows."""
    reused = source >= 0
    breaks = np.flatnonzero((reused[1:] != reused[:-1]) | (reused[1:] & (source[1:] != source[:-1] + 1))) + 1
    bounds = np.concatenate([[0], breaks, [len(source)]])
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def _copy_bytes(rows: VectorRows, first: int, last: int, out_fd: int, out_at: int) -> None:
    """Rows ``first`` to ``last`` of a saved matrix into ``out_fd`` at ``out_at``, file to file."""
    src_at, remaining = rows._offset + first * rows._row_bytes, (last - first) * rows._row_bytes
    while remaining:
        try:
            done = os.copy_file_range(rows._fd, out_fd, remaining, src_at, out_at)
        except OSError:  # a file system that cannot: through memory
            done = os.pwrite(out_fd, os.pread(rows._fd, min(remaining, 1 << 26), src_at), out_at)
        if done == 0:
            raise OSError("the previous build's word-piece vectors are shorter than its offsets say")
        src_at, out_at, remaining = src_at + done, out_at + done, remaining - done


def token_weights(ids: np.ndarray, offsets: np.ndarray, vocabulary: list[str], stopwords: frozenset[str]) -> np.ndarray:
    """Per word piece of the vocabulary: its idf over the sentences (a piece no sentence has gets the
    highest), or 0 for a stop word, punctuation or a special token, which say nothing about the topic."""
    return weights_of_pieces(piece_frequencies(ids, offsets, len(vocabulary)), len(offsets) - 1, vocabulary,
                             stopwords)


def piece_frequencies(ids: np.ndarray, offsets: np.ndarray, vocabulary_size: int) -> np.ndarray:
    """Per word piece of the vocabulary: the number of sentences holding it (sums across shards)."""
    sentence_of = np.repeat(np.arange(len(offsets) - 1, dtype=np.int64), np.diff(offsets))
    pair = sentence_of * vocabulary_size + ids.astype(np.int64)  # one number per (sentence, piece): a 1-D unique
    return np.bincount(np.unique(pair) % vocabulary_size, minlength=vocabulary_size)


def weights_of_pieces(df: np.ndarray, n: int, vocabulary: list[str], stopwords: frozenset[str]) -> np.ndarray:
    """:func:`token_weights` from the pieces' sentence frequencies ``df`` over ``n`` sentences."""
    return piece_weights(df, n, content_pieces(vocabulary, stopwords))


def content_pieces(vocabulary: list[str], stopwords: frozenset[str]) -> np.ndarray:
    """Per word piece of the vocabulary: whether it can say what a text is about (not a stop word,
    punctuation or a special token); the others weigh 0 in the word-piece match."""
    return _content_pieces(tuple(vocabulary), stopwords)


@lru_cache(maxsize=4)  # one model's vocabulary and stop words: every update's segment asks again
def _content_pieces(vocabulary: tuple[str, ...], stopwords: frozenset[str]) -> np.ndarray:
    content = np.array([any(c.isalnum() for c in piece) and not (piece.startswith("[") and piece.endswith("]"))
                     and piece not in stopwords for piece in vocabulary], dtype=bool)
    content.setflags(write=False)  # shared by every caller
    return content


def piece_weights(df: np.ndarray, n: int, content: np.ndarray) -> np.ndarray:
    """Each piece's idf over ``n`` sentences, ``df`` of which hold it; 0 for a piece that is not content."""
    idf = np.log((n + 1) / (df + 0.5)).astype(np.float32)
    return np.where(content, np.maximum(idf, 0.0), 0.0).astype(np.float32)


def mean_vectors(sentence_vectors: np.ndarray, passages: list[Passage]) -> np.ndarray:
    """Each passage's vector as the normalised mean of its sentences' (no second pass of the model)."""
    sizes = np.fromiter((len(p.sentence_ids) for p in passages), dtype=np.int64, count=len(passages))
    flat = np.fromiter((i for p in passages for i in p.sentence_ids), dtype=np.int64, count=int(sizes.sum()))
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    sums = np.add.reduceat(np.asarray(sentence_vectors[flat], dtype=np.float32), starts, axis=0)  # every size ≥ 1
    sums /= np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
    return sums

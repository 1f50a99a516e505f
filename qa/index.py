"""Building, saving and loading the searchable index of a corpus.

An index folder holds one or more immutable builds and a ``current`` symlink to the one in service.
A build is written into its own new folder and published by atomically replacing the symlink, so a
reader never sees a half-written index and a server keeps answering from the old build until then.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from qa.ingest import split_sentences
from qa.lexical import LexicalIndex
from qa.text import ANALYZER_VERSION, Analyzer, default_stopwords
from qa.types import Document, Passage, Sentence

FORMAT_VERSION = 3
CURRENT = "current"


class IndexUnavailable(RuntimeError):
    """The index cannot be used as it is; the message says what to run."""


class IndexMissing(IndexUnavailable):
    pass


class IndexCorrupt(IndexUnavailable):
    pass


def corpus_fingerprint(docs: list[Document]) -> str:
    h = hashlib.sha256()
    for d in sorted(docs, key=lambda d: d.doc_id):
        h.update(d.doc_id.encode())
        h.update(b"\0")
        h.update(hashlib.sha256(d.raw.encode("utf-8")).digest())
    return h.hexdigest()


def make_passages(sentences: list[Sentence], size: int, overlap: int) -> list[Passage]:
    """Windows of ``size`` consecutive sentences of one document, consecutive windows sharing ``overlap``.

    ``sentences`` must be grouped by document and in order; their position in the list is their global id.
    The last window of a document is kept even when shorter, so every sentence is in some passage.
    """
    if overlap >= size:
        raise ValueError(f"passage overlap ({overlap}) must be smaller than passage size ({size})")
    step = size - overlap
    passages: list[Passage] = []
    start = 0
    while start < len(sentences):
        end = start
        while end < len(sentences) and sentences[end].doc_id == sentences[start].doc_id:
            end += 1
        for i in range(start, end, step):
            ids = tuple(range(i, min(i + size, end)))
            passages.append(Passage(len(passages), sentences[start].doc_id, ids))
            if ids[-1] == end - 1:
                break
        start = end
    return passages


def passage_text(passage: Passage, sentences: list[Sentence]) -> str:
    return " ".join(sentences[j].text for j in passage.sentence_ids)


@dataclass
class BuildSpec:
    """What a build depends on besides the documents: a change to any of it means a rebuild."""

    model: str
    passage_size: int
    passage_overlap: int
    layout: bool = True  # scraped-page layout (title, headings, furniture) vs plain paragraphs
    passage_vectors: str = "encode"  # "encode": embed the passage text; "mean": mean of its sentences'
    ann_min_passages: int = 100_000  # from this many passages the dense index is IVF (approximate), not flat
    analyzer_version: int = ANALYZER_VERSION
    token_vectors: bool = True  # keep each sentence's word-piece vectors (qa/rank.py token_match)

    def to_dict(self) -> dict:
        return {"model": self.model, "passage_size": self.passage_size, "passage_overlap": self.passage_overlap,
                "layout": self.layout, "passage_vectors": self.passage_vectors,
                "ann_min_passages": self.ann_min_passages, "analyzer_version": self.analyzer_version,
                "token_vectors": self.token_vectors}


@dataclass
class CorpusIndex:
    """Everything retrieval needs, loaded once and shared read-only between requests."""

    path: Path
    manifest: dict
    documents: dict[str, Document]
    sentences: list[Sentence]
    passages: list[Passage]
    faiss_index: object
    sentence_vectors: VectorRows  # rows read on demand: rows[ids]
    lexical_passages: LexicalIndex
    lexical_sentences: LexicalIndex
    analyzer: Analyzer
    sentence_passages: list[list[int]] = field(default_factory=list)  # sentence id → passage ids
    tokens: TokenRows | None = None  # word-piece vectors per sentence, when the build kept them

    def __post_init__(self):
        if not self.sentence_passages:
            self.sentence_passages = [[] for _ in self.sentences]
            for p in self.passages:
                for sid in p.sentence_ids:
                    self.sentence_passages[sid].append(p.passage_id)

    @cached_property
    def sentence_idf(self) -> dict[str, float]:
        """Term → idf over sentences (terms the corpus never uses are absent)."""
        lex = self.lexical_sentences
        return {t: float(lex.idf[i]) for t, i in lex.vocab.items()}

    @cached_property
    def sentence_documents(self) -> np.ndarray:
        """Sentence id → its document's ordinal: whether two sentences share a document, for many at once."""
        ordinal: dict[str, int] = {}
        return np.array([ordinal.setdefault(s.doc_id, len(ordinal)) for s in self.sentences], dtype=np.int64)

    @property
    def fingerprint(self) -> str:
        return self.manifest["corpus_fingerprint"]


def build(docs: list[Document], encoder, spec: BuildSpec, target: Path,
          progress: Callable[[str, int, int], None] | None = None, *, reuse: bool = True) -> Path:
    """Build an index of ``docs`` and publish it as ``target/current``; returns the build folder.

    With ``reuse``, sentences whose text the build in service already embedded with the same model keep
    their vectors: adding an article to a corpus encodes that article, not the corpus again.
    """
    if not docs:
        raise ValueError("the corpus has no readable documents")
    step = progress or (lambda *_: None)
    t0 = time.perf_counter()
    sentences = _split_all(docs, spec.layout, lambda done: step("split", done, len(docs)))
    if not sentences:
        raise ValueError("the corpus has no sentences")
    passages = make_passages(sentences, spec.passage_size, spec.passage_overlap)

    analyzer = Analyzer(stopwords=default_stopwords(), lemmatize=True).with_lemmas_of(s.text for s in sentences)
    sentence_terms = [analyzer.terms(s.text) for s in sentences]
    # A passage's text is its sentences joined by spaces, so its terms are theirs in order.
    passage_terms = [[t for j in p.sentence_ids for t in sentence_terms[j]] for p in passages]
    lexical_p = LexicalIndex.build(passage_terms)
    lexical_s = LexicalIndex.build(sentence_terms)

    texts = [s.text for s in sentences]
    if spec.passage_vectors == "encode":
        texts += [passage_text(p, sentences) for p in passages]
    known = _embedded_sentences(target, spec) if reuse else None
    vectors, tokens = _encode_in_batches(encoder, texts, lambda done, total: step("embed", done, total), known,
                                         keep_tokens=len(sentences) if spec.token_vectors else 0)
    sent_vecs = vectors[: len(sentences)]
    pass_vecs = vectors[len(sentences):] if spec.passage_vectors == "encode" else mean_vectors(sent_vecs, passages)
    findex = dense_index(pass_vecs, spec.ann_min_passages)

    weights = token_weights(tokens[2], tokens[1], encoder.vocabulary, analyzer.stopwords) if tokens else None
    build_dir = save_build(target, docs, sentences, passages, findex, sent_vecs, lexical_p, lexical_s, analyzer,
                           tokens, weights, {**spec.to_dict(), "dim": encoder.dim,
                                             "corpus_fingerprint": corpus_fingerprint(docs)}, t0)
    publish(target, build_dir)
    return build_dir


def save_build(target: Path, docs: list[Document], sentences: list[Sentence], passages: list[Passage], findex,
               sent_vecs: np.ndarray, lexical_p: LexicalIndex, lexical_s: LexicalIndex, analyzer: Analyzer,
               tokens: tuple[np.ndarray, np.ndarray, np.ndarray] | None, weights: np.ndarray | None,
               manifest: dict, started: float) -> Path:
    """Write a complete build folder under ``target`` (not yet published); ``manifest`` holds the spec and
    the corpus fingerprint, to which the counts are added. A sharded build (qa/cluster) writes each shard so."""
    import faiss

    target.mkdir(parents=True, exist_ok=True)
    build_dir = target / f"build-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    tmp_dir = target / f".tmp-{build_dir.name}"
    tmp_dir.mkdir()
    try:
        _write_json(tmp_dir / "documents.json", [{"doc_id": d.doc_id, "title": d.title, "raw": d.raw} for d in docs])
        np.save(tmp_dir / "sentences.npy", _sentence_table(sentences, docs))
        _write_json(tmp_dir / "passages.json", [[p.doc_id, list(p.sentence_ids)] for p in passages])
        faiss.write_index(findex, str(tmp_dir / "passages.faiss"))
        np.save(tmp_dir / "sentence_vectors.npy", sent_vecs)
        lexical_p.save(tmp_dir, "bm25_passages")
        lexical_s.save(tmp_dir, "bm25_sentences")
        _write_json(tmp_dir / "lemmas.json", analyzer.lemmas)
        if tokens is not None:
            TokenRows.write(tmp_dir, *tokens, weights)
        manifest = {
            "format_version": FORMAT_VERSION,
            **manifest,
            "documents": len(docs),
            "sentences": len(sentences),
            "passages": len(passages),
            "analyzer": analyzer.to_dict(),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "build_seconds": round(time.perf_counter() - started, 3),
        }
        _write_json(tmp_dir / "manifest.json", manifest)  # written last: its presence marks a complete build
        tmp_dir.rename(build_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return build_dir


def dense_index(vectors: np.ndarray, ann_min: int):
    """Exact inner-product search while the corpus is small; an inverted-file index (IVF) from ``ann_min``
    vectors on, which scans only the lists nearest the query (``nprobe`` of them, set at load time).

    nlist ≈ 4·√n is FAISS's usual starting point; k-means trains on up to 256 vectors per list.
    """
    import faiss

    n, dim = vectors.shape
    if n < ann_min:
        index = faiss.IndexFlatIP(dim)
    else:
        nlist = int(4 * np.sqrt(n))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        sample = np.random.default_rng(0).choice(n, size=min(n, 256 * nlist), replace=False)
        index.train(vectors[np.sort(sample)])
    index.add(vectors)
    return index


def publish(target: Path, build_dir: Path) -> None:
    """Point ``target/current`` at ``build_dir`` atomically, then drop builds nothing points at."""
    link = target / f".{CURRENT}-{uuid.uuid4().hex[:8]}"
    os.symlink(build_dir.name, link)
    os.replace(link, target / CURRENT)
    for old in target.glob("build-*"):
        if old.name != build_dir.name:
            shutil.rmtree(old, ignore_errors=True)


def published_build(target: Path) -> str | None:
    """The name of the build ``target/current`` points at (None when nothing is published): a cheap check
    of whether another process has published a new build since this one loaded its index."""
    try:
        return os.readlink(target / CURRENT)
    except OSError:
        return None


@contextmanager
def build_lock(target: Path) -> Iterator[None]:
    """Held while ``target`` is checked and built, so that processes sharing the folder (a server's worker
    processes, `qa index` beside a running server) build it once, one after the other. The lock is the
    kernel's (flock): it is released when its holder exits, however it exits."""
    target.mkdir(parents=True, exist_ok=True)
    with open(target / ".build.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def read_manifest(target: Path) -> dict:
    path = target / CURRENT / "manifest.json"
    if not (target / CURRENT).exists():
        raise IndexMissing(f"no index built at {target}: run `qa index`")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IndexCorrupt(f"the index at {target} is corrupt ({exc}): run `qa index --rebuild`") from exc


def load(target: Path, *, nprobe: int = 64) -> CorpusIndex:
    """Load the published build of ``target``; a clear :class:`IndexUnavailable` when it is not usable.
    ``nprobe``: inverted lists an IVF dense index scans per query (more: closer to exact, slower)."""
    import faiss

    manifest = read_manifest(target)
    if manifest.get("format_version") != FORMAT_VERSION:
        raise IndexCorrupt(
            f"the index at {target} has format {manifest.get('format_version')}, this qa reads {FORMAT_VERSION}: "
            "run `qa index --rebuild`"
        )
    build_dir = (target / CURRENT).resolve()
    try:
        raw_docs, table = _read_documents(build_dir)
        documents = {d["doc_id"]: Document(d["doc_id"], d["title"], d["raw"]) for d in raw_docs}
        doc_ids = [d["doc_id"] for d in raw_docs]
        kinds = ("title", "heading", "body")
        sentences = []
        for doc_no, idx, start, end, kind in table.tolist():
            doc = documents[doc_ids[doc_no]]
            sentences.append(Sentence(doc.doc_id, idx, start, end, doc.raw[start:end], kinds[kind]))
        passages = [
            Passage(i, doc_id, tuple(ids))
            for i, (doc_id, ids) in enumerate(json.loads((build_dir / "passages.json").read_text(encoding="utf-8")))
        ]
        findex = faiss.read_index(str(build_dir / "passages.faiss"))
        if isinstance(findex, faiss.IndexIVF):
            findex.nprobe = nprobe
        sentence_vectors = VectorRows(build_dir / "sentence_vectors.npy")
        lexical_p = LexicalIndex.load(build_dir, "bm25_passages")
        lexical_s = LexicalIndex.load(build_dir, "bm25_sentences")
        lemmas_file = build_dir / "lemmas.json"
        lemmas = json.loads(lemmas_file.read_text(encoding="utf-8")) if lemmas_file.exists() else {}
        tokens = TokenRows(build_dir) if manifest.get("token_vectors") else None
    except Exception as exc:  # any unreadable part means the same thing to the user
        raise IndexCorrupt(f"the index at {target} is corrupt ({type(exc).__name__}: {exc}): "
                           "run `qa index --rebuild`") from exc
    counts = (len(sentences), len(passages), findex.ntotal, sentence_vectors.shape[0], lexical_p.n_docs,
              lexical_s.n_docs, len(tokens) if tokens else len(sentences))
    expected = (manifest["sentences"], manifest["passages"], manifest["passages"], manifest["sentences"],
                manifest["passages"], manifest["sentences"], manifest["sentences"])
    if counts != expected:
        raise IndexCorrupt(f"the index at {target} is inconsistent (counts {counts} ≠ {expected}): "
                           "run `qa index --rebuild`")
    return CorpusIndex(
        path=build_dir, manifest=manifest, documents=documents, sentences=sentences, passages=passages,
        faiss_index=findex, sentence_vectors=sentence_vectors, lexical_passages=lexical_p,
        lexical_sentences=lexical_s, analyzer=Analyzer.from_dict(manifest["analyzer"], lemmas), tokens=tokens,
    )


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
        ids = np.asarray(ids, dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= self.shape[0]):
            raise IndexError("row id out of range")
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
        self._ids_path = folder / "token_ids.npy"

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def of(self, sentence_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The word pieces of ``sentence_ids``, sentence after sentence: their int8 vectors, each row's
        scale (vector ≈ row × scale) and where each sentence's rows start."""
        starts, ends = self.offsets[sentence_ids], self.offsets[sentence_ids + 1]
        lengths = ends - starts
        bounds = np.concatenate([[0], np.cumsum(lengths)])
        rows = np.arange(bounds[-1]) - np.repeat(bounds[:-1] - starts, lengths)
        return self.vectors.ranges(starts, ends), self.scales[rows], bounds[:-1]

    @cached_property
    def _ids(self) -> np.ndarray:
        return np.load(self._ids_path, mmap_mode="r")  # only a rebuild that reuses this build reads them

    def ids_of(self, sentence_id: int) -> np.ndarray:
        return np.array(self._ids[self.offsets[sentence_id] : self.offsets[sentence_id + 1]])

    @staticmethod
    def write(folder: Path, vectors: np.ndarray, offsets: np.ndarray, ids: np.ndarray, weights: np.ndarray) -> None:
        vectors = vectors.astype(np.float32)
        scales = np.maximum(np.abs(vectors).max(axis=1), 1e-12) / 127.0
        np.save(folder / "token_vectors.npy", np.round(vectors / scales[:, None]).astype(np.int8))
        np.save(folder / "token_scales.npy", scales.astype(np.float32))
        np.save(folder / "token_offsets.npy", offsets.astype(np.int64))
        np.save(folder / "token_ids.npy", ids.astype(np.int32))
        np.save(folder / "token_weights.npy", weights.astype(np.float32))


def token_weights(ids: np.ndarray, offsets: np.ndarray, vocabulary: list[str], stopwords: frozenset[str]) -> np.ndarray:
    """Per word piece of the vocabulary: its idf over the sentences (a piece no sentence has gets the
    highest), or 0 for a stop word, punctuation or a special token, which say nothing about the topic."""
    return weights_of_pieces(piece_frequencies(ids, offsets, len(vocabulary)), len(offsets) - 1, vocabulary,
                             stopwords)


def piece_frequencies(ids: np.ndarray, offsets: np.ndarray, vocabulary_size: int) -> np.ndarray:
    """Per word piece of the vocabulary: the number of sentences holding it (sums across shards)."""
    sentence_of = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    pairs = np.unique(np.stack([sentence_of, ids.astype(np.int64)]), axis=1)
    return np.bincount(pairs[1], minlength=vocabulary_size)


def weights_of_pieces(df: np.ndarray, n: int, vocabulary: list[str], stopwords: frozenset[str]) -> np.ndarray:
    """:func:`token_weights` from the pieces' sentence frequencies ``df`` over ``n`` sentences."""
    idf = np.log((n + 1) / (df + 0.5)).astype(np.float32)
    content = np.array([any(c.isalnum() for c in piece) and not (piece.startswith("[") and piece.endswith("]"))
                        and piece not in stopwords for piece in vocabulary], dtype=bool)
    return np.where(content, np.maximum(idf, 0.0), 0.0).astype(np.float32)


def _read_documents(build_dir: Path) -> tuple[list[dict], np.ndarray]:
    """A build's documents (doc_id, title, raw) and its sentence table (doc, index, start, end, kind)."""
    raw_docs = json.loads((build_dir / "documents.json").read_text(encoding="utf-8"))
    return raw_docs, np.load(build_dir / "sentences.npy")


def mean_vectors(sentence_vectors: np.ndarray, passages: list[Passage]) -> np.ndarray:
    """Each passage's vector as the normalised mean of its sentences' (no second pass of the model)."""
    sizes = np.fromiter((len(p.sentence_ids) for p in passages), dtype=np.int64, count=len(passages))
    flat = np.fromiter((i for p in passages for i in p.sentence_ids), dtype=np.int64, count=int(sizes.sum()))
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    sums = np.add.reduceat(np.asarray(sentence_vectors[flat], dtype=np.float32), starts, axis=0)  # every size ≥ 1
    sums /= np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
    return sums


def _sentence_table(sentences: list[Sentence], docs: list[Document]) -> np.ndarray:
    doc_no = {d.doc_id: i for i, d in enumerate(docs)}
    kinds = {"title": 0, "heading": 1, "body": 2}
    return np.array([(doc_no[s.doc_id], s.index, s.start, s.end, kinds[s.kind]) for s in sentences], dtype=np.int64)


PARALLEL_SPLIT_CHARS = 2_000_000  # below this, worker start-up costs more than it saves


def _split_all(docs: list[Document], layout: bool, report: Callable[[int], None]) -> list[Sentence]:
    """Every document's sentences, in corpus order. pysbd is pure Python (about 700 sentences/s per core here), so
    a large corpus is split in worker processes, one per core; spawned, not forked, because the parent may
    be running onnxruntime threads."""
    workers = min(os.cpu_count() or 1, 8)
    if workers < 2 or sum(len(d.raw) for d in docs) < PARALLEL_SPLIT_CHARS:
        sentences: list[Sentence] = []
        for i, doc in enumerate(docs):
            sentences.extend(split_sentences(doc, layout=layout))
            report(i + 1)
        return sentences
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from functools import partial

    chunk = max(1, min(500, len(docs) // (workers * 8)))
    batches = [docs[i : i + chunk] for i in range(0, len(docs), chunk)]
    sentences = []
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        for done, part in enumerate(pool.map(partial(_split_batch, layout=layout), batches), start=1):
            sentences.extend(part)
            report(min(done * chunk, len(docs)))
    return sentences


def _split_batch(docs: list[Document], layout: bool) -> list[Sentence]:
    return [s for d in docs for s in split_sentences(d, layout=layout)]


@dataclass
class _Known:
    """What the build in service already encoded: sentence text → row, its vectors and word pieces."""

    rows: dict[str, int]
    vectors: VectorRows
    tokens: TokenRows | None


def _embedded_sentences(target: Path, spec: BuildSpec) -> _Known | None:
    """The encodings of the build in service, if it was made with the same model (and kept word pieces
    when this build needs them)."""
    try:
        manifest = read_manifest(target)
        if manifest.get("format_version") != FORMAT_VERSION or manifest.get("model") != spec.model \
                or (spec.token_vectors and not manifest.get("token_vectors")):
            return None
        build_dir = (target / CURRENT).resolve()
        raw_docs, table = _read_documents(build_dir)
        rows = {raw_docs[doc_no]["raw"][start:end]: row
                for row, (doc_no, _, start, end, _) in enumerate(table.tolist())}
        vectors = VectorRows(build_dir / "sentence_vectors.npy")
        tokens = TokenRows(build_dir) if spec.token_vectors else None
    except (IndexUnavailable, OSError, ValueError, KeyError, IndexError):
        return None  # nothing usable: encode everything
    if len(vectors) != len(table) or (tokens is not None and len(tokens) != len(table)):
        return None
    return _Known(rows, vectors, tokens)


def _encode_in_batches(encoder, texts: list[str], report: Callable[[int, int], None], known: _Known | None = None,
                       batch: int = 512, keep_tokens: int = 0):
    """Vectors of ``texts``, each distinct text encoded once (news repeats boilerplate and wire copy), and
    not at all when ``known`` already holds its vector. With ``keep_tokens``, also the word pieces of the
    first ``keep_tokens`` texts (the sentences) as (float16 vectors, offsets, ids); else None."""
    first: dict[str, int] = {}
    inverse = np.fromiter((first.setdefault(t, len(first)) for t in texts), dtype=np.int64, count=len(texts))
    distinct = list(first)
    out = np.zeros((len(distinct), encoder.dim), dtype=np.float32)
    pieces: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(distinct)
    todo = np.arange(len(distinct))
    if known is not None:
        found = np.array([known.rows.get(t, -1) for t in distinct], dtype=np.int64)
        hit = found >= 0
        if hit.any():
            out[hit] = known.vectors[found[hit]]
            if keep_tokens:
                sids = found[hit]
                rows, scales, starts = known.tokens.of(sids)
                vectors = np.split((rows * scales[:, None]).astype(np.float16), starts[1:])
                for j, sid, v in zip(np.flatnonzero(hit).tolist(), sids.tolist(), vectors):
                    pieces[j] = (v, known.tokens.ids_of(sid))
        todo = np.flatnonzero(~hit)
    # Sorting by length keeps padding small inside each model batch; the order is restored afterwards.
    order = todo[np.argsort([len(distinct[j]) for j in todo], kind="stable")]
    for i in range(0, len(order), batch):
        ids = order[i : i + batch]
        chunk = [distinct[j] for j in ids]
        if keep_tokens:
            done = encoder.encode_tokens(chunk)
            out[ids] = done.vectors
            for j, t, p in zip(ids.tolist(), done.tokens, done.token_ids):
                pieces[j] = (t.astype(np.float16), p)
        else:
            out[ids] = encoder.encode(chunk)
        report(min(i + batch, len(order)), len(order))
    if not keep_tokens:
        return out[inverse], None
    per_text = [pieces[j] for j in inverse[:keep_tokens].tolist()]
    offsets = np.concatenate([[0], np.cumsum([len(p) for _, p in per_text])])
    vectors = np.concatenate([v for v, _ in per_text]) if per_text else np.zeros((0, encoder.dim), np.float16)
    return out[inverse], (vectors, offsets, np.concatenate([p for _, p in per_text]).astype(np.int32))


def _write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")

"""Building, saving and loading the searchable index of a corpus.

An index folder holds one or more immutable builds and a ``current`` symlink to the one in service.
A build is written into its own new folder and published by atomically replacing the symlink, so a
reader never sees a half-written index and a server keeps answering from the old build until then.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np

from qa import cues, leases
from qa.ingest import Skipped, split_sentences
from qa.layout import layout_key
from qa.lexical import LexicalIndex
from qa.text import ANALYZER_VERSION, Analyzer, default_stopwords
from qa.types import Document, Passage, Sentence

log = logging.getLogger(__name__)

FORMAT_VERSION = 4  # 4: documents keep their metadata, page starts and layout key; skipped files; code sentences
CURRENT = "current"
TMP_PREFIX = ".tmp-"  # a build is written into TMP_PREFIX + its name, then renamed


class IndexUnavailable(RuntimeError):
    """The index cannot be used as it is; the message says what to run."""


class IndexMissing(IndexUnavailable):
    pass


class IndexCorrupt(IndexUnavailable):
    pass


def corpus_fingerprint(docs: list[Document], skipped: Sequence[Skipped] = ()) -> str:
    """What a build was made from: every document's id, text, layout and metadata, and every file skipped
    (so a newly unreadable file is reported, not left out of the report)."""
    h = hashlib.sha256()
    for d in sorted(docs, key=lambda d: d.doc_id):
        h.update(d.doc_id.encode())
        h.update(b"\0")
        h.update(hashlib.sha256(d.raw.encode("utf-8")).digest())
        h.update(json.dumps(_document_fields(d), sort_keys=True, ensure_ascii=False).encode())
    for entry in skipped:
        h.update(json.dumps(entry.to_dict(), ensure_ascii=False).encode())
    return h.hexdigest()


def _document_fields(doc: Document) -> dict:
    """What documents.json keeps of a document besides its id, title and text (None fields left out)."""
    fields = {"url": doc.url, "published": doc.published, "source": doc.source, "author": doc.author,
              "pages": list(doc.pages) if doc.pages is not None else None, "layout": layout_key(doc) or None,
              "title": doc.title}
    return {k: v for k, v in fields.items() if v is not None}


def split_key(raw: str, layout: str | None) -> str:
    """The key under which a build keeps a document's sentences: its text, and its layout when that is not
    plain text (the same text as Markdown or from an HTML page's blocks splits differently)."""
    return f"{raw}\0{layout}" if layout else raw


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
    skipped: list[Skipped] = field(default_factory=list)  # the corpus folder's files this build did not read
    lease: leases.Lease | None = None  # held while this build is in use, so no publish removes its folder

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

    @cached_property
    def max_sentence_idf(self) -> float:
        """The highest idf over sentences (1.0 for an empty vocabulary): a term's salience is its share of it."""
        idf = self.sentence_idf
        return max(idf.values()) if idf else 1.0

    @cached_property
    def sentence_ids(self) -> dict[tuple[str, int], int]:
        """(doc_id, sentence index in the document) → global sentence id."""
        return {(s.doc_id, s.index): i for i, s in enumerate(self.sentences)}

    @cached_property
    def document_sentences(self) -> dict[str, np.ndarray]:
        """doc_id → its global sentence ids, in order."""
        by_doc: dict[str, list[int]] = {}
        for i, sentence in enumerate(self.sentences):
            by_doc.setdefault(sentence.doc_id, []).append(i)
        return {d: np.array(ids, dtype=np.int64) for d, ids in by_doc.items()}

    @cached_property
    def document_vectors(self) -> tuple[dict[str, int], np.ndarray]:
        """doc_id → row, and each document's unit mean sentence vector (what the document is about)."""
        by_doc = self.document_sentences
        rows = {d: r for r, d in enumerate(by_doc)}
        if not rows:
            return rows, np.zeros((0, self.sentence_vectors.shape[1]), dtype=np.float32)
        order = np.concatenate(list(by_doc.values()))
        starts = np.cumsum([0] + [len(ids) for ids in by_doc.values()])[:-1]
        sums = np.add.reduceat(np.asarray(self.sentence_vectors[order], dtype=np.float32), starts, axis=0)
        return rows, sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)

    def same_story(self, documents: Sequence[str], min_cosine: float) -> list[str]:
        """``documents`` and, after them, every other document whose mean vector is within ``min_cosine``
        of one of theirs: the articles that tell the same story (best first)."""
        rows, vectors = self.document_vectors
        known = [rows[d] for d in documents if d in rows]
        if not known:
            return list(documents)
        best = (vectors @ vectors[known].T).max(axis=1)
        best[known] = -np.inf
        names = list(rows)
        return [*documents, *(names[r] for r in np.argsort(-best, kind="stable") if best[r] >= min_cosine)]

    @cached_property
    def proper_words(self) -> frozenset[str]:
        """Casefolded words the corpus writes capitalised mid-sentence (qa.cues.proper_words)."""
        return cues.proper_words(s.text for s in self.sentences)

    @property
    def fingerprint(self) -> str:
        return self.manifest["corpus_fingerprint"]


def build(docs: list[Document], encoder, spec: BuildSpec, target: Path,
          progress: Callable[[str, int, int], None] | None = None, *, reuse: bool = True,
          skipped: Sequence[Skipped] = ()) -> Path:
    """Build an index of ``docs`` and publish it as ``target/current``; returns the build folder.

    With ``reuse`` the build in service is the starting point, so that the work is in proportion to the
    change: a document whose text it already holds keeps its sentences (not split again), and sentences
    whose text it already embedded with the same model keep their vectors and word pieces (copied as
    stored, not encoded again). The lexical and dense indexes are then made from those stored parts.
    ``skipped``: the corpus folder's files not read, kept with the build (``CorpusIndex.skipped``).
    Call with :func:`build_lock` held when other processes may build the same ``target``.
    """
    if not docs:
        raise ValueError("the corpus has no readable documents")
    step = progress or (lambda *_: None)
    t0 = time.perf_counter()
    previous = _previous_build(target, spec) if reuse else None
    sentences, previous_rows = _split_all(docs, spec.layout, lambda done: step("split", done, len(docs)), previous)
    if not sentences:
        raise ValueError("the corpus has no sentences")
    passages = make_passages(sentences, spec.passage_size, spec.passage_overlap)

    lexical_reuse = previous_rows if previous is not None and previous.lexical is not None else None
    analyzer = _analyzer(sentences, lexical_reuse, previous)
    terms, counts = _sentence_counts(sentences, lexical_reuse, previous, analyzer)
    lexical_s = LexicalIndex.from_counts(len(sentences), terms, *counts)
    lexical_p = LexicalIndex.from_counts(len(passages), terms, *_passage_counts(passages, len(sentences), *counts))

    texts = [s.text for s in sentences]
    if spec.passage_vectors == "encode":
        texts += [passage_text(p, sentences) for p in passages]
    encoded = [0]  # distinct texts this build had to encode

    def embedded(done: int, total: int) -> None:
        encoded[0] = total
        step("embed", done, total)

    vectors, tokens = _encode_in_batches(encoder, texts, embedded, previous,
                                         keep_tokens=len(sentences) if spec.token_vectors else 0,
                                         known_rows=previous_rows)
    sent_vecs = vectors[: len(sentences)]
    pass_vecs = vectors[len(sentences):] if spec.passage_vectors == "encode" else mean_vectors(sent_vecs, passages)
    findex = dense_index(pass_vecs, spec.ann_min_passages)

    manifest = {**spec.to_dict(), "dim": encoder.dim, "splitter": splitter_version(),
                "corpus_fingerprint": corpus_fingerprint(docs, skipped),
                "split_documents": len(docs) - (sum(split_key(d.raw, layout_key(d)) in previous.splits for d in docs)
                                                if previous else 0),
                "encoded_texts": encoded[0]}
    build_dir = save_build(target, docs, sentences, passages, findex, sent_vecs, lexical_p, lexical_s, analyzer,
                           tokens, previous.tokens if previous else None,
                           lambda ids, offsets: token_weights(ids, offsets, encoder.vocabulary, analyzer.stopwords),
                           manifest, t0, skipped=skipped)
    publish(target, build_dir)
    return build_dir


def save_build(target: Path, docs: list[Document], sentences: list[Sentence], passages: list[Passage], findex,
               sent_vecs: np.ndarray, lexical_p: LexicalIndex, lexical_s: LexicalIndex, analyzer: Analyzer,
               tokens: SentenceTokens | None, previous_tokens: TokenRows | None,
               weights_of: Callable[[np.ndarray, np.ndarray], np.ndarray], manifest: dict, started: float, *,
               skipped: Sequence[Skipped] = ()) -> Path:
    """Write a complete build folder under ``target`` (not yet published); ``manifest`` holds the spec and
    the corpus fingerprint, to which the counts are added. ``tokens`` are the sentences' word pieces (reused
    ones are rows of ``previous_tokens``); ``weights_of(ids, offsets)`` gives the pieces' weights. A sharded
    build (qa/cluster) writes each shard so, with corpus-wide weights."""
    import faiss

    target.mkdir(parents=True, exist_ok=True)
    build_dir = target / f"build-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    tmp_dir = target / f"{TMP_PREFIX}{build_dir.name}"
    tmp_dir.mkdir()
    try:
        _write_json(tmp_dir / "documents.json", [{"doc_id": d.doc_id, "raw": d.raw, **_document_fields(d)} for d in docs])
        _write_json(tmp_dir / "skipped.json", [entry.to_dict() for entry in skipped])
        np.save(tmp_dir / "sentences.npy", _sentence_table(sentences, docs))
        _write_json(tmp_dir / "passages.json", [[p.doc_id, list(p.sentence_ids)] for p in passages])
        faiss.write_index(findex, str(tmp_dir / "passages.faiss"))
        np.save(tmp_dir / "sentence_vectors.npy", sent_vecs)
        lexical_p.save(tmp_dir, "bm25_passages")
        lexical_s.save(tmp_dir, "bm25_sentences")
        _write_json(tmp_dir / "lemmas.json", analyzer.lemmas)
        if tokens is not None:
            TokenRows.write(tmp_dir, tokens, previous_tokens, weights_of)
        manifest = {
            "format_version": FORMAT_VERSION,
            **manifest,
            "documents": len(docs),
            "sentences": len(sentences),
            "passages": len(passages),
            "skipped": len(skipped),
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


def _analyzer(sentences: list[Sentence], reuse: np.ndarray | None, previous: _Previous | None) -> Analyzer:
    """The analyzer of a build, knowing the lemma of every word of its sentences. Reusing a build, it
    starts from that build's table and looks up only the words of new sentences: the table then also
    keeps words of removed documents, which only matters to a question using such a word in another
    form than the corpus does (`qa index --rebuild` makes the exact table)."""
    if reuse is None:
        return Analyzer(stopwords=default_stopwords(), lemmatize=True).with_lemmas_of(s.text for s in sentences)
    base = previous.analyzer
    fresh = base.with_lemmas_of(sentences[i].text for i in np.flatnonzero(reuse < 0).tolist())
    return replace(base, lemmas={**base.lemmas, **fresh.lemmas})


def _sentence_counts(sentences: list[Sentence], reuse: np.ndarray | None, previous: _Previous | None,
                     analyzer: Analyzer) -> tuple[list[str], tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Each sentence's index terms as counts (sentence, term, tf), ordered by sentence, and the terms:
    taken from the previous build's lexical index for sentences reused from it (``reuse[i]`` ≥ 0, their
    row there), from the analyzer for the others."""
    ids: dict[str, int] = {}
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    fresh = range(len(sentences))
    if reuse is not None:
        old = previous.lexical
        ids = {t: i for i, t in enumerate(old.terms)}
        docs, terms, tfs = old.counts()
        starts = np.searchsorted(docs, np.arange(old.n_docs + 1))
        taken = np.flatnonzero(reuse >= 0)
        lengths = starts[reuse[taken] + 1] - starts[reuse[taken]]
        at = gather_ranges(starts[reuse[taken]], lengths)
        parts.append((np.repeat(taken, lengths), terms[at], tfs[at]))
        fresh = np.flatnonzero(reuse < 0).tolist()
    rows: list[int] = []
    found: list[int] = []
    for i in fresh:
        for term in analyzer.terms(sentences[i].text):
            rows.append(i)
            found.append(ids.setdefault(term, len(ids)))
    width = max(len(ids), 1)
    keys, tf = np.unique(np.array(rows, dtype=np.int64) * width + np.array(found, dtype=np.int64), return_counts=True)
    parts.append((keys // width, keys % width, tf))
    doc, term, tf = (np.concatenate(column) for column in zip(*parts))
    order = np.argsort(doc, kind="stable")
    return list(ids), (doc[order], term[order], tf[order])


def _passage_counts(passages: list[Passage], n_sentences: int, doc: np.ndarray, term: np.ndarray,
                    tf: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A passage's counts are the sums of its sentences' (its text is theirs joined by spaces)."""
    starts = np.searchsorted(doc, np.arange(n_sentences + 1))
    sizes = np.fromiter((len(p.sentence_ids) for p in passages), dtype=np.int64, count=len(passages))
    members = np.fromiter((i for p in passages for i in p.sentence_ids), dtype=np.int64, count=int(sizes.sum()))
    owner = np.repeat(np.arange(len(passages), dtype=np.int64), sizes)
    lengths = starts[members + 1] - starts[members]
    at = gather_ranges(starts[members], lengths)
    n_terms = int(term.max()) + 1 if len(term) else 1
    keys, inverse = np.unique(np.repeat(owner, lengths) * n_terms + term[at], return_inverse=True)
    return keys // n_terms, keys % n_terms, np.bincount(inverse, weights=tf[at]).astype(np.int64)


def gather_ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The positions ``starts[i]`` to ``starts[i] + lengths[i]`` for each ``i``, one range after the other."""
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    return np.arange(bounds[-1], dtype=np.int64) - np.repeat(bounds[:-1] - starts, lengths)


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
    """Point ``target/current`` at ``build_dir`` atomically, then remove the builds nothing points at and
    no process holds a lease on (:mod:`qa.leases`: a server still loading or serving one keeps it; a later
    publish removes it once its readers have moved). Call with :func:`build_lock` held."""
    link = target / f".{CURRENT}-{uuid.uuid4().hex[:8]}"
    os.symlink(build_dir.name, link)
    os.replace(link, target / CURRENT)
    for old in target.glob("build-*"):
        if old.name != build_dir.name:
            try:
                leases.remove_unleased(old, trash=target / f"{TMP_PREFIX}{old.name}")
            except OSError as exc:  # the new build is published whatever happens to an old one
                log.warning("could not remove the old build %s: %s", old.name, exc)


def published_build(target: Path) -> str | None:
    """The name of the build ``target/current`` points at (None when nothing is published): a cheap check
    of whether another process has published a new build since this one loaded its index."""
    try:
        return os.readlink(target / CURRENT)
    except OSError:
        return None


_locks_held = threading.local()  # the build locks the current thread holds (their lock files)


@contextmanager
def build_lock(target: Path) -> Iterator[None]:
    """Held while ``target`` is checked and built, so that processes sharing the folder (a server's worker
    processes, `qa index` beside a running server) build it once, one after the other; a document update
    holds it from its file change to the build that includes it. The lock is the kernel's (flock): it is
    released when its holder exits, however it exits. A thread that holds it may take it again (the outer
    hold decides when it is released); other threads of the process wait as other processes do.

    Whoever holds it is the only builder, so a temporary build folder found then was left by a build that
    was killed: it is removed."""
    target.mkdir(parents=True, exist_ok=True)
    lock_file = str((target / ".build.lock").resolve())
    held = _locks_held.__dict__.setdefault("files", set())
    if lock_file in held:
        yield
        return
    with open(lock_file, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        held.add(lock_file)
        try:
            for stale in target.glob(f"{TMP_PREFIX}build-*"):
                shutil.rmtree(stale, ignore_errors=True)
            yield
        finally:
            held.discard(lock_file)


def build_running(target: Path) -> bool:
    """Whether some process (this one included) holds the build lock of ``target``: an index build or
    update is in progress."""
    lock = target / ".build.lock"
    if not lock.exists():
        return False
    with open(lock, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
        return False


@lru_cache(maxsize=1)
def splitter_version() -> str:
    """A digest of the sentence splitter's source (qa/layout.py, qa/segment.py): sentences cached in a build
    are reused only by a build that would split the same way."""
    import inspect

    from qa import layout, segment

    source = "".join(inspect.getsource(module) for module in (layout, segment))
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:16]


def read_manifest(target: Path) -> dict:
    if not (target / CURRENT).exists():
        raise IndexMissing(f"no index built at {target}: run `qa index`")
    return _build_manifest(target, target / CURRENT)


def _build_manifest(target: Path, build_dir: Path) -> dict:
    try:
        return json.loads((build_dir / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IndexCorrupt(f"the index at {target} is corrupt ({exc}): run `qa index --rebuild`") from exc


LOAD_ATTEMPTS = 20  # builds replaced one after the other while one process loads: each try is milliseconds


def load(target: Path, *, nprobe: int = 64) -> CorpusIndex:
    """Load the published build of ``target``; a clear :class:`IndexUnavailable` when it is not usable.
    ``nprobe``: inverted lists an IVF dense index scans per query (more: closer to exact, slower).

    The build is leased before anything of it is read, and the lease is kept with the index
    (``CorpusIndex.lease``), so no publish removes it while it is read. A build replaced and removed
    between finding and leasing it, or one that fails to load while a newer one has been published
    since, is not an error: the build published then is loaded instead."""
    for _ in range(LOAD_ATTEMPTS):
        name = published_build(target)
        if name is None:  # no link: no index, or a folder named `current` (a copy), loaded as it is
            if not (target / CURRENT).is_dir():
                raise IndexMissing(f"no index built at {target}: run `qa index`")
            return _load_build(target, target / CURRENT, leases.take(target / CURRENT), nprobe)
        build_dir = target / name
        try:
            lease = leases.take(build_dir)
        except leases.FolderGone:
            continue
        try:
            return _load_build(target, build_dir.resolve(), lease, nprobe)
        except IndexCorrupt:
            lease.release()
            if published_build(target) == build_dir.name:
                raise
    raise IndexCorrupt(f"the index at {target} kept changing while it was loaded ({LOAD_ATTEMPTS} builds)")


def _load_build(target: Path, build_dir: Path, lease: leases.Lease, nprobe: int) -> CorpusIndex:
    import faiss

    manifest = _build_manifest(target, build_dir)
    if manifest.get("format_version") != FORMAT_VERSION:
        raise IndexCorrupt(
            f"the index at {target} has format {manifest.get('format_version')}, this qa reads {FORMAT_VERSION}: "
            "run `qa index --rebuild`"
        )
    try:
        raw_docs, table = _read_documents(build_dir)
        documents = {d["doc_id"]: _document_of(d) for d in raw_docs}
        doc_ids = [d["doc_id"] for d in raw_docs]
        sentences = []
        for doc_no, idx, start, end, kind in table.tolist():
            doc = documents[doc_ids[doc_no]]
            sentences.append(Sentence(doc.doc_id, idx, start, end, doc.raw[start:end], KINDS[kind]))
        skipped_file = build_dir / "skipped.json"
        skipped = [Skipped(**entry) for entry in json.loads(skipped_file.read_text(encoding="utf-8"))] \
            if skipped_file.exists() else []
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
        skipped=skipped,
        lease=lease,
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

    def ids_of(self, sentence_id: int) -> np.ndarray:
        return np.array(self._ids[self.offsets[sentence_id] : self.offsets[sentence_id + 1]])

    @staticmethod
    def write(folder: Path, tokens: SentenceTokens, previous: TokenRows | None,
              weights_of: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> None:
        """Write every sentence's word pieces: those of newly encoded sentences quantised here, those of
        reused ones copied byte for byte from ``previous`` (no decoding, no second rounding), one copy per
        run of consecutive rows. At 100,000 sentences the vectors are over a gigabyte, so the copy stays
        in the kernel (``os.copy_file_range``) instead of passing through NumPy."""
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
        new_vectors = tokens.vectors.astype(np.float32)
        new_scales = np.maximum(np.abs(new_vectors).max(axis=1, initial=0.0), 1e-12) / 127.0
        new_rows = np.round(new_vectors / new_scales[:, None]).astype(np.int8)
        dim = new_rows.shape[1] if not reused.any() else previous.vectors.shape[1]
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
                    _copy_bytes(previous.vectors, lo, hi, fh.fileno(), data_at + out.start * dim)
                else:
                    lo, hi = tokens.offsets[new_at[first]], tokens.offsets[new_at[last]]
                    ids[out], scales[out] = tokens.ids[lo:hi], new_scales[lo:hi]
                    os.pwrite(fh.fileno(), new_rows[lo:hi].tobytes(), data_at + out.start * dim)
            os.ftruncate(fh.fileno(), data_at + int(offsets[-1]) * dim)
        np.save(folder / "token_scales.npy", scales)
        np.save(folder / "token_offsets.npy", offsets)
        np.save(folder / "token_ids.npy", ids)
        np.save(folder / "token_weights.npy", weights_of(ids, offsets).astype(np.float32))


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
    idf = np.log((n + 1) / (df + 0.5)).astype(np.float32)
    content = np.array([any(c.isalnum() for c in piece) and not (piece.startswith("[") and piece.endswith("]"))
                        and piece not in stopwords for piece in vocabulary], dtype=bool)
    return np.where(content, np.maximum(idf, 0.0), 0.0).astype(np.float32)


def _read_documents(build_dir: Path) -> tuple[list[dict], np.ndarray]:
    """A build's documents (doc_id, title, raw and the other fields of :func:`_document_fields`) and its
    sentence table (doc, index, start, end, kind)."""
    raw_docs = json.loads((build_dir / "documents.json").read_text(encoding="utf-8"))
    return raw_docs, np.load(build_dir / "sentences.npy")


def _document_of(entry: dict) -> Document:
    pages = entry.get("pages")
    return Document(entry["doc_id"], entry["title"], entry["raw"], url=entry.get("url"),
                    published=entry.get("published"), source=entry.get("source"), author=entry.get("author"),
                    pages=tuple(pages) if pages is not None else None)


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
    kinds = {kind: i for i, kind in enumerate(KINDS)}
    return np.array([(doc_no[s.doc_id], s.index, s.start, s.end, kinds[s.kind]) for s in sentences], dtype=np.int64)


PARALLEL_SPLIT_CHARS = 2_000_000  # below this, worker start-up costs more than it saves
KINDS = ("title", "heading", "body", "code")  # a sentence's kind, by its number in the sentence table


def _split_all(docs: list[Document], layout: bool, report: Callable[[int], None],
               previous: _Previous | None = None) -> tuple[list[Sentence], np.ndarray]:
    """Every document's sentences, in corpus order, and for each its row in ``previous`` (-1 when split
    here). A document whose exact text ``previous`` holds takes its sentences from there."""
    cached = previous.splits if previous is not None else {}
    keys = [split_key(d.raw, layout_key(d)) for d in docs]
    todo = [d for d, key in zip(docs, keys) if key not in cached]
    fresh = iter(split_documents(todo, layout, lambda done: report(done + len(docs) - len(todo))))
    sentences: list[Sentence] = []
    rows: list[np.ndarray] = []
    for doc, key in zip(docs, keys):
        span = cached.get(key)
        if span is None:
            part = next(fresh)
            rows.append(np.full(len(part), -1, dtype=np.int64))
        else:
            part = [Sentence(doc.doc_id, idx, start, end, doc.raw[start:end], KINDS[kind])
                    for idx, start, end, kind in previous.table[span[0] : span[1], 1:].tolist()]
            rows.append(np.arange(span[0], span[1], dtype=np.int64))
        sentences.extend(part)
    report(len(docs))
    return sentences, np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)


def split_documents(docs: list[Document], layout: bool, report: Callable[[int], None]) -> list[list[Sentence]]:
    """Each document's sentences. pysbd is pure Python (about 700 sentences/s per core here), so a large
    corpus is split in worker processes, one per core; spawned, not forked, because the parent may be
    running onnxruntime threads. The workers end with the build, however it ends: each watches its parent
    and exits once the parent is gone (a killed `qa index` leaves no worker splitting for nobody)."""
    workers = min(os.cpu_count() or 1, 8)
    if workers < 2 or sum(len(d.raw) for d in docs) < PARALLEL_SPLIT_CHARS:
        out = []
        for i, doc in enumerate(docs):
            out.append(split_sentences(doc, layout=layout))
            report(i + 1)
        return out
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from functools import partial

    chunk = max(1, min(500, len(docs) // (workers * 8)))
    batches = [docs[i : i + chunk] for i in range(0, len(docs), chunk)]
    out = []
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_exit_with_parent, initargs=(os.getpid(),))
    try:
        for done, part in enumerate(pool.map(partial(_split_batch, layout=layout), batches), start=1):
            out.extend(part)
            report(min(done * chunk, len(docs)))
    finally:  # on an error or Ctrl-C, batches not started are dropped rather than split first
        pool.shutdown(wait=True, cancel_futures=True)
    return out


def _split_batch(docs: list[Document], layout: bool) -> list[list[Sentence]]:
    return [split_sentences(d, layout=layout) for d in docs]


def _exit_with_parent(parent: int, every: float = 0.2) -> None:
    """Pool worker initializer: a thread that ends the worker once ``parent`` is no longer its parent."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every)
        os._exit(1)

    threading.Thread(target=watch, name="qa-parent-watch", daemon=True).start()


@dataclass
class _Previous:
    """The build in service as a starting point: its sentence table, the span of rows of each document
    text (when it was split the way this build splits), its rows by sentence text, vectors and word pieces."""

    table: np.ndarray  # (doc, index, start, end, kind) per sentence row
    splits: dict[str, tuple[int, int]]  # split_key (document text and layout) → [first, last) rows
    rows: dict[str, int]  # sentence text → a row
    vectors: VectorRows
    tokens: TokenRows | None
    lexical: LexicalIndex | None = None  # its sentences' terms, when analysed as this build analyses
    analyzer: Analyzer | None = None


def _previous_build(target: Path, spec: BuildSpec) -> _Previous | None:
    """The build in service, if its encodings can be reused: made with the same model (and keeping word
    pieces when this build needs them). Its sentences are reused too when it split with the same splitter
    and layout."""
    try:
        manifest = read_manifest(target)
        if manifest.get("format_version") != FORMAT_VERSION or manifest.get("model") != spec.model \
                or (spec.token_vectors and not manifest.get("token_vectors")):
            return None
        build_dir = (target / CURRENT).resolve()
        raw_docs, table = _read_documents(build_dir)
        vectors = VectorRows(build_dir / "sentence_vectors.npy")
        tokens = TokenRows(build_dir) if spec.token_vectors else None
    except (IndexUnavailable, OSError, ValueError, KeyError, IndexError):
        return None  # nothing usable: split and encode everything
    if len(vectors) != len(table) or (tokens is not None and len(tokens) != len(table)):
        return None
    raws = [d["raw"] for d in raw_docs]
    keys = [split_key(d["raw"], d.get("layout")) for d in raw_docs]
    rows = {raws[doc_no][start:end]: row for row, (doc_no, _, start, end, _) in enumerate(table.tolist())}
    splits: dict[str, tuple[int, int]] = {}
    lexical = analyzer = None
    if manifest.get("layout") == spec.layout and manifest.get("splitter") == splitter_version():
        bounds = np.flatnonzero(np.diff(table[:, 0], prepend=-1, append=-1))  # where each document's rows begin
        for first, last in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
            splits.setdefault(keys[table[first, 0]], (first, last))
        if manifest.get("analyzer_version") == spec.analyzer_version:
            try:
                lexical = LexicalIndex.load(build_dir, "bm25_sentences")
                lemmas = json.loads((build_dir / "lemmas.json").read_text(encoding="utf-8"))
                analyzer = Analyzer.from_dict(manifest["analyzer"], lemmas)
            except (OSError, ValueError, KeyError):
                lexical = analyzer = None
            if lexical is not None and lexical.n_docs != len(table):
                lexical = analyzer = None
    return _Previous(table, splits, rows, vectors, tokens, lexical, analyzer)


def _encode_in_batches(encoder, texts: list[str], report: Callable[[int, int], None],
                       known: _Previous | None = None, batch: int = 512, keep_tokens: int = 0,
                       known_rows: np.ndarray | None = None):
    """Vectors of ``texts``, each distinct text encoded once (news repeats boilerplate and wire copy), and
    not at all when ``known`` already holds it: at ``known_rows[i]`` (≥ 0) for the first texts, else any row
    with that text. With ``keep_tokens``, the word pieces of the first ``keep_tokens`` texts (the
    sentences) as :class:`SentenceTokens` (reused ones by their row in ``known``); else None."""
    first: dict[str, int] = {}
    inverse = np.fromiter((first.setdefault(t, len(first)) for t in texts), dtype=np.int64, count=len(texts))
    distinct = list(first)
    out = np.zeros((len(distinct), encoder.dim), dtype=np.float32)
    source = np.full(len(texts), -1, dtype=np.int64)  # per text: its row in `known`
    if known is not None:
        if known_rows is not None:
            source[: len(known_rows)] = known_rows
        lookup = np.flatnonzero(source < 0)
        source[lookup] = np.fromiter((known.rows.get(texts[i], -1) for i in lookup), dtype=np.int64, count=len(lookup))
    found = np.full(len(distinct), -1, dtype=np.int64)
    found[inverse[source >= 0]] = source[source >= 0]
    hit = found >= 0
    if hit.any():
        out[hit] = known.vectors[found[hit]]
    todo = np.flatnonzero(~hit)
    pieces: dict[int, tuple[np.ndarray, np.ndarray]] = {}
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
    # A sentence takes the word pieces of the row its vector came from, else those encoded here.
    rows = np.where(source[:keep_tokens] >= 0, source[:keep_tokens], found[inverse[:keep_tokens]])
    new = [pieces[j] for j in inverse[:keep_tokens][rows < 0].tolist()]
    offsets = np.concatenate([[0], np.cumsum([len(p) for _, p in new], dtype=np.int64)]).astype(np.int64)
    vectors = np.concatenate([v for v, _ in new]) if new else np.zeros((0, encoder.dim), np.float16)
    ids = np.concatenate([p for _, p in new]).astype(np.int32) if new else np.zeros(0, np.int32)
    return out[inverse], SentenceTokens(rows, vectors, offsets, ids)


def _write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")

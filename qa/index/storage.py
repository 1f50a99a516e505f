"""A build folder on disk: written complete under a temporary name (:func:`save_build`), read back whole
and checked (:func:`load`)."""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qa import leases
from qa.index.corpus import CorpusIndex
from qa.index.publish import CURRENT, TMP_PREFIX, published_build
from qa.index.rows import CopiedTokens, SentenceTokens, TokenRows, VectorRows
from qa.index.spec import (FORMAT_VERSION, KINDS, BuildSpec, IndexCorrupt, IndexMissing, corpus_fingerprint,
                           document_fields)
from qa.ingest import Skipped
from qa.lexical import LexicalIndex
from qa.text import Analyzer
from qa.types import Document, Passage, Sentence


@dataclass
class BuildParts:
    """Everything a build folder holds, as a build (:func:`qa.index.build.build`) or a shard's
    (:func:`qa.cluster.shards.write_shard`) made it."""

    docs: list[Document]
    sentences: list[Sentence]
    passages: list[Passage]
    dense: object  # the FAISS index of the passage vectors
    sentence_vectors: np.ndarray
    lexical_passages: LexicalIndex
    lexical_sentences: LexicalIndex
    analyzer: Analyzer
    tokens: SentenceTokens | CopiedTokens | None = None  # the sentences' word pieces, when the spec keeps them
    previous_tokens: TokenRows | None = None  # the build that ``tokens``' reused rows come from
    token_weights: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None  # (ids, offsets) → piece weights
    piece_content: np.ndarray | None = None  # which vocabulary pieces are content (rows.content_pieces)
    skipped: Sequence[Skipped] = ()  # the corpus folder's files not read
    stored_fields: dict[str, dict] | None = None  # documents' fields as an earlier build stored them (a merge)


def save_build(target: Path, parts: BuildParts, manifest: dict, started: float) -> Path:
    """Write a complete build folder under ``target`` (not yet published); ``manifest`` holds the spec and
    the corpus fingerprint, to which the counts are added. Reused word pieces are copied from
    ``parts.previous_tokens``; a sharded build (qa/cluster) gives corpus-wide piece weights."""
    import faiss

    target.mkdir(parents=True, exist_ok=True)
    build_dir = target / f"build-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    tmp_dir = target / f"{TMP_PREFIX}{build_dir.name}"
    tmp_dir.mkdir()
    docs, sentences, passages, skipped = parts.docs, parts.sentences, parts.passages, parts.skipped
    try:
        stored = parts.stored_fields or {}
        _write_json(tmp_dir / "documents.json", [{"doc_id": d.doc_id, "raw": d.raw,
                                                  **(stored[d.doc_id] if d.doc_id in stored else document_fields(d))}
                                                 for d in docs])
        _write_json(tmp_dir / "skipped.json", [entry.to_dict() for entry in skipped])
        np.save(tmp_dir / "sentences.npy", _sentence_table(sentences, docs))
        _write_json(tmp_dir / "passages.json", [[p.doc_id, list(p.sentence_ids)] for p in passages])
        faiss.write_index(parts.dense, str(tmp_dir / "passages.faiss"))
        np.save(tmp_dir / "sentence_vectors.npy", parts.sentence_vectors)
        parts.lexical_passages.save(tmp_dir, "bm25_passages")
        parts.lexical_sentences.save(tmp_dir, "bm25_sentences")
        _write_json(tmp_dir / "lemmas.json", parts.analyzer.lemmas)
        if isinstance(parts.tokens, CopiedTokens):
            parts.tokens.write(tmp_dir)
        elif parts.tokens is not None:
            TokenRows.write(tmp_dir, parts.tokens, parts.previous_tokens, parts.token_weights, parts.piece_content)
        manifest = {
            "format_version": FORMAT_VERSION,
            **manifest,
            "documents": len(docs),
            "sentences": len(sentences),
            "passages": len(passages),
            "skipped": len(skipped),
            "analyzer": parts.analyzer.to_dict(),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "build_seconds": round(time.perf_counter() - started, 3),
        }
        _write_json(tmp_dir / "manifest.json", manifest)  # written last: its presence marks a complete build
        tmp_dir.rename(build_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return build_dir


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


def load(target: Path, *, nprobe: int = 64, loaded: Sequence[CorpusIndex] = ()) -> CorpusIndex:
    """Load the published build of ``target``; a clear :class:`IndexUnavailable` when it is not usable.
    ``nprobe``: inverted lists an IVF dense index scans per query (more: closer to exact, slower).

    The build is leased before anything of it is read, and the lease is kept with the index
    (``CorpusIndex.lease``), so no publish removes it while it is read. A build replaced and removed
    between finding and leasing it, or one that fails to load while a newer one has been published
    since, is not an error: the build published then is loaded instead. A generation of segments
    (qa/index/segments.py) is loaded as one :class:`~qa.index.segmented.SegmentedIndex`, its segments
    leased too; segments in ``loaded`` (those of the index in service) are shared, not read again."""
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
            return _load_published(target, build_dir.resolve(), lease, nprobe, loaded)
        except leases.FolderGone:  # a segment of a generation replaced and collected meanwhile
            lease.release()
        except IndexCorrupt:
            lease.release()
            if published_build(target) == build_dir.name:
                raise
    raise IndexCorrupt(f"the index at {target} kept changing while it was loaded ({LOAD_ATTEMPTS} builds)")


def _load_published(target: Path, folder: Path, lease: leases.Lease, nprobe: int,
                    loaded: Sequence[CorpusIndex]) -> CorpusIndex:
    """A published build, or a generation of segments."""
    from qa.index.segmented import compose
    from qa.index.segments import check_generation, is_generation, lease_segments

    manifest = _build_manifest(target, folder)
    if not is_generation(manifest):
        return _load_build(target, folder, lease, nprobe)
    if manifest.get("format_version") != FORMAT_VERSION:
        raise IndexCorrupt(f"the index at {target} has format {manifest.get('format_version')}, this qa reads "
                           f"{FORMAT_VERSION}: run `qa index --rebuild`")
    check_generation(target, manifest)
    held = lease_segments(target, manifest)
    try:
        known = {segment.path.name: segment for segment in loaded}
        segments = [known.get(entry["name"]) or _load_build(target, target / entry["name"], None, nprobe)
                    for entry in manifest["segments"]]
        skipped_file = folder / "skipped.json"
        skipped = [Skipped(**entry) for entry in json.loads(skipped_file.read_text(encoding="utf-8"))] \
            if skipped_file.exists() else []
    except BaseException:
        for segment_lease in held:
            segment_lease.release()
        raise
    return compose(segments, [frozenset(e["deleted"]) for e in manifest["segments"]], path=folder,
                   manifest=manifest, skipped=skipped, held=[lease, *held])


def _load_build(target: Path, build_dir: Path, lease: leases.Lease | None, nprobe: int) -> CorpusIndex:
    import faiss

    manifest = _build_manifest(target, build_dir)
    if manifest.get("format_version") != FORMAT_VERSION:
        raise IndexCorrupt(
            f"the index at {target} has format {manifest.get('format_version')}, this qa reads {FORMAT_VERSION}: "
            "run `qa index --rebuild`"
        )
    try:
        raw_docs, table = read_documents(build_dir)
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
        skipped=skipped, lease=lease,
        stored_fields={d["doc_id"]: {k: v for k, v in d.items() if k not in ("doc_id", "raw")} for d in raw_docs},
    )


def read_documents(build_dir: Path) -> tuple[list[dict], np.ndarray]:
    """A build's documents (doc_id, title, raw and the other fields of :func:`document_fields`) and its
    sentence table (doc, index, start, end, kind)."""
    raw_docs = json.loads((build_dir / "documents.json").read_text(encoding="utf-8"))
    return raw_docs, np.load(build_dir / "sentences.npy")


def _document_of(entry: dict) -> Document:
    pages = entry.get("pages")
    return Document(entry["doc_id"], entry["title"], entry["raw"], url=entry.get("url"),
                    published=entry.get("published"), source=entry.get("source"), author=entry.get("author"),
                    pages=tuple(pages) if pages is not None else None)


def _sentence_table(sentences: list[Sentence], docs: list[Document]) -> np.ndarray:
    doc_no = {d.doc_id: i for i, d in enumerate(docs)}
    kinds = {kind: i for i, kind in enumerate(KINDS)}
    return np.array([(doc_no[s.doc_id], s.index, s.start, s.end, kinds[s.kind]) for s in sentences], dtype=np.int64)


def _write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


def index_is_current(target: Path, docs: list[Document], spec: BuildSpec,
                     skipped: Sequence[Skipped] = ()) -> tuple[bool, str]:
    """Whether the published index was built from exactly these documents (and skipped files) with this
    spec, and why not."""
    try:
        manifest = read_manifest(target)
    except IndexMissing:
        return False, "no index yet"
    except IndexCorrupt as exc:
        return False, str(exc)
    if manifest.get("format_version") != FORMAT_VERSION:
        return False, "index format changed"
    if manifest.get("corpus_fingerprint") != corpus_fingerprint(docs, skipped):
        return False, "the corpus changed"
    if any(manifest.get(k) != v for k, v in spec.to_dict().items()):
        return False, "index settings changed"
    return True, "up to date"

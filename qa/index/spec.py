"""What a build is made of and from: the index format, the build spec, the corpus fingerprint, the
passages (windows of sentences) and the errors of an index that cannot be used."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from qa.ingest import Skipped
from qa.layout import layout_key
from qa.text import ANALYZER_VERSION
from qa.types import Document, Passage, Sentence


FORMAT_VERSION = 4  # 4: documents keep their metadata, page starts and layout key; skipped files; code sentences


KINDS = ("title", "heading", "body", "code")  # a sentence's kind, by its number in the sentence table


class IndexUnavailable(RuntimeError):
    """The index cannot be used as it is; the message says what to run."""


class IndexMissing(IndexUnavailable):
    pass


class IndexCorrupt(IndexUnavailable):
    pass


@dataclass
class BuildSpec:
    """What a build depends on besides the documents: a change to any of it means a rebuild."""

    model: str
    passage_size: int
    passage_overlap: int
    layout: bool = True  # scraped-page layout (title, headings, furniture) vs plain paragraphs
    ann_min_passages: int = 100_000  # from this many passages the dense index is IVF (approximate), not flat
    analyzer_version: int = ANALYZER_VERSION
    token_vectors: bool = True  # keep each sentence's word-piece vectors (qa/rank.py token_match)

    def to_dict(self) -> dict:
        return {"model": self.model, "passage_size": self.passage_size, "passage_overlap": self.passage_overlap,
                "layout": self.layout, "ann_min_passages": self.ann_min_passages, "analyzer_version": self.analyzer_version,
                "token_vectors": self.token_vectors}


def corpus_fingerprint(docs: list[Document], skipped: Sequence[Skipped] = ()) -> str:
    """What a build was made from: every document's id, text, layout and metadata, and every file skipped
    (so a newly unreadable file is reported, not left out of the report)."""
    return fingerprint_of({d.doc_id: document_chunk(d.doc_id, d.raw, document_fields(d)) for d in docs}, skipped)


def document_chunk(doc_id: str, raw: str, fields: dict) -> bytes:
    """One document's part of the corpus fingerprint: its id, its text's digest and its stored fields
    (:func:`document_fields`, as documents.json keeps them, so a loaded index can compute it again)."""
    return b"".join((doc_id.encode(), b"\0", hashlib.sha256(raw.encode("utf-8")).digest(),
                     json.dumps(fields, sort_keys=True, ensure_ascii=False).encode()))


def fingerprint_of(chunks: Mapping[str, bytes], skipped: Sequence[Skipped] = ()) -> str:
    """The corpus fingerprint from each document's :func:`document_chunk` (in id order) and the skipped files
    (in path order: an update that read some files only records the same as a read of the whole folder)."""
    h = hashlib.sha256()
    for doc_id in sorted(chunks):
        h.update(chunks[doc_id])
    for entry in sorted(skipped, key=lambda s: (s.path, s.reason, s.detail or "")):
        h.update(json.dumps(entry.to_dict(), ensure_ascii=False).encode())
    return h.hexdigest()


def document_fields(doc: Document) -> dict:
    """What documents.json keeps of a document besides its id, title and text (None fields left out)."""
    fields = {"url": doc.url, "published": doc.published, "source": doc.source, "author": doc.author,
              "pages": list(doc.pages) if doc.pages is not None else None, "layout": layout_key(doc) or None,
              "title": doc.title}
    return {k: v for k, v in fields.items() if v is not None}


def split_key(raw: str, layout: str | None) -> str:
    """The key under which a build keeps a document's sentences: its text, and its layout when that is not
    plain text (the same text as Markdown or from an HTML page's blocks splits differently)."""
    return f"{raw}\0{layout}" if layout else raw


@lru_cache(maxsize=1)
def splitter_version() -> str:
    """A digest of the sentence splitter's source (qa/layout.py, qa/segment.py): sentences cached in a build
    are reused only by a build that would split the same way."""
    import inspect

    from qa import layout, segment

    source = "".join(inspect.getsource(module) for module in (layout, segment))
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:16]


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


def passage_count(n_sentences, size: int, overlap: int):
    """How many passages :func:`make_passages` makes of a document of ``n_sentences`` sentences (an int, or an
    array of documents' counts, counted at once): one window, then one per step until a window reaches the end."""
    n = np.asarray(n_sentences, dtype=np.int64)
    count = np.where(n > 0, 1 + np.maximum(0, -(-(n - size) // (size - overlap))), 0)
    return int(count) if count.ndim == 0 else count


def passage_text(passage: Passage, sentences: list[Sentence]) -> str:
    return " ".join(sentences[j].text for j in passage.sentence_ids)

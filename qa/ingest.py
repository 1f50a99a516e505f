"""Reading a corpus folder into documents, with a report of every file it does not read.

A folder (and its subfolders) may hold any format of :mod:`qa.formats` (``.txt``, ``.md``, ``.html``,
``.pdf``, ``.docx``, ``.odt``, ``.epub``, ``.rtf``, ``.eml``, ``.jsonl``); each becomes one canonical text
(a ``.jsonl`` file one per record). Offsets are into that text exactly as read, so
``doc.raw[s.start:s.end] == s.text`` holds for every sentence. Nothing is skipped in silence: a file that
is not read is a :class:`Skipped` entry with its reason (``qa.formats.REASONS``), logged and kept with the
index (``GET /documents/skipped``, ``qa index``'s summary).

How a document's text becomes sentences (paragraphs, titles, headings, code) is qa/layout.py's job;
:func:`split_sentences` and :func:`split_block` here apply the configured limits.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from qa import formats, layout, segment
from qa.formats import DocumentError, Metadata
from qa.types import Block, Document, Sentence

log = logging.getLogger(__name__)

# Reasons that are a user's choice or the folder's normal content rather than a problem: logged as info.
QUIET_REASONS = frozenset({formats.UNSUPPORTED, formats.HIDDEN})


@dataclass(frozen=True, slots=True)
class IngestLimits:
    """The ``Settings`` that reading and splitting obey."""

    max_sentence_chars: int
    max_document_bytes: int

    @classmethod
    def from_settings(cls, settings) -> IngestLimits:
        return cls(settings.max_sentence_chars, settings.max_document_bytes)


@lru_cache(maxsize=1)
def default_limits() -> IngestLimits:
    """The limits of the process's ``Settings`` (environment, ``.env``), read once."""
    from qa.config import Settings

    return IngestLimits.from_settings(Settings())


@dataclass(frozen=True, slots=True)
class Skipped:
    """A file of the corpus folder (or a line of a .jsonl file) that is not indexed, and why."""

    path: str  # relative POSIX path in the folder; a hidden or linked folder ends with "/"
    reason: str  # one of qa.formats.REASONS
    detail: str = ""  # the reason in words, e.g. "not UTF-8 text (invalid start byte at byte 3)"

    def to_dict(self) -> dict:
        return {"path": self.path, "reason": self.reason, "detail": self.detail}


@dataclass
class Corpus:
    """A folder as read: its documents (sorted by id) and what was not read."""

    documents: list[Document]
    skipped: list[Skipped] = field(default_factory=list)


# Reading documents.


def read_corpus(folder: Path, limits: IngestLimits | None = None) -> Corpus:
    """Every readable document under ``folder``, sorted by id, and every file (or .jsonl line) not read, with
    its reason; a bad file is never fatal. File ids are relative POSIX paths; a .jsonl record's id is
    ``<file>#<id>`` (:func:`qa.formats.record_doc_id`)."""
    if not folder.is_dir():
        raise FileNotFoundError(f"corpus folder not found: {folder}")
    corpus = _read_entries(corpus_files(folder), limits or default_limits())
    for s in corpus.skipped:
        log.log(logging.INFO if s.reason in QUIET_REASONS else logging.WARNING, "skipping %s: %s", s.path,
                s.detail or s.reason)
    return corpus


def read_files(folder: Path, file_ids: Iterable[str], limits: IngestLimits | None = None) -> Corpus:
    """The documents of just the files ``file_ids`` of the corpus folder (those that exist), and what of them
    was not read, as :func:`read_corpus` reads them: an update that knows which files changed reads only them."""
    root = folder.resolve()
    entries = (_checked(folder / file_id, file_id, root) for file_id in sorted(set(file_ids))
               if os.path.lexists(folder / file_id))
    return _read_entries(entries, limits or default_limits())


def _read_entries(entries: Iterable, limits: IngestLimits) -> Corpus:
    """The documents of the files ``entries`` lists (``(path, file id)``, or a :class:`Skipped` for a file
    not to read), sorted by id, and every file or record not read."""
    docs: list[Document] = []
    skipped: list[Skipped] = []
    for entry in entries:
        if isinstance(entry, Skipped):
            skipped.append(entry)
            continue
        found, missed = read_corpus_file(*entry, limits)
        docs.extend(found)
        skipped.extend(missed)
    return Corpus(sorted(docs, key=lambda d: d.doc_id), skipped)


def load_corpus(folder: Path, limits: IngestLimits | None = None) -> list[Document]:
    """The documents of :func:`read_corpus`."""
    return read_corpus(folder, limits).documents


def corpus_files(folder: Path) -> Iterator[tuple[Path, str] | Skipped]:
    """``(path, file id)`` of every file of a readable format under ``folder`` in sorted order, and a
    :class:`Skipped` for every other file: hidden files and folders (not entered), links to folders, links
    out of the folder, other formats, and paths the id rule refuses (:func:`qa.formats.check_file_name`)."""
    root = folder.resolve()
    for here, dirs, files in os.walk(folder, followlinks=False):
        base = Path(here)
        for name in sorted(dirs):
            if name.startswith("."):
                yield Skipped(_rel(base / name, folder) + "/", formats.HIDDEN, "a hidden folder")
                dirs.remove(name)
            elif (base / name).is_symlink():
                inside = (base / name).resolve().is_relative_to(root)
                yield Skipped(_rel(base / name, folder) + "/", formats.LINKED_FOLDER if inside else formats.OUTSIDE,
                              "a link to a folder is not followed" if inside else "it resolves outside the corpus "
                                                                                  "folder")
                dirs.remove(name)
        dirs.sort()
        for name in sorted(files):
            path = base / name
            file_id = _rel(path, folder)
            if name.startswith("."):
                yield Skipped(file_id, formats.HIDDEN, "a hidden file")
            elif not name.lower().endswith(formats.SUFFIXES):
                yield Skipped(file_id, formats.UNSUPPORTED, f"{path.suffix.lower() or 'no suffix'}: not a "
                                                            "supported format")
            else:
                yield _checked(path, file_id, root)


def _checked(path: Path, file_id: str, root: Path) -> tuple[Path, str] | Skipped:
    try:
        formats.check_file_name(file_id)  # the id rule of every route: each id can be opened and changed
    except DocumentError as exc:
        return Skipped(file_id, formats.NAME_NOT_ALLOWED, str(exc))
    try:
        target = path.resolve(strict=True)
    except OSError as exc:
        return Skipped(file_id, formats.UNREADABLE, f"cannot resolve ({exc.strerror or exc})")
    if not target.is_relative_to(root):
        return Skipped(file_id, formats.OUTSIDE, "it resolves outside the corpus folder")
    if not target.is_file():
        return Skipped(file_id, formats.UNSUPPORTED, "not a regular file")
    return path, file_id


def _rel(path: Path, folder: Path) -> str:
    return path.relative_to(folder).as_posix()


def read_corpus_file(path: Path, file_id: str, limits: IngestLimits) -> tuple[list[Document], list[Skipped]]:
    """The documents of one corpus file (one, or a .jsonl file's records) and what of it was not read."""
    suffix = path.suffix.lower()
    try:
        if suffix == formats.JSONL_SUFFIX:
            return _read_jsonl(path, file_id, limits)
        formats.check_size(path.stat().st_size, limits.max_document_bytes)
        found = formats.read_file_bytes(path.read_bytes(), suffix)
        return [make_document(file_id, found.text, found.meta, source=file_id, blocks=found.blocks,
                              pages=found.pages)], []
    except OSError as exc:
        return [], [Skipped(file_id, formats.UNREADABLE, f"cannot read ({exc.strerror or exc})")]
    except DocumentError as exc:
        return [], [Skipped(file_id, exc.reason, str(exc))]


def _read_jsonl(path: Path, file_id: str, limits: IngestLimits) -> tuple[list[Document], list[Skipped]]:
    docs, skipped = [], []
    with path.open("rb") as fh:
        for number, record in formats.read_jsonl(fh, limits.max_document_bytes):
            try:
                if isinstance(record, DocumentError):
                    raise record
                rid, text, meta = record
                docs.append(make_document(formats.record_doc_id(file_id, rid), text, meta, source=file_id,
                                          fallback_title=rid))
            except DocumentError as exc:
                skipped.append(Skipped(file_id, exc.reason, f"line {number}: {exc}"))
    if not docs and not skipped:
        skipped.append(Skipped(file_id, formats.EMPTY, "no records"))
    return docs, skipped


def make_document(doc_id: str, text: str, meta: Metadata, *, source: str | None = None,
                  fallback_title: str | None = None, blocks: tuple[Block, ...] | None = None,
                  pages: tuple[int, ...] | None = None) -> Document:
    """A document of canonical ``text`` (with the structure and page starts its format gives); its title is
    the metadata's, else a headline first unit, else ``fallback_title`` or one made from the file name."""
    doc = Document(doc_id, "", text, url=meta.url, published=meta.published, source=source, author=meta.author,
                   blocks=blocks, pages=pages)
    units = layout.content_units(doc)
    if not units:
        raise DocumentError("no text", formats.EMPTY)
    title = meta.title or layout.headline_of(units) or fallback_title or formats.title_from_name(doc_id)
    return Document(doc_id, title, text, url=meta.url, published=meta.published, source=source, author=meta.author,
                    blocks=blocks, pages=pages)


def document_from_upload(doc_id: str, body: bytes, content_type: str,
                         limits: IngestLimits | None = None) -> Document:
    """Validate and read ONE uploaded document (the body of ``PUT /documents/{doc_id}``) exactly as the same
    file would be read from the corpus folder.

    ``doc_id`` must name a file (:func:`qa.formats.check_file_id`: a relative path such as
    ``"news/2024/story.txt"``, no ``..``, hidden parts or ``#``). ``content_type`` is ``text/plain`` or
    ``text/markdown`` (UTF-8, for a ``.txt``/``.md`` id), ``text/html`` (for a ``.html``/``.htm`` id), or
    ``application/json`` with a body ``{"text", "title"?, "url"?, "published"?}`` whose ``text`` is the
    canonical text. Raises :class:`qa.formats.DocumentTooLarge` over ``max_document_bytes`` and
    :class:`qa.formats.DocumentError` for anything else wrong; both are ``ValueError`` subclasses whose
    message is fit to return to the client.
    """
    limits = limits or default_limits()
    suffix = formats.check_file_id(doc_id).suffix.lower()
    formats.check_size(len(body), limits.max_document_bytes)
    media = formats.media_suffix(content_type)
    if media == ".json":
        _, text, meta = formats.parse_record(formats.decode_text(body))
        return make_document(doc_id, text, meta, source=doc_id)
    if (media in formats.HTML_SUFFIXES) != (suffix in formats.HTML_SUFFIXES):
        raise DocumentError(f"content type {content_type.split(';')[0].strip()} does not fit a document "
                            f"named *{suffix}", formats.UNSUPPORTED)
    found = formats.read_file_bytes(body, suffix)
    return make_document(doc_id, found.text, found.meta, source=doc_id, blocks=found.blocks, pages=found.pages)


# Sentences, with the configured limits.


def split_sentences(doc: Document, *, layout: bool = True, limits: IngestLimits | None = None) -> list[Sentence]:
    """The document's sentences in order (:func:`qa.layout.split_sentences`), none longer than
    ``Settings.max_sentence_chars``. ``layout=False`` reads every unit as body text."""
    from qa.layout import split_sentences as split

    return split(doc, (limits or default_limits()).max_sentence_chars, layout=layout)


def split_block(text: str, max_chars: int | None = None) -> list[tuple[int, int]]:
    """Sentence spans of one block of prose (:func:`qa.segment.split_block`), none longer than ``max_chars``
    (default: the Settings')."""
    return segment.split_block(text, max_chars or default_limits().max_sentence_chars)

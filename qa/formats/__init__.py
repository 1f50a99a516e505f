"""Document formats: the bytes of one file (or one upload) → documents with one canonical text each.

The canonical text is what citations point into (``doc.raw[s.start:s.end] == s.text``):

* ``.txt`` and ``.md``: the file itself, decoded from UTF-8 without newline translation;
* ``.html`` / ``.htm``: the article's text, read from the page's structure (:mod:`qa.formats.html`);
* ``.pdf``: the text layer, page after page (:mod:`qa.formats.pdf`); the document knows where each page starts;
* ``.docx``, ``.odt``, ``.epub``, ``.rtf`` (:mod:`qa.formats.office`) and ``.eml`` (:mod:`qa.formats.mail`):
  their paragraphs, headings, list items and table rows, one block each;
* ``.jsonl``: one document per line; the ``text`` field (:mod:`qa.formats.records`).

Every rejection is a :class:`DocumentError` whose message is fit for a user (it never holds a server path)
and whose ``reason`` says which kind of problem it is (``REASONS``).
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from qa.formats.base import (BAD_RECORD, BINARY, DAMAGED, EMPTY, ENCRYPTED, HIDDEN, LINKED_FOLDER, NO_TEXT_LAYER,
                             NOT_UTF8, OUTSIDE, REASONS, NAME_NOT_ALLOWED, TOO_BIG, UNREADABLE, UNSUPPORTED,
                             DocumentError, DocumentTooLarge, Extracted, Metadata, check_size, decode_text)
from qa.formats.ids import (MAX_DOC_ID_CHARS, MAX_ID_CHARS, MAX_ID_PARTS, MAX_NAME_BYTES, RECORD_SEPARATOR,
                            check_document_id, check_file_name, check_record_id, file_of, record_doc_id,
                            unsafe_character)
from qa.formats.records import MAX_JSON_DEPTH, JsonTooDeep, check_json_depth, parse_record, read_jsonl

TEXT_SUFFIXES = (".txt", ".md")
HTML_SUFFIXES = (".html", ".htm")
JSONL_SUFFIX = ".jsonl"
PDF_SUFFIX = ".pdf"
OFFICE_SUFFIXES = (".docx", ".odt", ".epub", ".rtf")
MAIL_SUFFIX = ".eml"
SUFFIXES = (*TEXT_SUFFIXES, *HTML_SUFFIXES, JSONL_SUFFIX, PDF_SUFFIX, *OFFICE_SUFFIXES, MAIL_SUFFIX)
UPLOAD_SUFFIXES = (*TEXT_SUFFIXES, *HTML_SUFFIXES)  # what PUT /documents/{id} accepts

_MEDIA_TYPES = {"text/plain": ".txt", "text/markdown": ".md", "text/html": ".html", "application/json": ".json"}

__all__ = ["BAD_RECORD", "BINARY", "DAMAGED", "EMPTY", "ENCRYPTED", "HIDDEN", "LINKED_FOLDER", "NO_TEXT_LAYER",
           "NOT_UTF8", "OUTSIDE", "REASONS", "NAME_NOT_ALLOWED", "TOO_BIG", "UNREADABLE", "UNSUPPORTED",
           "DocumentError", "DocumentTooLarge", "Extracted", "Metadata", "check_size", "decode_text",
           "MAX_DOC_ID_CHARS", "MAX_ID_CHARS", "MAX_ID_PARTS", "MAX_NAME_BYTES", "RECORD_SEPARATOR",
           "check_document_id", "check_file_name", "check_record_id", "file_of", "record_doc_id", "unsafe_character",
           "MAX_JSON_DEPTH", "JsonTooDeep", "check_json_depth", "parse_record", "read_jsonl",
           "SUFFIXES", "TEXT_SUFFIXES", "HTML_SUFFIXES", "JSONL_SUFFIX", "PDF_SUFFIX", "OFFICE_SUFFIXES",
           "MAIL_SUFFIX", "UPLOAD_SUFFIXES", "title_from_name", "check_file_id", "read_file_bytes", "media_suffix",
           "format_of"]


def title_from_name(name: str) -> str:
    """A readable title from a file name: its stem with underscores and dashes as spaces."""
    stem = PurePosixPath(name).name
    for suffix in SUFFIXES:
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    return " ".join(re.sub(r"[_\-]+", " ", stem).split()) or stem


def format_of(name: str) -> str:
    """The format a file name stands for, as ``qa index`` counts them: its suffix without the dot
    ("txt", "pdf", …; "htm" counts as "html"), or "other"."""
    suffix = PurePosixPath(name.split(RECORD_SEPARATOR, 1)[0]).suffix.lower()
    if suffix == ".htm":
        return "html"
    return suffix[1:] if suffix in SUFFIXES else "other"


def check_file_id(doc_id: str) -> PurePosixPath:
    """A document id that names a file a client may upload: :func:`check_file_name`, with a text or HTML
    suffix (other formats are added as files on the server)."""
    path = check_file_name(doc_id)
    if path.suffix.lower() not in UPLOAD_SUFFIXES:
        raise DocumentError(f"a document id ends with one of {', '.join(UPLOAD_SUFFIXES)}")
    return path


def read_file_bytes(data: bytes, suffix: str) -> Extracted:
    """The canonical text, metadata and structure of one file's bytes (any suffix of ``SUFFIXES`` but
    ``.jsonl``, whose lines are read by :func:`read_jsonl`)."""
    suffix = suffix.lower()
    if suffix in TEXT_SUFFIXES:
        return Extracted(decode_text(data))
    if suffix in HTML_SUFFIXES:
        from qa.formats.html import read_html

        return read_html(data)
    if suffix == PDF_SUFFIX:
        from qa.formats.pdf import read_pdf

        return read_pdf(data)
    if suffix in OFFICE_SUFFIXES:
        from qa.formats import office

        return office.READERS[suffix](data)
    if suffix == MAIL_SUFFIX:
        from qa.formats.mail import read_eml

        return read_eml(data)
    raise DocumentError(f"{suffix or 'a file without a suffix'} is not a supported format", UNSUPPORTED)


def media_suffix(content_type: str) -> str:
    """The file suffix an upload's media type stands for (``.json`` for a JSON record)."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media not in _MEDIA_TYPES:
        raise DocumentError(f"unsupported content type {media or '(none)'!r}: use one of {', '.join(_MEDIA_TYPES)}",
                            UNSUPPORTED)
    return _MEDIA_TYPES[media]

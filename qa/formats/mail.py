"""E-mail messages (``.eml``, read with the standard library's :mod:`email`): the subject is the title, the
sender the author, the date the published date; the article is the plain-text part (read as any plain
text, so a body wrapped at 72 columns reads as paragraphs), else the HTML part (its whole body)."""

from __future__ import annotations

from email import policy
from email.errors import MessageError
from email.parser import BytesParser
from email.utils import parsedate_to_datetime

from qa.formats.base import DAMAGED, EMPTY, DocumentError, Extracted, Metadata, clean_field


def read_eml(data: bytes) -> Extracted:
    if b"\x00" in data:
        raise DocumentError("binary content (NUL bytes)", "binary")
    try:
        message = BytesParser(policy=policy.default).parsebytes(data)
        body = message.get_body(preferencelist=("plain", "html"))
        content = body.get_content() if body is not None else None
    except (MessageError, LookupError, ValueError) as exc:  # LookupError: an unknown charset
        raise DocumentError(f"damaged e-mail ({exc})", DAMAGED) from None
    if not isinstance(content, str) or not content.strip():
        raise DocumentError("no text part in the e-mail", EMPTY)
    meta = Metadata(title=clean_field(message.get("subject")), author=clean_field(message.get("from")),
                    published=_date(message.get("date")))
    if body.get_content_subtype() == "html":
        from qa.formats.html import read_html

        extracted = read_html(content, article=False)
        return Extracted(extracted.text, meta, extracted.blocks)
    return Extracted(content, meta)


def _date(value: object) -> str | None:
    """An e-mail's Date header as ISO 8601 (``2024-05-01T09:30:00+02:00``), or as written when unparsable."""
    if not value:
        return None
    try:
        return parsedate_to_datetime(str(value)).isoformat()
    except (TypeError, ValueError):
        return clean_field(value)

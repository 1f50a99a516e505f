"""One block of text → sentence spans with exact offsets, in time linear in its length.

pysbd finds the sentences of a block; its strings are re-anchored in the text, so the spans are exact. A
line break inside a block is a space to the segmenter (a wrapped line does not end a sentence) while the
spans still point into the text as written. No sentence ends inside a ``nobreak`` span (inline code such as
``date(2002, 12, 4).weekday()``), none is longer than ``max_chars``, and a code block is cut only between
its lines.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from functools import lru_cache

# pysbd's time grows faster than a block's length (about 25k characters 0.6 s, 200k 23 s); no paragraph a
# person writes is this long (SQuAD's longest is 4,063 characters, CoQA's 3,559), so a longer block is cut
# at safe boundaries (:func:`safe_spans`) in time linear in its length instead.
SEGMENTER_MAX_CHARS = 10_000
# A full stop after one of these (or after a single capital, an initial) does not end a sentence.
_ABBREVIATIONS = ("Mr Mrs Ms Dr Prof St Jr Sr Gen Col Lt Sgt Capt Rev Gov Sen Rep Inc Ltd Co Corp vs etc No "
                  "Vol Fig Jan Feb Mar Apr Jun Jul Aug Sep Sept Oct Nov Dec").split()
_NOT_AN_END = re.compile(r"(?:\b(?:" + "|".join(_ABBREVIATIONS) + r")|\b[A-Z]|\b(?:[A-Za-z]\.)+[A-Za-z])$")
_BOUNDARY = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s+[\"“‘(\[]?[A-Z0-9])")
_CUT_MARKS = ("; ", ": ", ", ")  # where an over-long sentence is best cut, in order of preference
_LINE_BREAKS = str.maketrans({"\n": " ", "\r": " ", "\f": " ", "\v": " ", "\u2028": " ", "\u2029": " "})


@lru_cache(maxsize=1)
def _segmenter():
    import pysbd

    return pysbd.Segmenter(language="en", clean=False)


def segment(text: str) -> list[tuple[int, int]]:
    """Sentence spans ``(start, end)`` of a block of at most ``SEGMENTER_MAX_CHARS``, found by pysbd and
    re-anchored in the text.

    pysbd returns strings, not offsets; each is located from a moving cursor so the spans are exact
    even when the segmenter normalises whitespace. Anything it cannot anchor stays in one span. Line breaks
    are given to it as spaces (same length, so offsets hold).
    """
    flat = text.translate(_LINE_BREAKS)
    spans: list[tuple[int, int]] = []
    cursor = 0
    for piece in _segmenter().segment(flat):
        piece = piece.strip()
        if not piece:
            continue
        at = flat.find(piece, cursor)
        if at < 0:
            break
        spans.append((at, at + len(piece)))
        cursor = at + len(piece)
    rest = flat[cursor:]
    if rest.strip():
        lead = len(rest) - len(rest.lstrip())
        start = cursor + lead
        spans.append((start, start + len(rest.strip())))
    return spans


def safe_spans(text: str) -> list[tuple[int, int]]:
    """Sentence spans of an over-long block, cut where a sentence surely ends: final punctuation (and any
    closing quotes) before whitespace and a capital, digit or opening quote, unless the full stop follows an
    abbreviation or an initial. One pass over the text."""
    spans: list[tuple[int, int]] = []
    start = _skip_space(text, 0)
    for m in _BOUNDARY.finditer(text):
        if m.end() <= start:
            continue
        if text[m.start()] == "." and _NOT_AN_END.search(text, max(start, m.start() - 12), m.start()):
            continue
        spans.append((start, m.end()))
        start = _skip_space(text, m.end())
    end = len(text.rstrip())
    if end > start:
        spans.append((start, end))
    return spans


def _skip_space(text: str, at: int) -> int:
    while at < len(text) and text[at].isspace():
        at += 1
    return at


def cap_span(text: str, start: int, end: int, max_chars: int) -> Iterator[tuple[int, int]]:
    """``text[start:end]`` in pieces of at most ``max_chars``, each cut at the best place in its second
    half: after the last '; ', else ': ', else ', ', else at the last whitespace, else anywhere."""
    while end - start > max_chars:
        low, limit = start + max_chars // 2, start + max_chars
        window = text[low:limit]
        cut = next((low + at + 1 for mark in _CUT_MARKS if (at := window.rfind(mark)) >= 0), -1)
        if cut < 0:
            space = next((i for i in range(len(window) - 1, 0, -1) if window[i].isspace()), -1)
            cut = low + space if space > 0 else limit
        piece_end = cut
        while text[piece_end - 1].isspace():
            piece_end -= 1
        yield start, piece_end
        start = _skip_space(text, cut)
    if end > start:
        yield start, end


def join_across(spans: list[tuple[int, int]], nobreak: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """``spans`` with every boundary that falls inside a ``nobreak`` span removed (the two sentences joined)."""
    if not nobreak or len(spans) < 2:
        return spans
    out = [spans[0]]
    for start, end in spans[1:]:
        prev_start, prev_end = out[-1]
        if any(s < prev_end < e or s < start < e for s, e in nobreak):
            out[-1] = (prev_start, end)
        else:
            out.append((start, end))
    return out


def split_block(text: str, max_chars: int, nobreak: Sequence[tuple[int, int]] = ()) -> list[tuple[int, int]]:
    """Sentence spans of one block of prose, none longer than ``max_chars`` and none ending inside a
    ``nobreak`` span, in time linear in the block's length."""
    spans = segment(text) if len(text) <= SEGMENTER_MAX_CHARS else safe_spans(text)
    spans = join_across(spans, nobreak)
    return [piece for s, e in spans for piece in cap_span(text, s, e, max_chars)]


def code_spans(text: str, max_chars: int) -> list[tuple[int, int]]:
    """A code block as one unit; when longer than ``max_chars``, in pieces cut only between lines (at a
    blank line when there is one in the piece's second half), never inside a line unless the line alone is
    longer than ``max_chars``."""
    start = _skip_space(text, 0)
    end = len(text.rstrip())
    out: list[tuple[int, int]] = []
    while end - start > max_chars:
        low, limit = start + max_chars // 2, start + max_chars
        cut = text.rfind("\n\n", low, limit)
        if cut < 0:
            cut = text.rfind("\n", low, limit)
        if cut < 0:
            out.extend(cap_span(text, start, limit, max_chars))
            start = _skip_space(text, limit)
            continue
        piece_end = cut
        while piece_end > start and text[piece_end - 1].isspace():
            piece_end -= 1
        out.append((start, piece_end))
        start = _skip_space(text, cut)
    if end > start:
        out.append((start, end))
    return out

"""Whether two sentences make the same claim: their names, numbers and dates compared slot by slot.

Two articles often carry nearly the same sentence. When every name, number, quantity and date agrees it is
the same statement and the second place corroborates the first (``also_in``); when the sentences are worded
alike but one of those differs ("The mayor of Glenhaven said…" / "The mayor of Dunmarrow said…", "12
killed" / "15 killed") the sources disagree, and a fact-checker must see both versions (``disagrees``).

A sentence's *slots* are read with small rules, no model: numbers and quantities (digits, number words
parsed by text2num, percentages, money, scale words and units: "12" and "twelve", "1,000" and "1000" are
equal), dates and times (month names with their day and year, years, weekdays, clock times, relative days)
and names (runs of capitalised words that do not open the sentence, acronyms; a sentence's first word
counts when the corpus writes it capitalised mid-sentence, :attr:`Vocabulary.proper`, or it carries a
possessive). :func:`compare` aligns two sentences' slots and says:

- ``same``: every slot of one has an equal slot in the other, and none is left over;
- ``differs``: the sentences are worded alike (:func:`wording_overlap` at least ``near``) and some kind of
  slot has a value in each that the other lacks ("12" against "15"): the pairs are the differences;
- ``other``: neither — a slot present in one sentence only is less or more said, not a contradiction
  ("12 died" / "12 died on Monday"), and sentences worded differently may be about different events.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection
from dataclasses import dataclass
from difflib import SequenceMatcher
from functools import cached_property, lru_cache
from typing import Literal

from text_to_num import alpha2digit, text2num

from qa.text import default_stopwords

SlotKind = Literal["number", "date", "name"]
Verdict = Literal["same", "differs", "other"]
KINDS: tuple[SlotKind, ...] = ("number", "date", "name")

NEAR_WORDING = 0.75  # wording_overlap from which two sentences are "worded alike" (a changed copy, not a paraphrase)

_MONTHS = {m: i for i, m in enumerate(("january february march april may june july august september october "
                                       "november december").split(), start=1)}
_MONTH_ABBR = {"jan": 1, "feb": 2, "mar": 3, "apr": 4, "jun": 6, "jul": 7, "aug": 8, "sep": 9, "sept": 9,
               "oct": 10, "nov": 11, "dec": 12}
_WEEKDAYS = "monday tuesday wednesday thursday friday saturday sunday".split()
_RELATIVE = r"yesterday|today|tonight|tomorrow|(?:last|this|next) (?:week(?:end)?|month|year|night|morning)"

_MONTH_RE = r"(?:" + "|".join(_MONTHS) + r")\b|(?:" + "|".join(sorted(_MONTH_ABBR, key=len, reverse=True)) + r")\b\.?"
_ORD = r"(?:st|nd|rd|th)?"
_DATE = re.compile(
    rf"\b(?:(?P<d1>\d{{1,2}}){_ORD}\s+(?:of\s+)?)?(?P<month>{_MONTH_RE})(?:\s+(?P<d2>\d{{1,2}}){_ORD}\b)?"
    rf"(?:,?\s+(?P<y1>\d{{4}})\b)?"
    rf"|\b(?P<weekday>{'|'.join(_WEEKDAYS)})\b"
    rf"|\b(?P<time>\d{{1,2}}(?::\d{{2}})?\s*(?:a\.m\.|p\.m\.|am\b|pm\b))"
    rf"|\b(?P<relative>{_RELATIVE}|noon|midnight)\b"
    rf"|\b(?P<decade>1[89]\d0s|20[0-9]0s)\b"
    rf"|(?<![\d,.$£€])\b(?P<year>1[5-9]\d\d|20\d\d)\b(?![,.]?\d|\s*(?:%|percent|per cent))",
    re.IGNORECASE)

_UNITS = {"km": "km", "kilometres": "km", "kilometers": "km", "kilometre": "km", "kilometer": "km",
          "miles": "mile", "mile": "mile", "metres": "m", "meters": "m", "metre": "m", "meter": "m",
          "feet": "ft", "foot": "ft", "kg": "kg", "kilograms": "kg", "tons": "t", "tonnes": "t",
          "seconds": "s", "minutes": "min", "hours": "h", "days": "d", "weeks": "wk", "months": "mo",
          "years": "y", "second": "s", "minute": "min", "hour": "h", "day": "d", "week": "wk", "month": "mo",
          "year": "y", "percent": "%", "per cent": "%", "%": "%"}
_SCALES = {"thousand": 1e3, "million": 1e6, "billion": 1e9, "trillion": 1e12, "m": 1e6, "bn": 1e9, "k": 1e3}
_CURRENCY = {"$": "USD", "us$": "USD", "£": "GBP", "€": "EUR", "rs": "PKR", "rs.": "PKR", "¥": "JPY"}
_NUMBER_WORD = (r"zero|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|"
                r"sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|"
                r"hundred|thousand|million|billion|trillion")
_ORDINAL_WORD = r"first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth"
_UNIT_RE = "|".join(re.escape(u) for u in sorted(_UNITS, key=len, reverse=True))
_SCALE_RE = "|".join(sorted(_SCALES, key=len, reverse=True))
_NUMBER = re.compile(
    rf"(?P<cur>US\$|\$|£|€|¥|\bRs\.?)?\s?"
    rf"(?:(?P<digits>\d{{1,3}}(?:,\d{{3}})+(?:\.\d+)?|\d+(?:\.\d+)?)(?P<ordinal>st|nd|rd|th)?\b"
    rf"|\b(?P<words>(?:{_NUMBER_WORD})(?:[\s-]+(?:and[\s-]+)?(?:{_NUMBER_WORD}))*)\b"
    rf"|\b(?P<ordword>{_ORDINAL_WORD})\b"
    rf"|\b(?P<dozen>(?:a\s+)?dozen)\b)"
    rf"(?:\s?(?P<scale>{_SCALE_RE})\b)?(?:[\s-]?(?P<unit>{_UNIT_RE})(?![\w]))?",
    re.IGNORECASE)
_NAME = re.compile(r"(?:[A-Z][\w’'.&-]*|\d+[A-Z][\w-]*)"
                   r"(?:\s+(?:of|de|du|von|van|der|al|bin|el|la|the|for)?\s*(?:[A-Z][\w’'&-]*))*")
_WORD = re.compile(r"[0-9]+(?:[.,][0-9]+)*|[^\W\d_]+(?:['’][^\W\d_]+)*")
_POSSESSIVE = re.compile(r"['’]s?$")
_OPENING = re.compile(r"^[\s\"'“‘(\[—–-]*")
_STOP = default_stopwords()
_START = re.compile(r"[$£€¥]|[^\W\d_]+|\d")
_SIGNS = frozenset("$£€¥0123456789")
_DATE_STARTS = frozenset([*_MONTHS, *_MONTH_ABBR, *_WEEKDAYS, "yesterday", "today", "tonight", "tomorrow", "last",
                          "this", "next", "noon", "midnight"])
_NUMBER_STARTS = frozenset([*_NUMBER_WORD.split("|"), *_ORDINAL_WORD.split("|"), "a", "dozen", "us", "rs"])
_NOT_NAMES = _STOP | {"i", "mr", "mrs", "ms", "dr"} | set(_MONTHS) | set(_WEEKDAYS)


@dataclass(frozen=True, slots=True)
class Slot:
    kind: SlotKind
    text: str  # as written in the sentence
    value: str  # normalised: numbers as digits with their unit, dates as fields, names casefolded
    start: int  # character offsets in the sentence
    end: int


class ProperSet(frozenset):
    """Proper words as the comparison caches' key: hashed and compared by a digest of the words made once, so a
    cache lookup never compares two large sets word by word (an updated index brings an equal new set)."""

    def __new__(cls, words: Collection[str] = ()):
        self = super().__new__(cls, words)
        self.digest = hashlib.blake2b("\n".join(sorted(self)).encode(), digest_size=16).digest()
        return self

    def __hash__(self) -> int:
        return hash(self.digest)

    def __eq__(self, other) -> bool:
        return isinstance(other, ProperSet) and self.digest == other.digest

    def __ne__(self, other) -> bool:
        return not self == other


@dataclass(frozen=True)
class Vocabulary:
    """What the corpus says about its words: ``proper`` holds the casefolded words it writes capitalised
    mid-sentence (``qa.cues.proper_words_of``), so that a sentence's first word can be read as a name."""

    proper: Collection[str] = frozenset()

    @cached_property
    def proper_set(self) -> ProperSet:
        return self.proper if isinstance(self.proper, ProperSet) else ProperSet(self.proper)


@dataclass(frozen=True)
class Comparison:
    verdict: Verdict
    differs: tuple[tuple[str, str], ...] = ()  # (what the first sentence says, what the second says)
    overlap: float | None = None  # wording_overlap of the two sentences, when it was needed to decide


def slots(sentence: str, vocabulary: Vocabulary | None = None) -> tuple[Slot, ...]:
    """The sentence's names, numbers and dates, in the order they are written."""
    return _slots(sentence, _proper(vocabulary))


@lru_cache(maxsize=50_000)
def _slots(sentence: str, proper: frozenset[str]) -> tuple[Slot, ...]:
    found: list[Slot] = []
    taken = bytearray(len(sentence))

    def add(kind: SlotKind, start: int, end: int, value: str) -> None:
        text = sentence[start:end]
        lead = len(text) - len(text.lstrip())
        start, text = start + lead, text.strip()
        if text and not any(taken[start:start + len(text)]):
            taken[start:start + len(text)] = b"\1" * len(text)
            found.append(Slot(kind, text, value, start, start + len(text)))

    opening = _OPENING.match(sentence).end()
    date_at, number_at = _starts(sentence)
    for m in _scan(_DATE, date_at, sentence):
        if m.group("month") and m.group("month").lower() == "may" and not (m.group("d1") or m.group("d2")
                                                                           or m.group("y1")) \
                and (m.group("month") != "May" or m.start("month") <= opening):
            continue  # "may" the verb; "May" opening a sentence may be either
        add("date", m.start(), m.end(), _date_value(m))
    for m in _scan(_NUMBER, number_at, sentence):
        value = _number_value(m)
        if value is not None:
            add("number", m.start(), m.end(), value)
    for m in _NAME.finditer(sentence):
        for start, end in _name_parts(sentence, m.start(), m.end(), opening, proper, taken):
            words = [w.casefold() for w in _WORD.findall(_POSSESSIVE.sub("", sentence[start:end]))]
            add("name", start, end, " ".join(words))
    return tuple(sorted(found, key=lambda s: s.start))


def _starts(sentence: str) -> tuple[list[int], list[int]]:
    """Where a date and where a number may begin: a digit, a currency sign, or one of their opening words.
    The date and number patterns open with long optional alternations that cost a millisecond a sentence
    when tried at every position; they are tried only here."""
    dates: list[int] = []
    numbers: list[int] = []
    for token in _START.finditer(sentence):
        word = token.group()
        if word[0] in _SIGNS:
            dates.append(token.start())
            numbers.append(token.start())
            continue
        low = word.lower()
        if low in _DATE_STARTS:
            dates.append(token.start())
        if low in _NUMBER_STARTS:
            numbers.append(token.start())
    return dates, numbers


def _scan(pattern: re.Pattern, positions: list[int], sentence: str):
    """``pattern.finditer(sentence)`` tried at ``positions`` only."""
    end = 0
    for at in positions:
        if at < end:
            continue
        m = pattern.match(sentence, at)
        if m and m.end() > m.start():
            end = m.end()
            yield m


def _name_parts(sentence: str, start: int, end: int, opening: int, proper: frozenset[str],
                taken: bytearray) -> list[tuple[int, int]]:
    """The name in a run of capitalised words: without the stop words, numbers and dates that can open it
    ("The Taliban", "Two Taliban", "On Monday Imran Khan"), and without the sentence's first word unless
    that is a name (the corpus writes it capitalised mid-sentence, it has a possessive, or another
    capitalised word follows it)."""
    spans = [(m.start() + start, m.end() + start) for m in re.finditer(r"\S+", sentence[start:end])]
    while spans:
        first = sentence[spans[0][0]:spans[0][1]]
        key = _POSSESSIVE.sub("", first).casefold().strip(".")
        at_opening = spans[0][0] <= opening
        if key in _NOT_NAMES or any(taken[spans[0][0]:spans[0][1]]) or (at_opening and len(spans) == 1 and key not in proper
                                 and not _POSSESSIVE.search(first) and not (first.isupper() and len(first) > 1)):
            spans = spans[1:]
            continue
        break
    while spans and (sentence[spans[-1][0]:spans[-1][1]].casefold() in _NOT_NAMES or any(taken[spans[-1][0]:spans[-1][1]])):
        spans = spans[:-1]
    if not spans:
        return []
    start, end = spans[0][0], spans[-1][1]
    if sentence[end - 1] == "." and "." not in sentence[start:end - 1]:
        end -= 1  # the full stop after a name, not an abbreviation's ("U.S.")
    return [(start, end)]


def _date_value(m: re.Match) -> str:
    if m.group("month"):
        month = m.group("month").lower().rstrip(".")
        number = _MONTHS.get(month) or _MONTH_ABBR[month]
        day = m.group("d1") or m.group("d2")
        return f"date:{m.group('y1') or '?'}-{number:02d}-{int(day):02d}" if day else \
            f"date:{m.group('y1') or '?'}-{number:02d}"
    for field_ in ("weekday", "relative", "decade", "year"):
        if m.group(field_):
            return f"{field_}:{' '.join(m.group(field_).lower().split())}"
    clock = re.match(r"(\d{1,2})(?::(\d{2}))?\s*([ap])", m.group("time").lower())
    hour = int(clock.group(1)) % 12 + (12 if clock.group(3) == "p" else 0)
    return f"time:{hour:02d}:{clock.group(2) or '00'}"


def _number_value(m: re.Match) -> str | None:
    if m.group("digits"):
        value = float(m.group("digits").replace(",", ""))
    elif m.group("words"):
        words = m.group("words").lower().replace("-", " ")
        try:
            value = float(text2num(words, "en"))
        except ValueError:  # not one number: "one-two" (a score), "hundred" alone
            parts = []
            for word in words.split():
                try:
                    parts.append(f"{text2num(word, 'en'):g}")
                except ValueError:
                    return None
            return "-".join(parts)
    elif m.group("ordword"):
        value = float(re.match(r"\d+", alpha2digit(m.group("ordword").lower(), "en", threshold=0)).group())
    else:
        value = 12.0
    if m.group("scale"):
        value *= _SCALES[m.group("scale").lower()]
    ordinal = "th" if (m.group("ordinal") or m.group("ordword")) else ""
    currency = _CURRENCY.get((m.group("cur") or "").lower(), "")
    unit = _UNITS.get((m.group("unit") or "").lower(), "")
    return f"{currency}{value:g}{ordinal}{unit}"


def wording_overlap(a: str, b: str, vocabulary: Vocabulary | None = None) -> float:
    """How alike two sentences are worded once their slots are set aside: the ratio of matching words
    (difflib) of their lower-cased word sequences, each slot standing as one word of its kind. A changed
    copy scores 1; a paraphrase much lower."""
    proper = _proper(vocabulary)
    return SequenceMatcher(None, _skeleton(a, proper), _skeleton(b, proper), autojunk=False).ratio()


@lru_cache(maxsize=50_000)
def _skeleton(text: str, proper: frozenset[str]) -> tuple[str, ...]:
    out: list[str] = []
    at = 0
    for slot in _slots(text, proper):
        out.extend(w.lower() for w in _WORD.findall(text[at:slot.start]))
        out.append(f"<{slot.kind}>")
        at = slot.end
    out.extend(w.lower() for w in _WORD.findall(text[at:]))
    return tuple(out)


_NO_PROPER = ProperSet()


def _proper(vocabulary: Vocabulary | None) -> ProperSet:
    return vocabulary.proper_set if vocabulary else _NO_PROPER


def wording_key(sentence: str, vocabulary: Vocabulary | None = None, min_words: int = 2) -> int:
    """A number shared by sentences worded the same apart from their slots (0 when the sentence has no slot
    or fewer than ``min_words`` words that are neither slots nor stop words: "<name> said." is no wording).
    Two sentences of different documents with the same key are compared whatever their vectors say: when a
    name is most of a sentence ("Um, who is Beck?") the changed copy's cosine can be as low as 0.5."""
    proper = _proper(vocabulary)
    skeleton = _skeleton(sentence, proper)
    if not _slots(sentence, proper) or sum(w not in _STOP and not w.startswith("<") for w in skeleton) < min_words:
        return 0
    return int.from_bytes(hashlib.blake2b(" ".join(skeleton).encode(), digest_size=8).digest(), "little") >> 1 or 1


def compare(a: str, b: str, vocabulary: Vocabulary | None = None, *, near: float = NEAR_WORDING) -> Comparison:
    """Whether ``b`` states what ``a`` states (see the module docstring for the three verdicts). Answers
    compare the same candidate pairs again and again: results are cached."""
    return _compare(a, b, _proper(vocabulary), near)


@lru_cache(maxsize=100_000)
def _compare(a: str, b: str, proper: frozenset[str], near: float) -> Comparison:
    left_a, left_b = _unmatched(_slots(a, proper), _slots(b, proper))
    if not left_a and not left_b:
        return Comparison("same")
    pairs: list[tuple[str, str]] = []
    for kind in KINDS:
        mine = [s for s in left_a if s.kind == kind]
        theirs = [s for s in left_b if s.kind == kind]
        pairs.extend((x.text, y.text) for x, y in zip(mine, theirs))
    if not pairs:
        return Comparison("other")
    matcher = SequenceMatcher(None, _skeleton(a, proper), _skeleton(b, proper), autojunk=False)
    if matcher.real_quick_ratio() < near or matcher.quick_ratio() < near:  # upper bounds of ratio(), cheap
        return Comparison("other")
    overlap = matcher.ratio()
    return Comparison("differs", tuple(pairs), overlap) if overlap >= near else Comparison("other", (), overlap)


def _unmatched(sa: tuple[Slot, ...], sb: tuple[Slot, ...]) -> tuple[list[Slot], list[Slot]]:
    """The slots of each sentence that no slot of the other matches: equal values of the same kind first,
    then, among the rest, a name whose words are among the other's ("Khan" and "Imran Khan") or a date that
    leaves out a field of the other ("December 5" and "December 5, 2023"). Exact matches go first so that a
    short name ("Bolivian") cannot excuse a changed longer one ("Bolivian Information Agency")."""
    left_a, left_b = list(sa), list(sb)
    for same in (lambda x, y: x.kind == y.kind and x.value == y.value, _same):
        rest: list[Slot] = []
        for slot in left_a:
            match = next((i for i, other in enumerate(left_b) if same(slot, other)), None)
            if match is None:
                rest.append(slot)
            else:
                del left_b[match]
        left_a = rest
    return left_a, left_b


def _same(x: Slot, y: Slot) -> bool:
    if x.kind != y.kind:
        return False
    if x.value == y.value:
        return True
    if x.kind == "name":
        wx, wy = set(x.value.split()), set(y.value.split())
        return bool(wx) and bool(wy) and (wx <= wy or wy <= wx)
    if x.kind == "date":  # "December 5" and "December 5, 2023": the same day, one says the year
        return _date_fields_agree(x.value, y.value)
    return False


def _date_fields_agree(x: str, y: str) -> bool:
    if not (x.startswith("date:") and y.startswith("date:")):
        return False
    fx, fy = x[5:].split("-"), y[5:].split("-")
    return len(fx) == len(fy) and all(p == q or "?" in (p, q) for p, q in zip(fx, fy))

"""The lexical analyzer shared by the BM25 index and the queries that search it.

The analyzer is saved with the index and reloaded from it, so a query is always tokenized exactly as
the documents were, whatever library versions the serving process has.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property

_TOKEN = re.compile(r"[0-9]+(?:[.,][0-9]+)*|[^\W\d_]+(?:['’][^\W\d_]+)*", re.UNICODE)
_POSSESSIVE = re.compile(r"['’]s$")


# Bump when what ``default_stopwords`` or ``Analyzer.terms`` return changes: indexes record it and are
# rebuilt when it differs, so that questions and the index are always analysed alike.
ANALYZER_VERSION = 4

# Determiners NLTK's list lacks although it has "more", "most" and "few": in questions ("how many",
# "how much") they are grammar, and the answer-type cue reads them from the question itself.
_QUANTIFIERS = frozenset({"many", "much"})


def default_stopwords() -> frozenset[str]:
    """NLTK's English list (as bm25s ships it): function words only. scikit-learn's list, used before,
    also drops content words that news questions turn on: numbers ("six days", "two sides"), "since",
    "first", "former", "last", "side", "name", "fire", "UN" and "US"."""
    from bm25s.stopwords import STOPWORDS_EN_PLUS

    return frozenset(STOPWORDS_EN_PLUS) | _QUANTIFIERS


@dataclass(frozen=True)
class Analyzer:
    stopwords: frozenset[str] = field(default_factory=frozenset)
    language: str = "english"

    @cached_property
    def _stemmer(self):
        import Stemmer

        return Stemmer.Stemmer(self.language)

    def words(self, text: str) -> list[str]:
        """Lower-cased word tokens with possessives and curly apostrophes normalised, stop words kept."""
        out = []
        for m in _TOKEN.finditer(text.casefold()):
            out.append(_POSSESSIVE.sub("", m.group()).replace("’", "'"))
        return out

    def terms(self, text: str) -> list[str]:
        """Index terms: stemmed words that are not stop words."""
        kept = [w for w in self.words(text) if w not in self.stopwords]
        return self._stemmer.stemWords(kept)

    def to_dict(self) -> dict:
        return {"language": self.language, "stopwords": sorted(self.stopwords)}

    @classmethod
    def from_dict(cls, data: dict) -> "Analyzer":
        return cls(stopwords=frozenset(data["stopwords"]), language=data["language"])

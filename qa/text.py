"""The lexical analyzer shared by the BM25 index and the queries that search it.

The analyzer is saved with the index and reloaded from it, so a query is always tokenized exactly as
the documents were, whatever library versions the serving process has.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property

TOKEN = re.compile(r"[0-9]+(?:[.,][0-9]+)*|[^\W\d_]+(?:['’][^\W\d_]+)*", re.UNICODE)  # a number or a word
POSSESSIVE = re.compile(r"['’]s$", re.IGNORECASE)  # "Pakistan’s" → "Pakistan"


def words(text: str) -> list[str]:
    """Word tokens as written (case kept), possessive 's dropped ("Pakistan's" → "Pakistan") and curly
    apostrophes made straight."""
    return [POSSESSIVE.sub("", m.group()).replace("’", "'") for m in TOKEN.finditer(text)]


# Bump when what ``default_stopwords`` or ``Analyzer.terms`` return changes: indexes record it and are
# rebuilt when it differs, so that questions and the index are always analysed alike.
ANALYZER_VERSION = 8

# Determiners NLTK's list lacks although it has "more", "most" and "few": in questions ("how many",
# "how much") they are grammar, and the answer-type cue reads them from the question itself.
_QUANTIFIERS = frozenset({"many", "much"})


# NLTK's English stop-word list (179 words, as NLTK and bm25s ship it): function words only. scikit-learn's
# list also drops content words that news questions turn on: numbers ("six days", "two sides"), "since",
# "first", "former", "last", "side", "name", "fire", "UN" and "US".
_NLTK_ENGLISH = frozenset("""
    a about above after again against ain all am an and any are aren aren't as at be because been before being
    below between both but by can couldn couldn't d did didn didn't do does doesn doesn't doing don don't down
    during each few for from further had hadn hadn't has hasn hasn't have haven haven't having he her here hers
    herself him himself his how i if in into is isn isn't it it's its itself just ll m ma me mightn mightn't
    more most mustn mustn't my myself needn needn't no nor not now o of off on once only or other our ours
    ourselves out over own re s same shan shan't she she's should should've shouldn shouldn't so some such t
    than that that'll the their theirs them themselves then there these they this those through to too under
    until up ve very was wasn wasn't we were weren weren't what when where which while who whom why will with
    won won't wouldn wouldn't y you you'd you'll you're you've your yours yourself yourselves
""".split())


def default_stopwords() -> frozenset[str]:
    """The analyzer's stop words: NLTK's English list and the two quantifiers it lacks."""
    return _NLTK_ENGLISH | _QUANTIFIERS


_LEMMA_LANGUAGES = {"english": "en"}


def _lemmatizer(language: str):
    """simplemma for ``language``; its dictionary loads on the first word (0.3 s), so only index builds
    (and analyzers without a table) call it."""
    import simplemma

    lang = _LEMMA_LANGUAGES[language]
    return lambda word: simplemma.lemmatize(word, lang=lang).casefold()


@dataclass(frozen=True)
class Analyzer:
    """Text → index terms: tokens, stop words dropped, then (``lemmatize``) each word's dictionary form,
    then its Snowball stem. The stemmer alone leaves irregular forms apart ("met" and "meet", "held" and
    "hold", "went" and "go"), and a question rarely uses the tense of the sentence that answers it."""

    stopwords: frozenset[str] = field(default_factory=frozenset)
    language: str = "english"
    lemmatize: bool = False
    # Known word → lemma. An index saves those of its corpus, and questions are lemmatized from that table
    # alone, so that no question loads simplemma's dictionary (0.3 s and 17 MiB). A word the corpus never
    # uses is only stemmed: its lemma matters only when the question has an irregular form of a word the
    # corpus has in another ("met" against "meet"), while questions mostly use the base form ("did they
    # meet") and the corpus's inflected forms are all in the table.
    lemmas: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False, repr=False)

    def with_lemmas_of(self, texts: Iterable[str]) -> Analyzer:
        """A copy that knows the lemma of every word of ``texts`` (see ``lemmas``)."""
        if not self.lemmatize:
            return self
        lemma = _lemmatizer(self.language)
        words = {w for text in texts for w in self.words(text) if w not in self.stopwords}
        return replace(self, lemmas={w: lemma(w) for w in sorted(words)})

    def _lemma(self, word: str) -> str:
        return self.lemmas.get(word, word) if self.lemmas else _lemmatizer(self.language)(word)

    @cached_property
    def _stemmer(self):
        import Stemmer

        return Stemmer.Stemmer(self.language)

    def words(self, text: str) -> list[str]:
        """Lower-cased word tokens with possessives and curly apostrophes normalised, stop words kept."""
        return words(text.casefold())

    def terms(self, text: str) -> list[str]:
        """Index terms: the stems (of the lemmas) of the words that are not stop words."""
        kept = [w for w in self.words(text) if w not in self.stopwords]
        if self.lemmatize:  # a lemma can be a stop word ("were" → "be"): dropped again
            kept = [lemma for lemma in map(self._lemma, kept) if lemma not in self.stopwords]
        return self._stemmer.stemWords(kept)

    def to_dict(self) -> dict:
        return {"language": self.language, "stopwords": sorted(self.stopwords), "lemmatize": self.lemmatize}

    @classmethod
    def from_dict(cls, data: dict, lemmas: Mapping[str, str] | None = None) -> Analyzer:
        return cls(stopwords=frozenset(data["stopwords"]), language=data["language"],
                   lemmatize=data.get("lemmatize", False), lemmas=lemmas or {})

"""What the conversation package uses of the engine that answers single questions (qa.engine.Engine,
which holds a :class:`qa.conversation.Conversations` and so is not imported here)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import numpy as np

from qa.types import Answer, Document, Query

if TYPE_CHECKING:
    from qa.config import Settings
    from qa.index import Catalogue, SentenceSet
    from qa.profile import Profile
    from qa.rank import ScoredSentences


class Answerer(Protocol):
    settings: "Settings"
    profile: "Profile"
    index: "Catalogue"

    def validated(self, question: str, mode: str) -> str:
        """The question stripped, or InvalidQuestion for an empty, overlong question or an unknown retriever."""

    def query(self, question: str, mode: str) -> Query: ...

    def score(self, query: Query, mode: str, within: np.ndarray | None = None) -> "ScoredSentences": ...

    def answer(self, query: Query, *, top_k: int, mode: str, abstain: bool = True,
               within: np.ndarray | None = None) -> Answer: ...

    def view_of(self, ids: np.ndarray, terms: list[str]) -> "tuple[SentenceSet, np.ndarray] | None":
        """An index holding sentences ``ids`` with the postings of ``terms``, and their ids in it (None:
        part of the corpus did not answer)."""

    def document(self, doc_id: str) -> Document | None: ...

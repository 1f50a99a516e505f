"""The conversation service: the store and the reading of follow-ups behind one entry, :meth:`Conversations.ask`.

The engine answers single questions; a :class:`Conversations` holds an engine and a store, reads each
question with the conversation's history (qa/conversation/expansion.py, qa/conversation/followup.py),
answers it through the engine and records the turn. ``Engine.conversations`` is the engine's own
service (its store opened on first use), which ``Engine.ask(..., conversation_id=...)`` calls.
"""

from __future__ import annotations

from collections.abc import Sequence

from qa.conversation.answerer import Answerer
from qa.conversation.followup import answer_turn
from qa.conversation.reading import DEFAULT_READING, Reading
from qa.conversation.store import ConversationStore, Turn, UnknownConversation
from qa.types import Answer


class Conversations:
    """Conversations answered by ``engine`` and kept in ``store``."""

    def __init__(self, engine: Answerer, store: ConversationStore):
        self.engine = engine
        self.store = store

    def ask(self, question: str, conversation_id: str | None = None, *, top_k: int | None = None,
            mode: str | None = None, create_missing: bool = False, abstain: bool = True,
            reading: Reading = DEFAULT_READING, documents: Sequence[str] | None = None) -> Answer:
        """Answer ``question`` as the next turn of ``conversation_id`` and record the turn.

        ``conversation_id`` None starts a new conversation with this question (its id is the answer's
        ``conversation_id``). An id not in the store raises :class:`UnknownConversation`, unless
        ``create_missing`` (the CLI's ``--conversation NAME`` starts the conversation on first use).
        ``mode`` and ``top_k`` default to the engine's settings. ``abstain=False`` returns the ranking even
        below the confidence threshold (evaluation). ``documents``: answer from these documents only (an
        evaluation's ceiling: the gold story) instead of choosing them from the topic.
        """
        settings = self.engine.settings
        mode = mode or settings.retriever
        top_k = top_k or settings.top_k
        question = self.engine.validated(question, mode)
        history = self.store.turns(conversation_id) if conversation_id is not None else []
        if history is None and not create_missing:
            raise UnknownConversation(conversation_id)
        answer = answer_turn(self.engine, question, history or [], top_k=top_k, mode=mode, reading=reading,
                             abstain=abstain, documents=documents)
        answer.conversation_id = self.store.append(conversation_id, Turn.from_answer(question, answer),
                                                   create=conversation_id is None or create_missing)
        return answer

    def for_engine(self, engine: Answerer) -> "Conversations":
        """The same store answered by another engine (one over a rebuilt index)."""
        return Conversations(engine, self.store)

    # the store's operations, for the API and the CLI

    def create(self, conversation_id: str | None = None) -> str:
        return self.store.create(conversation_id)

    def exists(self, conversation_id: str) -> bool:
        return self.store.exists(conversation_id)

    def turns(self, conversation_id: str) -> list[Turn] | None:
        return self.store.turns(conversation_id)

    def delete(self, conversation_id: str) -> bool:
        return self.store.delete(conversation_id)

    def close(self) -> None:
        self.store.close()


def attach_store(engine, store: ConversationStore) -> None:
    """Make ``store`` the one ``engine.conversations`` (and so ``engine.ask``) uses: the HTTP service gives
    every engine it serves its own namespace's store, which outlives an engine swapped out by a reload."""
    engine.conversations = Conversations(engine, store)


def store_of(engine) -> ConversationStore:
    """The engine's store, opened on first use (asking without a conversation never touches the disk)."""
    return engine.conversations.store

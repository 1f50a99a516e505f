"""Conversations: follow-up questions understood from the history, with retrieval-side methods only.

No model writes or rewrites anything: a follow-up such as "When did it reopen?" is *read* with the earlier
turns, and the answer is still a list of exact source sentences; ``understood_as`` shows how it was read.

- :mod:`qa.conversation.store`: :class:`Turn` and the SQLite :class:`ConversationStore`;
- :mod:`qa.conversation.reading`: :class:`Reading`, how history is used;
- :mod:`qa.conversation.expansion`: topic boundaries and historical query expansion (:func:`understand`);
- :mod:`qa.conversation.followup`: topic keeping and the follow-up re-rankers (:func:`answer_turn`);
- :mod:`qa.conversation.service`: :class:`Conversations`, the store and the reading behind one
  :meth:`~Conversations.ask` (what ``Engine.ask(..., conversation_id=...)`` runs).

The chosen combination and its measurement are in docs/CONVERSATIONS.md (benchmarks/conversation_bench.py).
"""

from qa.conversation.expansion import (NEW_TOPIC, definite_references, history_terms, is_elliptical, self_contained,
                                       starts_topic, topic_turns, understand)
from qa.conversation.followup import (SAME_DOCUMENTS, Evidence, Focus, answer_turn, asks_about_previous,
                                      covers_corpus, focus, followup_features, outside_evidence, rank_followup,
                                      refocus, same_story, sentences_of, topic_answers, topic_documents,
                                      topic_question)
from qa.conversation.reading import DEFAULT_READING, FOLLOWUP_FEATURES, Reading, default_reading
from qa.conversation.service import Conversations, attach_store, store_of
from qa.conversation.store import (CLI_NAMESPACE, HTTP_NAMESPACE, MAX_ID_CHARS, STORE_FILE, ConversationStore, Turn,
                                   UnknownConversation, utc_now, validate_id)

__all__ = ["CLI_NAMESPACE", "DEFAULT_READING", "FOLLOWUP_FEATURES", "HTTP_NAMESPACE", "MAX_ID_CHARS", "NEW_TOPIC",
           "SAME_DOCUMENTS", "STORE_FILE", "ConversationStore", "Conversations", "Evidence", "Focus", "Reading",
           "Turn", "UnknownConversation", "answer_turn", "asks_about_previous", "attach_store", "covers_corpus",
           "default_reading", "definite_references", "focus", "followup_features", "history_terms", "is_elliptical",
           "outside_evidence", "rank_followup", "refocus", "same_story", "self_contained", "sentences_of", "starts_topic",
           "store_of", "topic_answers", "topic_documents", "topic_question", "topic_turns", "understand", "utc_now",
           "validate_id"]

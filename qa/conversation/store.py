"""The conversation store: turns in SQLite, one file per namespace (the CLI's and the HTTP service's).

Each :class:`Turn` keeps the question, how it was read (``understood_as``) and the cited sentences' texts,
so that history expansion reads what the user saw even after the index is rebuilt.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from qa.types import Answer, Citation, Disagreement

if TYPE_CHECKING:
    from qa.config import Settings

STORE_FILE = "conversations.sqlite3"
# Conversations live in one store per namespace: the CLI's (named by the user, e.g. `qa ask -c work`) and
# the HTTP service's (random ids only), so that no name chosen in the CLI can be read or deleted over HTTP.
CLI_NAMESPACE, HTTP_NAMESPACE = "cli", "http"
MAX_ID_CHARS = 128


class UnknownConversation(KeyError):
    """No conversation with this id (never created, deleted, or dropped after ``max_age_days`` idle)."""

    def __init__(self, conversation_id: str):
        super().__init__(conversation_id)
        self.conversation_id = conversation_id

    def __str__(self) -> str:
        return f"unknown conversation {self.conversation_id!r}"


# -- data -----------------------------------------------------------------------------------------


@dataclass
class Turn:
    """One question and what we answered. ``texts`` are the cited sentences' texts (same order as
    ``citations``): kept with the turn because history expansion reads them, and a rebuilt index must
    not change what an old turn meant."""

    question: str
    understood_as: str | None  # None: the question was read on its own (it starts a topic)
    answered: bool
    citations: list[Citation]
    asked_at: str  # ISO-8601, UTC
    texts: list[str] = field(default_factory=list)
    disagrees: list[list[Disagreement]] = field(default_factory=list)  # per cited sentence: where sources differ

    def to_dict(self) -> dict:
        out = {"question": self.question, "understood_as": self.understood_as, "answered": self.answered,
               "citations": [c.to_dict() for c in self.citations], "texts": list(self.texts),
               "asked_at": self.asked_at}
        if any(self.disagrees):
            out["disagrees"] = [[d.to_dict() for d in ds] for ds in self.disagrees]
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "Turn":
        return cls(question=data["question"], understood_as=data.get("understood_as"),
                   answered=bool(data["answered"]), citations=[Citation(**c) for c in data.get("citations", [])],
                   asked_at=data["asked_at"], texts=list(data.get("texts", [])),
                   disagrees=[[Disagreement.from_dict(d) for d in ds] for ds in data.get("disagrees", [])])

    @classmethod
    def from_answer(cls, question: str, answer: Answer, *, asked_at: str | None = None) -> "Turn":
        """The turn to store after answering: the head citation of each returned sentence, in rank order."""
        return cls(question=question, understood_as=answer.understood_as, answered=answer.answered,
                   citations=[s.citation for s in answer.sentences], asked_at=asked_at or utc_now(),
                   texts=[s.text for s in answer.sentences], disagrees=[list(s.disagrees) for s in answer.sentences])


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# -- the store ------------------------------------------------------------------------------------


class ConversationStore:
    """Conversations in SQLite (WAL: readers never block the writer, and the CLI and a server can share
    the file). One connection behind a lock, so the HTTP server's thread pool can call it freely.

    Bounded: a conversation keeps its last ``max_turns`` turns, and conversations idle longer than
    ``max_age_days`` are dropped (on open, then by create and append at most every ``PRUNE_EVERY_S``
    seconds, so that a busy server does not pay a delete per question; reads already ignore them).
    """

    PRUNE_EVERY_S = 60.0

    def __init__(self, path: Path, max_turns: int = 50, max_age_days: float = 30.0, *,
                 clock: Callable[[], float] = time.time):
        if max_turns < 1 or max_age_days <= 0:
            raise ValueError("max_turns must be ≥ 1 and max_age_days > 0")
        self.path = Path(path)
        self.max_turns = max_turns
        self.max_age_days = max_age_days
        self._clock = clock  # injectable so tests can age conversations without sleeping
        self._lock = threading.Lock()
        self._pruned_at = float("-inf")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30.0)
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(
                """
                CREATE TABLE IF NOT EXISTS conversations (
                    id TEXT PRIMARY KEY,
                    created_at TEXT NOT NULL,
                    updated_at REAL NOT NULL
                );
                CREATE INDEX IF NOT EXISTS conversations_updated ON conversations(updated_at);
                CREATE TABLE IF NOT EXISTS turns (
                    conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
                    seq INTEGER NOT NULL,
                    data TEXT NOT NULL,
                    PRIMARY KEY (conversation_id, seq)
                );
                """
            )
        self.prune()

    @classmethod
    def from_settings(cls, settings: "Settings", namespace: str = CLI_NAMESPACE) -> "ConversationStore":
        """The store of ``namespace`` under ``settings.data_dir`` (a file of its own per namespace)."""
        name = STORE_FILE if namespace == CLI_NAMESPACE else f"conversations-{namespace}.sqlite3"
        return cls(Path(settings.data_dir) / name, settings.max_turns, settings.max_age_days)

    # -- helpers

    def _cutoff(self) -> float:
        return self._clock() - self.max_age_days * 86400.0

    def _write(self, fn):
        """Run ``fn(db)`` in one immediate transaction under the lock."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                result = fn(self._db)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return result

    def _live(self, db: sqlite3.Connection, cid: str) -> bool:
        row = db.execute("SELECT 1 FROM conversations WHERE id = ? AND updated_at >= ?",
                         (cid, self._cutoff())).fetchone()
        return row is not None

    # -- API

    def create(self, conversation_id: str | None = None) -> str:
        """A new conversation; ``conversation_id`` (e.g. a CLI name like "work") is used as given, a uuid4
        hex when None. Creating an id that already exists keeps it and its turns."""
        cid = uuid.uuid4().hex if conversation_id is None else validate_id(conversation_id)
        self._prune_if_due()
        self._write(lambda db: self._insert(db, cid))
        return cid

    def _insert(self, db: sqlite3.Connection, cid: str) -> None:
        # An expired conversation not yet pruned starts afresh under its name, without its old turns.
        db.execute("DELETE FROM conversations WHERE id = ? AND updated_at < ?", (cid, self._cutoff()))
        db.execute("INSERT OR IGNORE INTO conversations (id, created_at, updated_at) VALUES (?, ?, ?)",
                   (cid, utc_now(), self._clock()))

    def exists(self, conversation_id: str) -> bool:
        with self._lock:
            return self._live(self._db, conversation_id)

    def turns(self, conversation_id: str) -> list[Turn] | None:
        """The kept turns, oldest first; None when the conversation is unknown."""
        with self._lock:
            if not self._live(self._db, conversation_id):
                return None
            rows = self._db.execute("SELECT data FROM turns WHERE conversation_id = ? ORDER BY seq",
                                    (conversation_id,)).fetchall()
        return [Turn.from_dict(json.loads(data)) for (data,) in rows]

    def append(self, conversation_id: str | None, turn: Turn, *, create: bool = False) -> str:
        """Add a turn, keeping only the last ``max_turns``, and return the conversation's id.

        With ``create`` the conversation is created first if needed (a new uuid4 id when
        ``conversation_id`` is None), in the same transaction: a service that starts a conversation with
        every first question pays one write, and no empty conversation is left when answering fails.
        Otherwise an unknown id raises :class:`UnknownConversation`.
        """
        if conversation_id is None and not create:
            raise ValueError("a conversation id is needed unless create=True")
        cid = uuid.uuid4().hex if conversation_id is None else validate_id(conversation_id)
        data = json.dumps(turn.to_dict(), ensure_ascii=False)

        def run(db):
            if create:
                self._insert(db, cid)
            elif not self._live(db, cid):
                raise UnknownConversation(cid)
            (last,) = db.execute("SELECT COALESCE(MAX(seq), -1) FROM turns WHERE conversation_id = ?",
                                 (cid,)).fetchone()
            seq = last + 1
            db.execute("INSERT INTO turns (conversation_id, seq, data) VALUES (?, ?, ?)", (cid, seq, data))
            db.execute("DELETE FROM turns WHERE conversation_id = ? AND seq <= ?", (cid, seq - self.max_turns))
            db.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", (self._clock(), cid))

        self._write(run)
        self._prune_if_due()
        return cid

    def delete(self, conversation_id: str) -> bool:
        """Forget a conversation; False when there was none."""
        return self._write(lambda db: db.execute("DELETE FROM conversations WHERE id = ?",
                                                 (conversation_id,)).rowcount > 0)

    def prune(self) -> int:
        """Drop conversations idle longer than ``max_age_days``; returns how many."""
        self._pruned_at = self._clock()
        cutoff = self._cutoff()
        return self._write(lambda db: db.execute("DELETE FROM conversations WHERE updated_at < ?",
                                                 (cutoff,)).rowcount)

    def _prune_if_due(self) -> None:
        if self._clock() - self._pruned_at >= self.PRUNE_EVERY_S:
            self.prune()

    def close(self) -> None:
        with self._lock:
            self._db.close()


def validate_id(conversation_id: str) -> str:
    if not isinstance(conversation_id, str) or not conversation_id.strip() or len(conversation_id) > MAX_ID_CHARS \
            or not conversation_id.isprintable():
        raise ValueError(f"a conversation id is 1–{MAX_ID_CHARS} printable characters")
    return conversation_id

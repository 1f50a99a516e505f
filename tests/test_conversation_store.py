"""The conversation store (qa/conversation/store.py): SQLite in WAL mode, ids, bounds by turns and age,
thread safety. No model and no index."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from qa.conversation.store import ConversationStore, UnknownConversation
from tests.fakes import cite, turn

class Clock:
    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_store_is_sqlite_in_wal_mode(tmp_path):
    path = tmp_path / "state" / "conversations.sqlite3"  # the folder is created
    ConversationStore(path, 10, 1.0).create("x")
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_create_named_and_generated_ids(tmp_path):
    store = ConversationStore(tmp_path / "c.sqlite3", 10, 1.0)
    generated = store.create()
    assert len(generated) == 32 and int(generated, 16) >= 0
    assert store.create("work") == "work"
    assert store.exists("work") and store.turns("work") == []
    store.append("work", turn("q1"))
    assert store.create("work") == "work" and len(store.turns("work")) == 1  # re-creating keeps the turns
    with pytest.raises(ValueError):
        store.create("")


def test_unknown_conversation(tmp_path):
    store = ConversationStore(tmp_path / "c.sqlite3", 10, 1.0)
    assert store.turns("nope") is None
    assert not store.exists("nope")
    with pytest.raises(UnknownConversation) as info:
        store.append("nope", turn("q"))
    assert isinstance(info.value, KeyError) and "nope" in str(info.value)


def test_append_can_start_the_conversation(tmp_path):
    store = ConversationStore(tmp_path / "c.sqlite3", 10, 1.0)
    cid = store.append(None, turn("q1"), create=True)  # a new id, created with its first turn
    assert len(cid) == 32 and [t.question for t in store.turns(cid)] == ["q1"]
    assert store.append("work", turn("q1"), create=True) == "work"
    assert store.append("work", turn("q2"), create=True) == "work"  # an existing one is continued
    assert [t.question for t in store.turns("work")] == ["q1", "q2"]
    with pytest.raises(ValueError):
        store.append(None, turn("q"))


def test_an_expired_name_starts_afresh(tmp_path):
    clock = Clock()
    store = ConversationStore(tmp_path / "c.sqlite3", 10, 1.0, clock=clock)
    store.append("work", turn("old question"), create=True)
    clock.now += 2 * 86400  # expired, not yet pruned
    assert store.turns("work") is None
    assert store.append("work", turn("new question"), create=True) == "work"
    assert [t.question for t in store.turns("work")] == ["new question"]
    store.create("later")
    clock.now += 2 * 86400
    assert store.create("later") == "later" and store.turns("later") == []


def test_turns_round_trip_and_persist_across_instances(tmp_path):
    path = tmp_path / "c.sqlite3"
    store = ConversationStore(path, 10, 1.0)
    cid = store.create()
    first = turn("Why was the Torkham crossing closed?", None, ["Six days back, the Taliban closed it."])
    second = turn("When did it reopen?", "When did it reopen? [+ Torkham]", [])
    store.append(cid, first)
    store.append(cid, second)
    store.close()
    again = ConversationStore(path, 10, 1.0)
    assert again.turns(cid) == [first, second]
    assert again.turns(cid)[0].citations[0] == cite(index=0)


def test_bounded_by_turns(tmp_path):
    store = ConversationStore(tmp_path / "c.sqlite3", 3, 1.0)
    cid = store.create()
    for i in range(7):
        store.append(cid, turn(f"q{i}"))
    assert [t.question for t in store.turns(cid)] == ["q4", "q5", "q6"]


def test_bounded_by_age(tmp_path):
    clock = Clock()
    path = tmp_path / "c.sqlite3"
    store = ConversationStore(path, 10, 2.0, clock=clock)
    old, active = store.create("old"), store.create("active")
    store.append(old, turn("q"))
    clock.now += 1.5 * 86400
    store.append(active, turn("q"))  # activity keeps a conversation alive; appending prunes the others
    assert store.exists(old)
    clock.now += 1.0 * 86400  # "old" is now idle for 2.5 days, "active" for 1
    assert store.turns(old) is None and not store.exists(old)  # reads already ignore it
    assert store.prune() == 1
    assert store.exists(active)
    reopened = ConversationStore(path, 10, 2.0, clock=Clock(clock.now + 3 * 86400))  # pruned on open
    assert not reopened.exists(active)
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM turns").fetchone()[0] == 0


def test_delete(tmp_path):
    store = ConversationStore(tmp_path / "c.sqlite3", 10, 1.0)
    cid = store.create()
    store.append(cid, turn("q"))
    assert store.delete(cid) is True
    assert store.delete(cid) is False
    assert store.turns(cid) is None


def test_store_is_thread_safe(tmp_path):
    store = ConversationStore(tmp_path / "c.sqlite3", 1000, 1.0)
    cids = [store.create() for _ in range(4)]
    errors = []

    def work(n: int):
        try:
            for i in range(15):
                store.append(cids[n % 4], turn(f"{n}-{i}"))
                store.turns(cids[(n + 1) % 4])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sum(len(store.turns(c)) for c in cids) == 8 * 15
    for c in cids:  # each thread's turns stay in its own order
        seen: dict[str, int] = {}
        for t in store.turns(c):
            n, i = map(int, t.question.split("-"))
            assert i > seen.get(n, -1)
            seen[n] = i

"""The supervisor's parts: what a worker is told, where it runs, how the port is held. The processes
themselves are tested in tests/test_server.py."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import pytest

from qa.config import Settings
from qa.serve import (BACKOFF_S, MAX_BACKOFF_S, STABLE_S, START_FAILURES, BalanceConnections, ConnectionShare,
                      WorkerSlot, reserve_port, worker_cores, worker_environment)


def test_workers_get_the_command_lines_settings_and_share_the_cores(tmp_path, monkeypatch):
    monkeypatch.delenv("QA_QUERY_THREADS", raising=False)
    chosen = Settings(corpus_dir=Path("seeds"), index_root=tmp_path / "idx", serve_workers=2, allow_reload=True)
    env = worker_environment(chosen)
    assert int(env["QA_QUERY_THREADS"]) == max(1, (os.cpu_count() or 1) // 2)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    in_worker = Settings()  # what qa.api.worker_app reads
    assert in_worker.corpus_dir == Path("seeds").resolve() and in_worker.index_root == (tmp_path / "idx").resolve()
    assert in_worker.allow_reload is True
    monkeypatch.setenv("QA_QUERY_THREADS", "3")  # the user's own choice is left alone
    assert "QA_QUERY_THREADS" not in worker_environment(chosen)


def test_each_worker_gets_a_core_of_its_own_or_none(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {5, 2, 7})
    assert worker_cores(2) == [2, 5]
    assert worker_cores(3) == [2, 5, 7]
    assert worker_cores(4) == [None] * 4  # more workers than cores: the scheduler places them
    assert worker_cores(2, pin=False) == [None, None]


def test_the_port_is_held_without_listening():
    holder = reserve_port("127.0.0.1", 0)
    try:
        port = holder.getsockname()[1]
        assert port > 0
        with pytest.raises(ConnectionRefusedError):  # holding is not listening: no connection is queued
            socket.create_connection(("127.0.0.1", port), timeout=5)
    finally:
        holder.close()


def test_a_port_another_server_listens_on_is_refused():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        with pytest.raises(OSError):  # told it is in use, not silently shared
            reserve_port("127.0.0.1", other.getsockname()[1])


def test_a_worker_over_its_share_of_connections_closes_one_at_a_time():
    counts = [0, 0]
    mine = set(range(19))
    clock = iter([0.0, 0.01, 0.1, 0.2, 0.3]).__next__
    share = ConnectionShare(counts, 0, mine, every_s=0.05, clock=clock)
    counts[1] = 13  # the other worker's count, as it last wrote it
    assert share.over() and counts[0] == 19  # 19 against a mean of 16
    assert not share.over()  # 10 ms later: not again yet
    assert share.over()
    mine.difference_update(range(3))  # 16 and 16 once clients have reconnected to the other worker
    counts[1] = 16
    assert not share.over() and not share.over()


def test_only_the_response_of_an_over_share_worker_asks_to_reconnect():
    class Share:
        def __init__(self, answer):
            self.answer = answer

        def over(self):
            return self.answer

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})

    def headers_sent(over: bool) -> list:
        sent = []

        async def send(message):
            sent.append(message)

        asyncio.run(BalanceConnections(app, Share(over))({"type": "http"}, None, send))
        assert sent[1]["body"] == b"ok"  # the request is answered either way
        return sent[0]["headers"]

    assert (b"connection", b"close") in headers_sent(True)
    assert headers_sent(False) == [(b"content-type", b"text/plain")]


def test_only_exits_before_ready_count_as_failed_starts():
    slot = WorkerSlot()
    for n in range(1, START_FAILURES):
        slot.exited(now=float(n))
        assert slot.start_failures == n and not slot.failing_to_start
    slot.exited(now=10.0)
    assert slot.failing_to_start  # the supervisor stops only if no other worker serves
    slot.ready_at = 20.0  # the next one became ready, then was killed: a crash, not a failed start
    slot.exited(now=21.0)
    assert slot.start_failures == 0 and not slot.failing_to_start


def test_a_worker_that_served_a_while_is_restarted_at_once_and_one_that_keeps_dying_backs_off():
    slot = WorkerSlot(ready_at=0.0)
    assert slot.exited(now=STABLE_S + 1) == 0.0  # killed after serving long enough: at once
    delays = []
    for k in range(12):  # killed each time soon after it became ready
        slot.ready_at = 1000.0 * (k + 1)
        delays.append(slot.exited(now=slot.ready_at + 1))
    assert delays[:4] == [BACKOFF_S, 2 * BACKOFF_S, 4 * BACKOFF_S, 8 * BACKOFF_S]
    assert max(delays) == MAX_BACKOFF_S and delays == sorted(delays)
    assert slot.start_failures == 0  # every one of them had become ready: the server is never stopped for this
    slot.ready_at = 50_000.0
    assert slot.exited(now=50_000.0 + STABLE_S) == 0.0  # a stable run resets the back-off

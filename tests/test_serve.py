"""The supervisor's parts: what a worker is told, where it runs, how the port is held. The processes
themselves are tested in tests/test_server.py."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from qa.config import Settings
from qa.serve import reserve_port, worker_cores, worker_environment


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


def test_the_port_is_held_without_listening_and_a_taken_port_fails():
    holder = reserve_port("127.0.0.1", 0)
    try:
        port = holder.getsockname()[1]
        assert port > 0
        with pytest.raises(ConnectionRefusedError):  # holding is not listening: no connection is queued
            socket.create_connection(("127.0.0.1", port), timeout=5)
        with pytest.raises(OSError):  # another server asking for the same port is told it is in use
            reserve_port("127.0.0.1", port)
    finally:
        holder.close()

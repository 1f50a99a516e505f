"""The HTTP app served by several worker processes (``qa serve --workers N``).

One Python process handles requests with about one core's worth of work at most (the GIL lets one thread
at a time run request code), so a server uses a 2-core machine only with a second process. uvicorn's own
``--workers`` shares one listening socket between its workers, and the first worker to wake accepts every
connection waiting (asyncio accepts up to the backlog at once): clients that open their keep-alive
connections together (a proxy's pool, a load generator) can all land on one worker, measured here as all
32 of 32. So each worker here listens on a socket of its own with ``SO_REUSEPORT``, and the kernel assigns
every new connection to one of the listening workers. That split is still a coin toss per connection
(19 and 13 of 32 is common), so a worker holding more connections than its share asks the client of its
next response to reconnect (``Connection: close``); connections drift to where there are fewer, without
a request being refused or delayed (:class:`ConnectionShare`). A worker listens only once its engine is
open, so no connection waits on a worker that is still loading. With a core per worker, each worker is pinned to
its own core: its request thread and its model thread then never wait for the other worker's threads.
docs/PERFORMANCE.md and docs/DECISIONS.md have the measurements.

The supervisor holds the port, restarts a worker that dies, and stops the workers on SIGINT or SIGTERM.
A worker that dies after it became ready is restarted (at once, or after a back-off that doubles while it
keeps dying soon after its start: :class:`WorkerSlot`); the server stops only when workers fail to *start*
several times in a row and none is serving. A worker whose supervisor dies, even by SIGKILL, is killed by
the kernel (:func:`end_with_parent`): nobody would restart or stop it, and it would keep the port from the
next server.
"""

from __future__ import annotations

import ctypes
import json
import logging
import logging.config
import multiprocessing
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, MutableSequence, Sized
from dataclasses import dataclass
from multiprocessing.connection import wait

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.config import LOGGING_CONFIG

from qa.config import Settings

log = logging.getLogger("uvicorn.error")  # the supervisor's lines go with uvicorn's own

START_FAILURES = 3  # workers that exit this many times in a row before they become ready, with none serving,
# stop the server: something keeps any of them from opening the index
STABLE_S = 60.0  # a worker that served this long before it died is restarted at once
BACKOFF_S = 0.5  # the first delay of a restart after a quick death, doubled for each one after
MAX_BACKOFF_S = 30.0
STOP_TIMEOUT_S = 30.0


def worker_environment(settings: Settings) -> dict[str, str]:
    """What a worker needs in its environment to open the engine the supervisor checked: the settings the
    command line chose, and one model thread per core a worker has (workers × threads ≤ cores)."""
    env = {"QA_CORPUS_DIR": str(settings.corpus_dir.resolve()), "QA_INDEX_ROOT": str(settings.index_root.resolve()),
           "QA_ALLOW_RELOAD": str(settings.allow_reload).lower(), "QA_ALLOWED_HOSTS": json.dumps(settings.allowed_hosts),
           "QA_WATCH": str(settings.watch).lower()}
    if "QA_QUERY_THREADS" not in os.environ:
        env["QA_QUERY_THREADS"] = str(max(1, (os.cpu_count() or 1) // settings.serve_workers))
    return env


def worker_cores(workers: int, pin: bool = True) -> list[int | None]:
    """The core each worker is pinned to: its own, when there are at least as many cores (of those this
    process may use) as workers; otherwise none, and the scheduler places them."""
    cores = sorted(os.sched_getaffinity(0))
    if not pin or workers > len(cores):
        return [None] * workers
    return cores[:workers]


PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def end_with_parent(parent: int, sig: int = signal.SIGKILL) -> None:
    """Have the kernel send ``sig`` to this process when its parent process ``parent`` dies (Linux
    ``PR_SET_PDEATHSIG``; elsewhere nothing is done). The parent may have died before this call, and the
    process been re-parented already: then it exits at once. The signal comes when the parent *thread* that
    started this process ends, so the parent starts its children from its main thread."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        log.warning("cannot ask to end with the parent process: %s", os.strerror(ctypes.get_errno()))
    if os.getppid() != parent:
        os._exit(1)


class PortUnavailable(OSError):
    """The address and port cannot be listened on (in use, not an address of this machine, not allowed)."""


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def reserve_port(host: str, port: int) -> socket.socket:
    """Hold ``port`` for the workers with a socket that does not listen (so it is given no connections).

    A bind without SO_REUSEPORT first, so that a port another server listens on (even another ``qa serve``)
    fails here with "address already in use" rather than being shared; SO_REUSEADDR, so that connections
    of a server just stopped, closing on this port (TIME_WAIT), do not. Port 0 becomes the port the OS
    chose."""
    try:
        with socket.socket(_family(host), socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
            port = probe.getsockname()[1]
        return _reuseport_socket(host, port)
    except OSError as exc:
        raise PortUnavailable(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc


def _reuseport_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


class ConnectionShare:
    """Whether this worker holds more than its share of the workers' open connections.

    Each worker writes its own count into ``counts`` (shared memory, one slot per worker) whenever it
    asks, and reads the others' as they last wrote them. A worker ``margin`` or more connections over the
    mean is over its share. It sheds at most one connection every ``every_s`` seconds: the clients take a
    moment to reconnect, and the counts to catch up, so shedding on every response would overshoot.
    """

    def __init__(self, counts: MutableSequence[int], slot: int, connections: Sized, *, margin: float = 1.0,
                 every_s: float = 0.05, clock: Callable[[], float] = time.monotonic):
        self.counts, self.slot, self.connections = counts, slot, connections
        self.margin, self.every_s, self.clock = margin, every_s, clock
        self._closed_at = float("-inf")

    def over(self) -> bool:
        mine = len(self.connections)
        self.counts[self.slot] = mine
        fair = sum(self.counts[:]) / len(self.counts)
        now = self.clock()
        if mine - fair < self.margin or now - self._closed_at < self.every_s:
            return False
        self._closed_at = now
        return True


class BalanceConnections:
    """ASGI middleware: the response to a request that arrives while this worker is over its share of
    connections (:class:`ConnectionShare`) carries ``Connection: close``, so its client reconnects and the
    kernel gives the new connection to any worker. The request itself is answered as usual."""

    def __init__(self, app: ASGIApp, share: ConnectionShare):
        self.app, self.share = app, share

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.share.over():
            await self.app(scope, receive, send)
            return

        async def closing(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, closing)


@dataclass
class WorkerSlot:
    """What the supervisor knows of one worker slot, and when to start its next worker."""

    ready_at: float | None = None  # when the supervisor saw the current worker ready
    start_failures: int = 0  # workers in a row that exited before they became ready
    quick_deaths: int = 0  # workers in a row that exited, ready or not, within STABLE_S of being ready

    def exited(self, now: float) -> float:
        """Count the exit of this slot's worker at ``now``; the delay before starting the next one."""
        if self.ready_at is None:
            self.start_failures += 1
            self.quick_deaths += 1
        else:
            self.start_failures = 0
            self.quick_deaths = self.quick_deaths + 1 if now - self.ready_at < STABLE_S else 0
        self.ready_at = None
        return 0.0 if self.quick_deaths == 0 else min(MAX_BACKOFF_S, BACKOFF_S * 2 ** (self.quick_deaths - 1))

    @property
    def failing_to_start(self) -> bool:
        return self.start_failures >= START_FAILURES


def _worker(host: str, port: int, core: int | None, access_log: bool, slot: int, counts: MutableSequence[int],
            balance: bool, supervisor: int, ready: MutableSequence[int]) -> None:
    """One worker process: uvicorn serving ``qa.api.worker_app`` on its own SO_REUSEPORT socket."""
    end_with_parent(supervisor)
    os.setpgrp()  # Ctrl-C reaches the supervisor only, which stops the workers once (a second signal would
    # make uvicorn skip its graceful shutdown)
    if core is not None:
        os.sched_setaffinity(0, {core})  # before any thread starts: the model's threads inherit it
    import uvicorn

    from qa.api import worker_app
    from qa.api.middleware import uvicorn_options

    app = worker_app()  # the engine is open before the socket listens
    share = ConnectionShare(counts, slot, ())
    config = uvicorn.Config(BalanceConnections(app, share) if balance else app, host=host, port=port,
                            access_log=access_log, log_level="info", **uvicorn_options(app.state.settings))
    server = uvicorn.Server(config)
    share.connections = server.server_state.connections  # uvicorn's set of open connections
    ready[slot] = 1  # the engine is open: from here an exit is a crash, not a failed start
    server.run(sockets=[_reuseport_socket(host, port)])


def run_workers(settings: Settings, *, host: str, port: int, access_log: bool = True) -> None:
    """Serve with ``settings.serve_workers`` worker processes until SIGINT or SIGTERM; the index must be
    built already (``qa serve`` builds it first)."""
    holder = reserve_port(host, port)
    port = holder.getsockname()[1]
    os.environ.update(worker_environment(settings))
    context = multiprocessing.get_context("spawn")
    cores = worker_cores(settings.serve_workers, settings.serve_pin_cores)
    counts = context.RawArray("i", len(cores))  # each worker's open connections (ConnectionShare)
    ready = context.RawArray("i", len(cores))  # set by a worker once its engine is open
    stopping: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: stopping.append(signum))

    def start(slot: int) -> multiprocessing.Process:
        counts[slot] = ready[slot] = 0
        args = (host, port, cores[slot], access_log, slot, counts, settings.serve_balance, os.getpid(), ready)
        process = context.Process(target=_worker, args=args, name=f"qa-worker-{slot}")
        process.start()
        log.info("Started worker %d [%d]%s", slot, process.pid,
                 "" if cores[slot] is None else f" on core {cores[slot]}")
        return process

    logging.config.dictConfig(LOGGING_CONFIG)  # uvicorn's format, as in the workers
    url_host = f"[{host}]" if ":" in host else host
    log.info("Started supervisor [%d]: listening on http://%s:%d with %d workers (each once its engine is open)",
             os.getpid(), url_host, port, len(cores))
    workers: list[multiprocessing.Process | None] = [start(slot) for slot in range(len(cores))]
    slots = [WorkerSlot() for _ in workers]
    restart_at = [0.0] * len(workers)
    try:
        while not stopping:
            now = time.monotonic()
            pending = [at for w, at in zip(workers, restart_at) if w is None]
            wait([w.sentinel for w in workers if w is not None],
                 timeout=max(0.0, min([0.5, *(at - now for at in pending)])))
            now = time.monotonic()
            for slot, worker in enumerate(workers):
                if stopping:
                    break
                if worker is None:
                    if now >= restart_at[slot]:
                        workers[slot] = start(slot)
                    continue
                if worker.is_alive():
                    if ready[slot] and slots[slot].ready_at is None:
                        slots[slot].ready_at = now
                    continue
                if ready[slot] and slots[slot].ready_at is None:
                    slots[slot].ready_at = now  # ready and dead between two looks
                was_ready = slots[slot].ready_at is not None
                delay = slots[slot].exited(now)
                serving = any(w is not None and w.is_alive() and ready[i] for i, w in enumerate(workers) if i != slot)
                if slots[slot].failing_to_start and not serving:
                    log.error("worker %d [%d] exited with %s before it was ready, %d times in a row, and no worker is "
                              "serving: stopping the server", slot, worker.pid, worker.exitcode,
                              slots[slot].start_failures)
                    stopping.append(0)
                    break
                log.error("worker %d [%d] exited with %s %s: restarting it%s", slot, worker.pid, worker.exitcode,
                          "while serving" if was_ready else "before it was ready",
                          f" in {delay:g} s" if delay else "")
                workers[slot], restart_at[slot] = None, now + delay
    finally:
        running = [w for w in workers if w is not None]
        for worker in running:
            if worker.is_alive():
                os.kill(worker.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for worker in running:
            worker.join(max(0.0, deadline - time.monotonic()))
            if worker.is_alive():
                worker.kill()
                worker.join()
        holder.close()
        log.info("Stopped supervisor [%d]", os.getpid())
    if 0 in stopping:
        raise SystemExit(1)


# -- `qa serve`: the host policy, the index prepared, one process or several -----------------------------

LOOPBACK = {"localhost", "127.0.0.1", "::1"}
ANY_ADDRESS = {"0.0.0.0", "::", ""}


def bound_to(host: str, settings: Settings) -> Settings:
    """The settings of a server listening on ``host``: a specific address is added to the allowed Host
    names (clients may use it); listening on every address, the user is told to name the hosts clients use,
    which no address can tell."""
    if "*" in settings.allowed_hosts or host in settings.allowed_hosts:
        return settings
    if host in ANY_ADDRESS:
        if set(settings.allowed_hosts) <= LOOPBACK:
            from qa.console import note

            note(f"listening on every address, but only requests for {', '.join(settings.allowed_hosts)} are "
                 f"answered: set QA_ALLOWED_HOSTS (a JSON list) to the names and addresses clients use")
        return settings
    return settings.model_copy(update={"allowed_hosts": [*settings.allowed_hosts, host.strip("[]")]})


def serve(settings: Settings, *, host: str, port: int, access_log: bool = True) -> None:
    """``qa serve``: the port checked first (a busy port fails in one line, not after a build), the index
    built when missing or stale, then one process, or ``settings.serve_workers`` supervised workers."""
    from qa.console import note, open_engine

    reserve_port(host, port).close()
    banner = (f"serving {settings.corpus_dir} with {settings.serve_workers} worker process(es): the chat page "
              f"is at /, the API docs at /docs")
    if settings.serve_workers == 1:
        import uvicorn

        from qa.api import serving_app
        from qa.api.middleware import uvicorn_options

        engine = open_engine(settings)  # builds the index first if needed; fails here, not in the first request
        note(banner)
        uvicorn.run(serving_app(engine, settings), host=host, port=port, access_log=access_log, log_level="info",
                    **uvicorn_options(settings))
        return
    prepare_index(settings)
    note(banner)
    run_workers(settings, host=host, port=port, access_log=access_log)


def prepare_index(settings: Settings) -> None:
    """Build the index if it is missing or stale (and export the query model), in a child process: a build
    loads torch, which the supervisor of the workers would otherwise hold for its lifetime (about 900 MiB)."""
    child = multiprocessing.get_context("spawn").Process(target=_open_and_exit, args=(settings, os.getpid()),
                                                         name="qa-prepare-index")
    child.start()
    child.join()
    if child.exitcode:
        raise SystemExit(child.exitcode)


def _open_and_exit(settings: Settings, parent: int) -> None:
    from qa.console import describe, err, error_line, open_engine

    end_with_parent(parent)
    try:
        open_engine(settings)
    except Exception as exc:
        err.print(error_line(describe(exc)))
        sys.exit(1)

"""``qa serve --ray``: a sharded index on Ray Serve, behind the same HTTP API as ``qa serve``.

One deployment per shard (a :class:`~qa.cluster.search.ShardSearcher`) and a front deployment that runs
the app of qa/api/ over a :class:`~qa.cluster.front.ShardedEngine` whose shards are the shard deployments'
handles. Ray Serve replaces a replica that dies; until then, the front answers from the other shards
and marks the answer ``degraded`` instead of failing the request.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from ray import serve

from qa.cluster.front import ShardedEngine
from qa.cluster.search import ShardSearcher
from qa.cluster.shards import load_set
from qa.config import Settings

log = logging.getLogger(__name__)

APP = "qa"
SHARD_TIMEOUT_S = 10.0  # a shard slower than this counts as failed for that question


@serve.deployment(ray_actor_options={"num_cpus": 0})
class Shard:
    """One shard of the index, loaded read-only (qa/cluster/search.py)."""

    def __init__(self, folder: str, nprobe: int):
        self.searcher = ShardSearcher(Path(folder), nprobe=nprobe)

    def candidates(self, *args):
        return self.searcher.candidates(*args)

    def rows(self, *args):
        return self.searcher.rows(*args)

    def catalog(self):
        return self.searcher.catalog()


class ServeShards:
    """The shard deployments, called all at once through their handles; a failed or late shard is None."""

    def __init__(self, handles: list, timeout_s: float = SHARD_TIMEOUT_S):
        self.handles = handles
        self.timeout_s = timeout_s

    def __len__(self) -> int:
        return len(self.handles)

    def fan_out(self, method: str, calls: dict[int, tuple]) -> dict[int, object | None]:
        pending = {i: getattr(self.handles[i], method).remote(*args) for i, args in calls.items()}
        out: dict[int, object | None] = {}
        for i, response in pending.items():
            try:
                out[i] = response.result(timeout_s=self.timeout_s)
            except Exception as exc:  # a dead or overloaded replica: answer from the others
                log.warning("shard %d failed on %s: %s", i, method, exc)
                out[i] = None
        return out


@serve.deployment(ray_actor_options={"num_cpus": 0})
@serve.ingress()
class Front:
    """The HTTP API (qa/api/) over the sharded engine."""

    async def __init__(self, settings: dict, root: str, shard_timeout_s: float, *shards):
        # Opening asks the shards for their catalogues and waits for the answers, which a handle refuses
        # on the replica's event loop: it runs in a thread.
        self.settings = Settings(**settings)
        self.engine = await asyncio.to_thread(ShardedEngine, self.settings, load_set(Path(root)),
                                              ServeShards(list(shards), shard_timeout_s))
        await asyncio.to_thread(self.engine.query, "warm up", "hybrid")

    def __serve_build_asgi_app__(self):
        from qa.api import create_app

        return create_app(self.engine, self.settings, load_on_startup=False)


def application(settings: Settings, root: Path, *, shard_timeout_s: float = SHARD_TIMEOUT_S):
    """The Serve application of the sharded index published under ``root``: a deployment per shard and
    the front bound to their handles, which counts a shard slower than ``shard_timeout_s`` as failed."""
    shard_set = load_set(root)
    shards = [Shard.options(name=f"shard-{i}").bind(str(folder), settings.ann_nprobe)
              for i, folder in enumerate(shard_set.shards)]
    return Front.bind(settings.model_dump(mode="json", exclude={"admin_token"}), str(root), shard_timeout_s, *shards)


def run(settings: Settings, root: Path, *, host: str = "127.0.0.1", port: int = 8000, blocking: bool = True,
        shard_timeout_s: float = SHARD_TIMEOUT_S):
    """Deploy the application on the connected Ray instance with HTTP on ``host:port``."""
    serve.start(http_options={"host": host, "port": port})
    return serve.run(application(settings, root, shard_timeout_s=shard_timeout_s), name=APP, route_prefix="/",
                     blocking=blocking)

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
    """One shard of the index (qa/cluster/search.py): its questions, its snapshot for the front, and the
    changes the front routes to it."""

    def __init__(self, folder: str, settings: dict):
        settings = Settings(**settings)
        self.searcher = ShardSearcher(Path(folder), nprobe=settings.ann_nprobe, settings=settings)

    def generation(self):
        return self.searcher.generation()

    def candidates(self, *args):
        return self.searcher.candidates(*args)

    def rows(self, *args):
        return self.searcher.rows(*args)

    def snapshot(self):
        return self.searcher.snapshot()

    def apply(self, file_ids):
        return self.searcher.apply(file_ids)

    def merge_due(self):
        return self.searcher.merge_due()


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
        self.shards = ServeShards(list(shards), shard_timeout_s)
        self.root = Path(root)
        self.engine = await asyncio.to_thread(ShardedEngine, self.settings, load_set(self.root), self.shards)
        await asyncio.to_thread(self.engine.query, "warm up", "hybrid")

    def __serve_build_asgi_app__(self):
        from qa.api import create_app
        from qa.cluster.updates import ShardedIndex

        s = self.settings
        return create_app(self.engine, s, load_on_startup=False, follow_index=True, watch=s.watch,
                          updates=ShardedIndex(self.root, self.shards))


def application(settings: Settings, root: Path, *, shard_timeout_s: float = SHARD_TIMEOUT_S):
    """The Serve application of the sharded index published under ``root``: a deployment per shard and
    the front bound to their handles, which counts a shard slower than ``shard_timeout_s`` as failed."""
    shard_set = load_set(root)
    values = settings.model_dump(mode="json")
    values["admin_token"] = settings.admin_token.get_secret_value() if settings.admin_token else None
    shards = [Shard.options(name=f"shard-{i}").bind(str(folder), values) for i, folder in enumerate(shard_set.shards)]
    return Front.bind(values, str(root), shard_timeout_s, *shards)


def run(settings: Settings, root: Path, *, host: str = "127.0.0.1", port: int = 8000, blocking: bool = True,
        shard_timeout_s: float = SHARD_TIMEOUT_S):
    """Deploy the application on the connected Ray instance with HTTP on ``host:port``."""
    serve.start(http_options={"host": host, "port": port})
    return serve.run(application(settings, root, shard_timeout_s=shard_timeout_s), name=APP, route_prefix="/",
                     blocking=blocking)

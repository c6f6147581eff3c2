"""Where benchmarks run: a Redis (VICTOR_REDIS_URL or a throwaway server) and worker processes."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import redis

from orchestrator.harness import RedisServer, WorkerProcess
from workers.core.settings import Settings


@dataclass
class BenchRedis:
    url: str
    prefix: str
    server: RedisServer | None = None
    workers: list[WorkerProcess] = field(default_factory=list)

    def env(self, **extra: str) -> dict[str, str]:
        return {"VICTOR_REDIS_URL": self.url, "VICTOR_KEY_PREFIX": self.prefix, **extra}

    def settings(self, **overrides: object) -> Settings:
        values: dict[str, object] = {"redis_url": self.url, "key_prefix": self.prefix}
        values.update(overrides)
        return Settings(**values)

    def worker(self, concurrency: int = 2, pool: str = "prefork", **env: str) -> WorkerProcess:
        worker = WorkerProcess(self.env(**env), concurrency=concurrency, pool=pool)
        self.workers.append(worker)
        return worker.start()


@contextmanager
def bench_redis() -> Iterator[BenchRedis]:
    """The configured Redis (own key prefix, cleaned afterwards) or a throwaway server."""
    url = os.environ.get("VICTOR_REDIS_URL")
    server = None
    if url is None:
        server = RedisServer().start()
        url = server.url
    env = BenchRedis(url=url, prefix=f"vbench{uuid.uuid4().hex[:8]}", server=server)
    try:
        yield env
    finally:
        for worker in env.workers:
            worker.kill()
        if server is not None:
            server.close()
        else:
            client = redis.Redis.from_url(url)
            for key in client.scan_iter(match=f"{env.prefix}*", count=1000):
                client.delete(key)
            client.close()

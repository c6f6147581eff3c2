"""Where worker metrics live: Redis in distributed mode, this process's memory in embedded mode.

Both stores offer the same few operations (hash increments and sets, a scored index, reads of
many hashes) so the reporter and the aggregation code do not care which one they talk to.
Every key written carries a TTL; the memory store drops expired keys itself.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any, Protocol

from workers.core.redis_client import redis_client, translated
from workers.core.settings import Mode, Settings


class MetricsStore(Protocol):
    """The operations metrics need from a store."""

    def write(self, ops: list[tuple[Any, ...]]) -> None:
        """Apply ``("hincr", key, fields, ttl_s)``, ``("hset", key, mapping, ttl_s)`` and
        ``("zadd", key, member, score, ttl_s)``, ``("zprune", key, below_score)`` and
        ``("zrem", key, member)`` operations in one round trip."""

    def members(self, key: str, min_score: float) -> dict[str, float]:
        """Members of a scored index with score >= ``min_score``."""

    def hashes(self, keys: list[str]) -> list[dict[str, str]]:
        """The fields of each hash (empty when missing), in order."""

    def remove(self, key: str, members: list[str]) -> None:
        """Drop members from a scored index."""


class RedisMetricsStore:
    """Metrics in Redis, written with one pipeline per flush."""

    def __init__(self, url: str) -> None:
        self.url = url

    def write(self, ops: list[tuple[Any, ...]]) -> None:
        if not ops:
            return
        pipe = redis_client(self.url).pipeline(transaction=False)
        for op in ops:
            kind, key = op[0], op[1]
            if kind == "hincr":
                for field, amount in op[2].items():
                    pipe.hincrby(key, field, amount)
                pipe.expire(key, op[3])
            elif kind == "hset":
                pipe.hset(key, mapping={k: str(v) for k, v in op[2].items()})
                pipe.expire(key, op[3])
            elif kind == "zadd":
                pipe.zadd(key, {op[2]: op[3]})
                pipe.expire(key, op[4])
            elif kind == "zprune":
                pipe.zremrangebyscore(key, "-inf", f"({op[2]}")
            elif kind == "zrem":
                pipe.zrem(key, op[2])
        with translated("writing metrics"):
            pipe.execute()

    def members(self, key: str, min_score: float) -> dict[str, float]:
        with translated("reading metrics"):
            raw: Any = redis_client(self.url).zrangebyscore(key, min_score, "+inf", withscores=True)
        return {member.decode(): float(score) for member, score in raw}

    def hashes(self, keys: list[str]) -> list[dict[str, str]]:
        if not keys:
            return []
        pipe = redis_client(self.url).pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(key)
        with translated("reading metrics"):
            raw = pipe.execute()
        return [{k.decode(): v.decode() for k, v in entry.items()} for entry in raw]

    def remove(self, key: str, members: list[str]) -> None:
        if members:
            with translated("pruning metrics"):
                redis_client(self.url).zrem(key, *members)


class MemoryMetricsStore:
    """Metrics in this process (embedded mode): the same key layout, expiry on access."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hashes: dict[str, tuple[dict[str, Any], float]] = {}
        self._indexes: dict[str, tuple[dict[str, float], float]] = {}
        self._next_purge = 0.0

    def write(self, ops: list[tuple[Any, ...]]) -> None:
        now = time.monotonic()
        with self._lock:
            for op in ops:
                kind, key = op[0], op[1]
                if kind == "zadd":
                    index, _ = self._indexes.get(key, ({}, 0.0))
                    index[op[2]] = float(op[3])
                    self._indexes[key] = (index, now + op[4])
                    continue
                if kind == "zprune":
                    index, _ = self._indexes.get(key, ({}, 0.0))
                    for member in [m for m, score in index.items() if score < op[2]]:
                        del index[member]
                    continue
                if kind == "zrem":
                    self._indexes.get(key, ({}, 0.0))[0].pop(op[2], None)
                    continue
                fields, expires = self._hashes.get(key, ({}, 0.0))
                if expires and expires < now:
                    fields = {}
                if kind == "hincr":
                    for field, amount in op[2].items():
                        fields[field] = int(fields.get(field, 0)) + int(amount)
                else:
                    fields.update({k: str(v) for k, v in op[2].items()})
                self._hashes[key] = (fields, now + op[3])
            if now >= self._next_purge:
                self._purge(now)
                self._next_purge = now + 5.0

    def _purge(self, now: float) -> None:
        for key in [key for key, (_, exp) in self._hashes.items() if exp < now]:
            del self._hashes[key]
        for key in [key for key, (_, exp) in self._indexes.items() if exp < now]:
            del self._indexes[key]

    def members(self, key: str, min_score: float) -> dict[str, float]:
        with self._lock:
            index, expires = self._indexes.get(key, ({}, 0.0))
            if expires < time.monotonic():
                return {}
            return {member: score for member, score in index.items() if score >= min_score}

    def hashes(self, keys: list[str]) -> list[dict[str, str]]:
        now = time.monotonic()
        with self._lock:
            out = []
            for key in keys:
                fields, expires = self._hashes.get(key, ({}, 0.0))
                out.append({k: str(v) for k, v in fields.items()} if expires >= now else {})
            return out

    def remove(self, key: str, members: list[str]) -> None:
        with self._lock:
            index, _ = self._indexes.get(key, ({}, 0.0))
            for member in members:
                index.pop(member, None)

    def key_count(self) -> int:
        with self._lock:
            return len(self._hashes) + len(self._indexes)


_memory_stores: dict[str, MemoryMetricsStore] = {}
_memory_lock = threading.Lock()


def store_for(settings: Settings) -> MetricsStore:
    """Redis in distributed mode; in embedded mode, one memory store per key prefix."""
    if settings.mode is Mode.DISTRIBUTED:
        return RedisMetricsStore(settings.state_url)
    with _memory_lock:
        store = _memory_stores.get(settings.key_prefix)
        if store is None:
            store = _memory_stores[settings.key_prefix] = MemoryMetricsStore()
        return store


def as_ints(fields: Mapping[str, str]) -> dict[str, int]:
    out = {}
    for key, value in fields.items():
        try:
            out[key] = int(float(value))
        except ValueError:
            continue
    return out

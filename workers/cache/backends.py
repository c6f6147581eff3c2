"""L2 backends: the protocol, and Redis for a fleet (the in-memory stand-in is in memory.py).

This is the boundary module for the cache: redis exceptions become BackendUnavailableError
here, and a backend that failed stays "down" for a short back-off so a dead Redis costs one
error per back-off, not one timeout per lookup.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol

from workers.core.errors import BackendUnavailableError

if TYPE_CHECKING:
    import redis

Handler = Callable[[bytes], None]

_forks = 0


def _after_fork_in_child() -> None:
    global _forks
    _forks += 1


os.register_at_fork(after_in_child=_after_fork_in_child)


def forks() -> int:
    """How many times this process's ancestry forked (changes in each child)."""
    return _forks


def _redis() -> ModuleType:
    """redis-py, imported on first use: a process on the SQLite or memory L2 never pays for it."""
    import redis

    return redis


_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""

# Extend a single-flight lease only while the caller still holds the lock.
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""


class Subscription(Protocol):
    def poll(self, timeout_s: float) -> bytes | None: ...

    def close(self) -> None: ...


class L2Backend(Protocol):
    """What the multi-level cache needs from its shared level."""

    retry_after_s: float

    def available(self) -> bool: ...

    def mark_down(self) -> None: ...

    def get(self, key: str) -> bytes | None: ...

    def get_and_check_lock(self, key: str, lock_key: str) -> tuple[bytes | None, bool]: ...

    def set(self, key: str, raw: bytes, ttl_s: float) -> None: ...

    def acquire(self, lock_key: str, token: str, ttl_s: float) -> bool: ...

    def release(self, lock_key: str, token: str) -> None: ...

    def renew(self, lock_key: str, token: str, ttl_s: float) -> bool: ...

    def delete_matching(self, pattern: str) -> int: ...

    def values_matching(self, pattern: str) -> list[bytes]: ...

    def put_value(self, key: str, raw: bytes, ttl_s: float) -> None: ...

    def publish(self, channel: str, message: bytes) -> int: ...

    def subscribe(self, channel: str) -> Subscription: ...

    def push_ack(self, key: str, ttl_s: float) -> None: ...

    def wait_acks(self, key: str, count: int, timeout_s: float) -> int: ...

    def sweep(self) -> int: ...

    def close(self) -> None: ...


class _Circuit:
    """Down-for-a-while state shared by one backend's callers."""

    def __init__(self, retry_after_s: float) -> None:
        self.retry_after_s = retry_after_s
        self._down_until = 0.0

    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    def mark_down(self) -> None:
        self._down_until = time.monotonic() + self.retry_after_s


class RedisBackend(_Circuit):
    """L2 on Redis; every call raises BackendUnavailableError when Redis cannot be used."""

    def __init__(self, url: str, retry_after_s: float = 1.0, timeout_s: float = 2.0) -> None:
        super().__init__(retry_after_s)
        self.url = url
        self._timeout_s = timeout_s
        self._scripts: dict[str, Any] = {}
        self._client: redis.Redis | None = None
        self._client_forks = -1
        self._local = threading.local()  # (forks, connection) of each thread, for reads

    @property
    def client(self) -> redis.Redis:
        # The pooled client of this process, looked up again only after a fork.
        if self._client is None or self._client_forks != forks():
            from workers.core.redis_client import redis_client

            self._client = redis_client(self.url, self._timeout_s)
            self._client_forks = forks()
        return self._client

    @contextmanager
    def _translated(self, what: str) -> Iterator[None]:
        try:
            yield
        except _redis().RedisError as exc:
            self.mark_down()
            raise BackendUnavailableError(
                f"cache Redis at {self.url} failed while {what}: {exc}; the cache serves from "
                "this process (L1) until it returns; check VICTOR_CACHE_URL / VICTOR_REDIS_URL"
            ) from exc

    def _reader(self) -> Any:
        """This thread's own connection (same pool settings), made again after a fork.

        An L2 hit reads through it directly: redis-py's pooled ``GET`` spends more time in
        the pool checkout (a readiness poll), release and command wrapper than on the wire.
        """
        held = getattr(self._local, "held", None)
        if held is None or held[0] != forks():
            pool = self.client.connection_pool
            held = (forks(), pool.connection_class(**pool.connection_kwargs))
            self._local.held = held
        return held[1]

    def get(self, key: str) -> bytes | None:
        # The hot path of an L2 hit: one thread-owned connection, no pool, no wrapper.
        for attempt in (1, 2):
            connection = self._reader()
            was_open = getattr(connection, "_sock", None) is not None
            try:
                connection.send_command("GET", key)
                return connection.read_response()  # type: ignore[no-any-return]
            except (_redis().ConnectionError, _redis().TimeoutError, OSError) as exc:
                connection.disconnect()
                if attempt == 2 or not was_open:  # a stale socket gets one retry, as in redis-py
                    with self._translated("reading a cache value"):
                        raise _redis().ConnectionError(str(exc)) from exc
            except _redis().RedisError as exc:
                connection.disconnect()
                with self._translated("reading a cache value"):
                    raise exc
        raise AssertionError("unreachable")

    def get_and_check_lock(self, key: str, lock_key: str) -> tuple[bytes | None, bool]:
        with self._translated("waiting for a cache value"):
            pipe = self.client.pipeline(transaction=False)
            pipe.get(key)
            pipe.exists(lock_key)
            raw, locked = pipe.execute()
        return raw, bool(locked)

    def set(self, key: str, raw: bytes, ttl_s: float) -> None:
        with self._translated("storing a cache value"):
            self.client.set(key, raw, px=max(1, int(ttl_s * 1000)))

    put_value = set

    def acquire(self, lock_key: str, token: str, ttl_s: float) -> bool:
        with self._translated("taking a single-flight lock"):
            return bool(self.client.set(lock_key, token, nx=True, px=max(1, int(ttl_s * 1000))))

    def release(self, lock_key: str, token: str) -> None:
        with self._translated("releasing a single-flight lock"):
            self._script(_RELEASE, lock_key, token)

    def renew(self, lock_key: str, token: str, ttl_s: float) -> bool:
        """Extend the lock's TTL to ``ttl_s`` if ``token`` still holds it."""
        with self._translated("renewing a single-flight lock"):
            return bool(self._script(_RENEW, lock_key, token, max(1, int(ttl_s * 1000))))

    def _script(self, source: str, key: str, *args: Any) -> Any:
        script = self._scripts.get(source)
        if script is None:
            script = self._scripts[source] = self.client.register_script(source)
        return script(keys=[key], args=list(args), client=self.client)

    def delete_matching(self, pattern: str) -> int:
        """Delete keys matching ``pattern`` with SCAN (never KEYS), in batches."""
        removed = 0
        with self._translated("invalidating cache keys"):
            batch: list[bytes] = []
            for key in self.client.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) >= 500:
                    removed += int(self.client.unlink(*batch))
                    batch = []
            if batch:
                removed += int(self.client.unlink(*batch))
        return removed

    def values_matching(self, pattern: str) -> list[bytes]:
        with self._translated("reading cache statistics"):
            keys = list(self.client.scan_iter(match=pattern, count=1000))
            if not keys:
                return []
            values: list[Any] = self.client.mget(keys)
            return [value for value in values if isinstance(value, bytes)]

    def publish(self, channel: str, message: bytes) -> int:
        with self._translated("broadcasting a cache invalidation"):
            return int(self.client.publish(channel, message))

    def subscribe(self, channel: str) -> RedisSubscription:
        return RedisSubscription(self, channel)

    def sweep(self) -> int:
        """Nothing to do: Redis expires values by their TTL."""
        return 0

    def close(self) -> None:
        """Nothing to do: the pooled client belongs to the process."""

    def push_ack(self, key: str, ttl_s: float) -> None:
        with self._translated("acknowledging a cache invalidation"):
            pipe = self.client.pipeline(transaction=False)
            pipe.rpush(key, b"1")
            pipe.expire(key, max(1, int(ttl_s)))
            pipe.execute()

    def wait_acks(self, key: str, count: int, timeout_s: float) -> int:
        """Wait until ``count`` acknowledgements arrived on ``key`` or ``timeout_s`` passed."""
        deadline = time.monotonic() + timeout_s
        with self._translated("waiting for invalidation acknowledgements"):
            while True:
                got = int(self.client.llen(key))
                if got >= count or time.monotonic() >= deadline:
                    self.client.delete(key)
                    return got
                time.sleep(0.005)


class RedisSubscription:
    """A pub/sub subscription that reports a lost connection as BackendUnavailableError."""

    def __init__(self, backend: RedisBackend, channel: str) -> None:
        import redis

        self._backend = backend
        self._channel = channel
        with backend._translated("subscribing to cache invalidations"):
            # A connection of its own, without a read timeout: it waits for messages.
            self._client = redis.Redis.from_url(
                backend.url, socket_connect_timeout=backend._timeout_s, health_check_interval=10
            )
            self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
            self._pubsub.subscribe(channel)

    def poll(self, timeout_s: float) -> bytes | None:
        with self._backend._translated("listening for cache invalidations"):
            message = self._pubsub.get_message(timeout=timeout_s)
        if message is None or message.get("type") != "message":
            return None
        data = message.get("data")
        return data if isinstance(data, bytes) else None

    def close(self) -> None:
        try:
            self._pubsub.close()
            self._client.close()
        except _redis().RedisError:
            pass

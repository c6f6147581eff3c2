"""The in-memory L2: one process's stand-in for Redis (tests, the cache contract)."""

from __future__ import annotations

import fnmatch
import threading
import time

from workers.cache.backends import _Circuit


class MemoryBackend(_Circuit):
    """L2 in this process's memory: the Redis backend's contract, for tests and one process."""

    def __init__(self, retry_after_s: float = 1.0) -> None:
        super().__init__(retry_after_s)
        self._values: dict[str, tuple[bytes, float]] = {}
        self._lists: dict[str, int] = {}
        self._subscribers: dict[str, list[MemorySubscription]] = {}
        self._lock = threading.Lock()

    def _live(self, key: str) -> bytes | None:
        entry = self._values.get(key)
        if entry is None:
            return None
        if entry[1] <= time.monotonic():
            del self._values[key]
            return None
        return entry[0]

    def get(self, key: str) -> bytes | None:
        with self._lock:
            return self._live(key)

    def get_and_check_lock(self, key: str, lock_key: str) -> tuple[bytes | None, bool]:
        with self._lock:
            return self._live(key), self._live(lock_key) is not None

    def set(self, key: str, raw: bytes, ttl_s: float) -> None:
        with self._lock:
            self._values[key] = (raw, time.monotonic() + ttl_s)

    put_value = set

    def acquire(self, lock_key: str, token: str, ttl_s: float) -> bool:
        with self._lock:
            if self._live(lock_key) is not None:
                return False
            self._values[lock_key] = (token.encode(), time.monotonic() + ttl_s)
            return True

    def release(self, lock_key: str, token: str) -> None:
        with self._lock:
            if self._live(lock_key) == token.encode():
                del self._values[lock_key]

    def renew(self, lock_key: str, token: str, ttl_s: float) -> bool:
        with self._lock:
            if self._live(lock_key) != token.encode():
                return False
            self._values[lock_key] = (token.encode(), time.monotonic() + ttl_s)
            return True

    def delete_matching(self, pattern: str) -> int:
        with self._lock:
            doomed = [key for key in self._values if fnmatch.fnmatchcase(key, pattern)]
            for key in doomed:
                del self._values[key]
        return len(doomed)

    def values_matching(self, pattern: str) -> list[bytes]:
        with self._lock:
            keys = [key for key in self._values if fnmatch.fnmatchcase(key, pattern)]
            return [value for key in keys if (value := self._live(key)) is not None]

    def sweep(self) -> int:
        with self._lock:
            now = time.monotonic()
            doomed = [key for key, (_, expires_at) in self._values.items() if expires_at <= now]
            for key in doomed:
                del self._values[key]
        return len(doomed)

    def close(self) -> None:
        return None

    def publish(self, channel: str, message: bytes) -> int:
        with self._lock:
            subscribers = list(self._subscribers.get(channel, ()))
        for subscriber in subscribers:
            subscriber.deliver(message)
        return len(subscribers)

    def subscribe(self, channel: str) -> MemorySubscription:
        subscription = MemorySubscription(self, channel)
        with self._lock:
            self._subscribers.setdefault(channel, []).append(subscription)
        return subscription

    def unsubscribe(self, subscription: MemorySubscription) -> None:
        with self._lock:
            listeners = self._subscribers.get(subscription.channel, [])
            if subscription in listeners:
                listeners.remove(subscription)

    def push_ack(self, key: str, ttl_s: float) -> None:
        with self._lock:
            self._lists[key] = self._lists.get(key, 0) + 1

    def wait_acks(self, key: str, count: int, timeout_s: float) -> int:
        deadline = time.monotonic() + timeout_s
        while True:
            with self._lock:
                got = self._lists.get(key, 0)
                if got >= count or time.monotonic() >= deadline:
                    self._lists.pop(key, None)
                    return got
            time.sleep(0.002)


class MemorySubscription:
    def __init__(self, backend: MemoryBackend, channel: str) -> None:
        self._backend = backend
        self.channel = channel
        self._queue: list[bytes] = []
        self._ready = threading.Condition()

    def deliver(self, message: bytes) -> None:
        with self._ready:
            self._queue.append(message)
            self._ready.notify()

    def poll(self, timeout_s: float) -> bytes | None:
        with self._ready:
            if not self._queue:
                self._ready.wait(timeout_s)
            return self._queue.pop(0) if self._queue else None

    def close(self) -> None:
        self._backend.unsubscribe(self)

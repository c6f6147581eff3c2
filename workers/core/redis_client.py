"""Redis clients per process and URL; the one place redis exceptions become ours."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import redis

from workers.core.errors import BackendUnavailableError

_clients: dict[tuple[str, int], redis.Redis] = {}
_lock = threading.Lock()

T = TypeVar("T")

REDIS_ERRORS: tuple[type[BaseException], ...] = (redis.ConnectionError, redis.TimeoutError)


def redis_client(url: str, timeout_s: float = 2.0) -> redis.Redis:
    """A pooled client for ``url`` shared by the threads of this process.

    Socket timeouts are short so an unreachable Redis surfaces as an error, not a hang.
    """
    import os

    key = (url, os.getpid())
    with _lock:
        client = _clients.get(key)
        if client is None:
            client = redis.Redis.from_url(
                url,
                socket_timeout=timeout_s,
                socket_connect_timeout=timeout_s,
                health_check_interval=30,
                decode_responses=False,
            )
            _clients[key] = client
        return client


@contextmanager
def translated(what: str) -> Iterator[None]:
    """Translate redis connection errors into BackendUnavailableError."""
    try:
        yield
    except REDIS_ERRORS as exc:
        raise BackendUnavailableError(
            f"Redis is unreachable while {what}: {exc}; check VICTOR_REDIS_URL and that "
            "redis-server is running"
        ) from exc


def call(what: str, function: Callable[[], T]) -> T:
    """Run ``function`` with redis errors translated."""
    with translated(what):
        return function()

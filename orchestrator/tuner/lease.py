"""One acting tuner per fleet: a Redis lease taken with SET NX PX and renewed by its holder.

The value is the holder's token; renewing and releasing compare it first (one Lua call each),
so a tuner that stalled past its lease cannot extend or drop the lease another one now holds.
A second tuner keeps trying to take the lease and acts only once it has it.
"""

from __future__ import annotations

import os
import socket
import uuid
from typing import Any

from workers.core.redis_client import translated

_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


def holder_name() -> str:
    """``host:pid``: who holds a lease, as status shows it."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Lease:
    """A lease on ``key`` for ``ttl_ms``; ``acquire`` takes it or renews it if already held."""

    def __init__(self, client: Any, key: str, ttl_ms: int, holder: str | None = None) -> None:
        self.client = client
        self.key = key
        self.ttl_ms = int(ttl_ms)
        self.token = f"{holder or holder_name()}:{uuid.uuid4().hex[:12]}"
        self.held = False

    def acquire(self) -> bool:
        """Hold the lease for another ``ttl_ms``: renew it, or take it if free. True if held."""
        with translated("taking the tuner lease"):
            if self.held and self.client.eval(_RENEW, 1, self.key, self.token, self.ttl_ms):
                return True
            self.held = bool(self.client.set(self.key, self.token, nx=True, px=self.ttl_ms))
        return self.held

    def release(self) -> None:
        """Give the lease up now (only if this holder still has it)."""
        if self.held:
            with translated("releasing the tuner lease"):
                self.client.eval(_RELEASE, 1, self.key, self.token)
            self.held = False

    def holder(self) -> str | None:
        """The token of whoever holds the lease now."""
        with translated("reading the tuner lease"):
            value = self.client.get(self.key)
        return value.decode() if isinstance(value, bytes) else value

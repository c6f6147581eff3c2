"""Fleet-wide concurrency per provider: expiring slot leases in Redis, a semaphore embedded.

Distributed mode: the slots of a provider are a sorted set (holder -> lease expiry, in the
Redis server's clock). Taking a slot is one Lua call that first drops expired holders, then
adds this holder if fewer than ``<provider>_concurrent_requests`` remain. While the call runs
the holder renews its lease (the cache's lease renewer thread, every ``lease_s / 3``); a worker
killed mid-call stops renewing, so its slot frees within ``provider_slot_lease_s``.

A call that finds every slot taken registers as a waiter (a second sorted set, holder -> wait
lease expiry, refreshed on each poll) until it gets one: ``slot_usage`` reports slots in use,
the limit and the calls waiting, which is what the tuner reads to see a saturated provider.

Embedded mode: one process, so a semaphore per provider sized by the same setting.

Time spent waiting for a slot is reported as the task's queue wait, not its run time.
"""

from __future__ import annotations

import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from workers.cache.lease import lease_renewer
from workers.core.keys import Keys
from workers.core.redis_client import redis_client, translated
from workers.core.settings import Mode, Settings
from workers.providers.config import ProviderConfig, family_of
from workers.providers.errors import ProviderBusyError
from workers.telemetry.slot_wait import add_slot_wait

_NOW_MS = """
local now = redis.call('time')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
"""
# KEYS[1] slots, KEYS[2] waiters; ARGV: limit, lease ms, holder. 1 if taken; else the holder
# is (still) a waiter until its wait lease lapses.
_ACQUIRE = (
    _NOW_MS
    + """
redis.call('zremrangebyscore', KEYS[1], '-inf', ms)
redis.call('zremrangebyscore', KEYS[2], '-inf', ms)
if redis.call('zcard', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('zadd', KEYS[1], ms + tonumber(ARGV[2]), ARGV[3])
  redis.call('pexpire', KEYS[1], tonumber(ARGV[2]) * 2)
  redis.call('zrem', KEYS[2], ARGV[3])
  return 1
end
redis.call('zadd', KEYS[2], ms + tonumber(ARGV[2]), ARGV[3])
redis.call('pexpire', KEYS[2], tonumber(ARGV[2]) * 2)
return 0
"""
)
# KEYS[1] slots; ARGV: holder, lease ms. A lapsed lease is not brought back: its slot may be
# someone else's already.
_RENEW = (
    _NOW_MS
    + """
local expiry = redis.call('zscore', KEYS[1], ARGV[1])
if expiry and tonumber(expiry) > ms then
  redis.call('zadd', KEYS[1], 'XX', ms + tonumber(ARGV[2]), ARGV[1])
  redis.call('pexpire', KEYS[1], tonumber(ARGV[2]) * 2)
  return 1
end
return 0
"""
)
_IN_USE = (
    _NOW_MS
    + """
return redis.call('zcount', KEYS[1], '(' .. ms, '+inf')
"""
)
_FIRST_POLL_S = 0.002
_MAX_POLL_S = 0.05


class SlotLeases:
    """The Redis side of one provider's slots (also what the lease renewer renews)."""

    def __init__(self, client: Any, key: str, waiters_key: str | None = None) -> None:
        self.client = client
        self.key = key
        self.waiters_key = waiters_key or f"{key}:waiters"

    def take(self, holder: str, limit: int, lease_s: float) -> bool:
        """Take a slot for ``holder``; when none is free, count it as waiting for one."""
        keys = (self.key, self.waiters_key)
        with translated("taking a provider slot"):
            return bool(self.client.eval(_ACQUIRE, 2, *keys, limit, _ms(lease_s), holder))

    def stop_waiting(self, holder: str) -> None:
        """``holder`` gave up waiting (its wait limit passed)."""
        with translated("releasing a provider slot"):
            self.client.zrem(self.waiters_key, holder)

    def available(self) -> bool:
        return True

    def renew(self, lock_key: str, token: str, ttl_s: float) -> bool:
        with translated("renewing a provider slot"):
            return bool(self.client.eval(_RENEW, 1, lock_key, token, _ms(ttl_s)))

    def release(self, holder: str) -> None:
        with translated("releasing a provider slot"):
            self.client.zrem(self.key, holder)

    def in_use(self) -> int:
        with translated("counting provider slots"):
            return int(self.client.eval(_IN_USE, 1, self.key))

    def waiting(self) -> int:
        """Calls waiting for a slot now (waiters whose wait lease has not lapsed)."""
        with translated("counting provider slots"):
            return int(self.client.eval(_IN_USE, 1, self.waiters_key))


@dataclass(frozen=True)
class SlotUsage:
    """One provider's slots at one moment: in use, the fleet-wide limit, calls waiting."""

    provider: str
    in_use: int
    limit: int
    waiting: int

    @property
    def saturated(self) -> bool:
        """Every slot taken and calls waiting: more worker slots would only wait longer."""
        return self.in_use >= self.limit and self.waiting > 0


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def slot_leases(settings: Settings, provider: str) -> SlotLeases:
    """The fleet's slots of ``provider`` (distributed mode)."""
    keys = Keys(settings.key_prefix)
    return SlotLeases(
        redis_client(settings.state_url),
        keys.provider_slots(provider),
        keys.provider_waiters(provider),
    )


def slot_usage(settings: Settings) -> list[SlotUsage]:
    """The configured provider's slots across the fleet (distributed mode; else none).

    Needs no API key: it reads only the provider's name and its ``*_concurrent_requests``.
    """
    provider = settings.provider
    if provider == "none":
        return []
    family = family_of(provider)
    prefix = "local_provider" if family == "local" else family
    limit = int(getattr(settings, f"{prefix}_concurrent_requests"))
    if settings.mode is not Mode.DISTRIBUTED:  # this process's semaphore (embedded mode)
        with _semaphores_lock:
            in_use, waiting = _local_counts.get(provider, (0, 0))
        return [SlotUsage(provider, in_use, limit, waiting)]
    leases = slot_leases(settings, provider)
    return [SlotUsage(provider, leases.in_use(), limit, leases.waiting())]


@contextmanager
def provider_slot(settings: Settings, config: ProviderConfig) -> Iterator[float]:
    """Hold one of ``config``'s concurrent-request slots; yields the seconds waited for it."""
    wait_limit_s = float(settings.task_soft_time_limit_s)
    if settings.mode is Mode.DISTRIBUTED:
        with _fleet_slot(settings, config, wait_limit_s) as waited:
            yield waited
    else:
        with _local_slot(config, wait_limit_s) as waited:
            yield waited


def _busy(config: ProviderConfig, waited_s: float) -> ProviderBusyError:
    setting = config.setting("concurrent_requests")
    return ProviderBusyError(
        f"no {config.name} slot freed up in {waited_s:.1f} s ({setting}="
        f"{config.concurrent_requests} across the fleet); raise {setting} or send fewer calls"
    )


@contextmanager
def _fleet_slot(settings: Settings, config: ProviderConfig, wait_limit_s: float) -> Iterator[float]:
    leases = slot_leases(settings, config.name)
    lease_s = settings.provider_slot_lease_s
    holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
    started = time.monotonic()
    pause = _FIRST_POLL_S
    while not leases.take(holder, config.concurrent_requests, lease_s):
        waited = time.monotonic() - started
        if waited >= wait_limit_s:
            leases.stop_waiting(holder)
            raise _busy(config, waited)
        time.sleep(pause * (0.5 + random.random()))
        pause = min(pause * 2, _MAX_POLL_S)
    waited = time.monotonic() - started
    add_slot_wait(waited)
    renewer = lease_renewer()
    lease = renewer.hold(leases, leases.key, holder, lease_s)
    try:
        yield waited
    finally:
        renewer.drop(lease)
        leases.release(holder)


_semaphores: dict[str, tuple[int, threading.BoundedSemaphore]] = {}
_semaphores_lock = threading.Lock()
# provider -> (calls holding a slot, calls waiting for one) in this process, for slot_usage.
_local_counts: dict[str, tuple[int, int]] = {}


def _count(provider: str, in_use: int = 0, waiting: int = 0) -> None:
    with _semaphores_lock:
        held, queued = _local_counts.get(provider, (0, 0))
        _local_counts[provider] = (held + in_use, queued + waiting)


def _semaphore(config: ProviderConfig) -> threading.BoundedSemaphore:
    with _semaphores_lock:
        current = _semaphores.get(config.name)
        if current is None or current[0] != config.concurrent_requests:
            # A changed limit: new calls share a new semaphore; calls on the old one finish.
            limit = config.concurrent_requests
            current = _semaphores[config.name] = (limit, threading.BoundedSemaphore(limit))
        return current[1]


@contextmanager
def _local_slot(config: ProviderConfig, wait_limit_s: float) -> Iterator[float]:
    semaphore = _semaphore(config)
    started = time.monotonic()
    _count(config.name, waiting=1)
    try:
        acquired = semaphore.acquire(timeout=wait_limit_s)
    finally:
        _count(config.name, waiting=-1)
    if not acquired:
        raise _busy(config, time.monotonic() - started)
    waited = time.monotonic() - started
    add_slot_wait(waited)
    _count(config.name, in_use=1)
    try:
        yield waited
    finally:
        _count(config.name, in_use=-1)
        semaphore.release()


def _forget_after_fork() -> None:
    global _semaphores_lock
    _semaphores.clear()
    _local_counts.clear()
    _semaphores_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)

"""A named cache: L1 in this process, L2 shared in Redis, single-flight, stats."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

from workers.cache.backends import L2Backend
from workers.cache.envelope import Signer, encode, seal, unseal
from workers.cache.keying import current_tenant, digest, scoped_tenant
from workers.cache.lease import Lease, lease_renewer
from workers.cache.lru import MISSING, LRUStore
from workers.core.errors import BackendUnavailableError
from workers.core.keys import Keys

logger = logging.getLogger(__name__)

T = TypeVar("T")

RECENT_KEYS = 128  # recent_key's memo; emptied when full


@dataclass
class Counters:
    """What one cache (or one namespace of it) has seen in this process."""

    l1_hits: int = 0
    l1_misses: int = 0
    l2_hits: int = 0
    l2_misses: int = 0
    misses: int = 0
    computations: int = 0
    waits: int = 0
    wait_timeouts: int = 0
    bypassed: int = 0
    rejected: int = 0
    uncacheable: int = 0
    errors: int = 0
    degraded: int = 0

    def add(self, other: Counters) -> None:
        for item in fields(self):
            setattr(self, item.name, getattr(self, item.name) + getattr(other, item.name))

    def as_dict(self) -> dict[str, Any]:
        values: dict[str, Any] = {item.name: getattr(self, item.name) for item in fields(self)}
        return with_rates(values)


def with_rates(values: dict[str, Any]) -> dict[str, Any]:
    """Add ``hits``, ``hit_rate`` and ``miss_rate`` to summed counters."""
    hits = values.get("l1_hits", 0) + values.get("l2_hits", 0)
    lookups = hits + values.get("misses", 0)
    values["hits"] = hits
    values["hit_rate"] = round(hits / lookups, 4) if lookups else 0.0
    values["miss_rate"] = round(values.get("misses", 0) / lookups, 4) if lookups else 0.0
    return values


@dataclass
class CacheConfig:
    """Where a named cache reads its switches and bounds (live, from Settings)."""

    enabled: Callable[[], bool]
    max_entries: Callable[[], int]
    max_bytes: Callable[[], int]
    ttl_s: Callable[[], float]
    namespace_enabled: Callable[[str], bool] = field(default=lambda _name: True)
    # Applied to a value before it enters L1 (and returned instead of it): e.g. ``freeze``.
    compact: Callable[[Any], Any] | None = None


class NamedCache:
    """One of the named caches (tool_selection, response, embedding) on the L1+L2 mechanism."""

    def __init__(
        self,
        name: str,
        config: CacheConfig,
        keys: Keys,
        default_tenant: Callable[[], str],
        secret: bytes,
        l2: L2Backend | None,
        flight_timeout_s: Callable[[], float],
        generation: Callable[[], int] = lambda: 0,
        lease_s: Callable[[], float] = lambda: 3.0,
    ) -> None:
        self.name = name
        self.config = config
        self.keys = keys
        self._default_tenant = default_tenant
        self._signer = Signer(secret)
        self.l2 = l2
        self._flight_timeout_s = flight_timeout_s
        self._generation = generation
        self._lease_s = lease_s
        self.l1 = LRUStore(config.max_entries, config.max_bytes)
        self._counters: dict[str, Counters] = {}
        # One lock for L1 and the counters: a hit takes it once.
        self._lock = self.l1._lock
        self._entries = self.l1._data
        self._clock = self.l1._clock
        self._recent_keys: dict[tuple[Any, ...], str] = {}
        self._flights: dict[str, threading.Event] = {}
        self.changed = False  # stats changed since the last publication

    # --- keys --------------------------------------------------------------------------
    def key(self, skill: str, version: str, material: Any, tenant: str | None = None) -> str:
        """``prefix:tenant:cache:<name>:skill:version:sha256(canonical material)``."""
        tenant = tenant or current_tenant(self._default_tenant())
        return self.keys.cache(tenant, self.name, skill, version, digest(material))

    def recent_key(self, skill: str, version: str, parts: tuple[str, ...]) -> str:
        """``key(skill, version, list(parts))``, memoized for the last few hundred ``parts``.

        For callers that look the same inputs up again and again: deriving a key (canonical
        JSON, sha256) costs more than the L1 hit it leads to.
        """
        memo_key = (self.tenant(), skill, version, parts)
        key = self._recent_keys.get(memo_key)
        if key is None:
            key = self.key(skill, version, list(parts), tenant=memo_key[0])
            if len(self._recent_keys) >= RECENT_KEYS:
                self._recent_keys.clear()
            self._recent_keys[memo_key] = key
        return key

    def tenant(self) -> str:
        """The tenant lookups belong to now (``tenant_scope``, else the settings' tenant)."""
        return scoped_tenant() or self._default_tenant()

    def enabled(self, namespace: str | None = None) -> bool:
        config = self.config
        return config.enabled() and (namespace is None or config.namespace_enabled(namespace))

    # --- lookups -----------------------------------------------------------------------
    def _count(self, namespace: str | None) -> Counters:
        """The counters of ``namespace``; call with the lock held."""
        counters = self._counters.get(namespace or "") or self._new_counters(namespace)
        self.changed = True
        return counters

    def _new_counters(self, namespace: str | None) -> Counters:
        return self._counters.setdefault(namespace or "", Counters())

    def get(self, key: str, namespace: str | None = None) -> Any:
        """The cached value (L1, then L2) or ``MISSING``; counts the lookup."""
        # The L1 hit path, inlined: one lock, one dict lookup, no calls it can do without.
        with self._lock:
            entry = self._entries.get(key)
            counters = self._counters.get(namespace or "") or self._new_counters(namespace)
            self.changed = True
            if entry is not None:
                if entry[1] > self._clock():
                    self._entries.move_to_end(key)
                    counters.l1_hits += 1
                    return entry[0]
                self.l1._expire_locked(key, entry)
            counters.l1_misses += 1
        found = self._l2_get(key, namespace)
        with self._lock:
            if found is MISSING:
                counters.misses += 1
        return found

    def get_or_compute(self, key: str, compute: Callable[[], T], namespace: str | None = None) -> T:
        """The cached value for ``key``, else ``compute()`` once across the fleet, stored."""
        config = self.config
        if not (config.enabled() and (namespace is None or config.namespace_enabled(namespace))):
            with self._lock:
                self._count(namespace).bypassed += 1
            return compute()
        with self._lock:
            entry = self._entries.get(key)
            counters = self._counters.get(namespace or "") or self._new_counters(namespace)
            self.changed = True
            if entry is not None:
                if entry[1] > self._clock():
                    self._entries.move_to_end(key)
                    counters.l1_hits += 1
                    return entry[0]  # type: ignore[no-any-return]
                self.l1._expire_locked(key, entry)
            counters.l1_misses += 1
            event = self._flights.get(key)
            leader = event is None
            if leader:
                event = self._flights[key] = threading.Event()
        assert event is not None
        if not leader:
            # Another thread of this process computes this key: wait for it, then look again.
            with self._lock:
                counters.waits += 1
            event.wait(self._flight_timeout_s())
            value = self.l1.get(key)
            if value is not MISSING:
                with self._lock:
                    counters.l1_hits += 1
                return value  # type: ignore[no-any-return]
        try:
            return self._fill(key, compute, namespace, counters)
        finally:
            if leader:
                with self._lock:
                    self._flights.pop(key, None)
                event.set()

    def set(self, key: str, value: Any, namespace: str | None = None) -> bool:
        """Store ``value`` in L1 and L2; False when it is not JSON (then nothing is stored)."""
        return self._set(key, value, namespace) is not MISSING

    def _set(self, key: str, value: Any, namespace: str | None) -> Any:
        """Store ``value``; the value L1 holds now (compacted), or MISSING if it is not JSON."""
        try:
            data = encode(value)
        except (TypeError, ValueError):
            with self._lock:
                self._count(namespace).uncacheable += 1
            return MISSING
        compact = self.config.compact
        if compact is not None:
            value = compact(value)
        self._store(key, value, data, self.config.ttl_s(), namespace)
        return value

    def _fill(
        self, key: str, compute: Callable[[], T], namespace: str | None, counters: Counters
    ) -> T:
        generation = self._generation()
        token: str | None = None
        lease: Lease | None = None
        lock_key = self.keys.cache_lock(key)
        if self.l2 is not None and not self.l2.available():
            with self._lock:
                counters.degraded += 1  # served without L2: Redis is down (back-off)
        if self._l2_usable():
            found = self._l2_get(key, namespace)
            if found is not MISSING:
                return found  # type: ignore[no-any-return]
            # The lock is a short lease renewed while we compute: it dies with this process.
            token, lease_s = uuid.uuid4().hex, self._lease_s()
            acquired = self._l2_call(
                namespace,
                lambda: self.l2.acquire(lock_key, token, lease_s),  # type: ignore[union-attr,arg-type]
            )
            if acquired is True:
                lease = lease_renewer().hold(self.l2, lock_key, token, lease_s)  # type: ignore[arg-type]
            elif acquired is False:
                token = None
                found = self._await_l2(key, lock_key, namespace, counters)
                if found is not MISSING:
                    return found  # type: ignore[no-any-return]
            elif acquired is MISSING:
                token = None
        with self._lock:
            counters.misses += 1
            counters.computations += 1
        try:
            value = compute()
            if generation == self._generation():  # not invalidated while computing
                stored = self._set(key, value, namespace)
                if stored is not MISSING:
                    value = stored  # what later hits return: the same (compacted) value
        finally:
            if lease is not None:
                lease_renewer().drop(lease)
            if token is not None:
                self._l2_call(namespace, lambda: self.l2.release(lock_key, token))  # type: ignore[union-attr]
        return value

    def _await_l2(self, key: str, lock_key: str, namespace: str | None, counters: Counters) -> Any:
        """Another process holds the key's lock: poll for its value while the lock lives.

        The holder renews its lease while it computes; a dead holder's lock lapses within the
        lease, and then we compute. The timeout bounds the wait on a live but slow holder.
        """
        with self._lock:
            counters.waits += 1
        deadline = time.monotonic() + self._flight_timeout_s()
        pause = 0.002
        while time.monotonic() < deadline:
            time.sleep(pause)
            pause = min(pause * 2, 0.05)
            result = self._l2_call(
                namespace,
                lambda: self.l2.get_and_check_lock(key, lock_key),  # type: ignore[union-attr]
            )
            if result is MISSING:
                return MISSING
            raw, locked = result
            if raw is not None:
                value = self._accept(key, raw, namespace)
                if value is not MISSING:
                    with self._lock:
                        counters.l2_hits += 1
                    return value
            if not locked:
                return MISSING  # the computing process gave up; compute here
        with self._lock:
            counters.wait_timeouts += 1
        return MISSING

    # --- L2 ----------------------------------------------------------------------------
    def _l2_usable(self) -> bool:
        return self.l2 is not None and self.l2.available()

    def _l2_call(self, namespace: str | None, call: Callable[[], Any]) -> Any:
        if not self._l2_usable():
            return MISSING
        try:
            return call()
        except BackendUnavailableError as exc:
            with self._lock:
                self._count(namespace).errors += 1
            logger.warning("%s", exc)
            return MISSING

    def _l2_get(self, key: str, namespace: str | None) -> Any:
        if not self._l2_usable():
            return MISSING
        raw = self._l2_call(namespace, lambda: self.l2.get(key))  # type: ignore[union-attr]
        if raw is MISSING:
            return MISSING
        value = MISSING if raw is None else self._accept(key, raw, namespace)
        with self._lock:
            counters = self._count(namespace)
            if value is MISSING:
                counters.l2_misses += 1
            else:
                counters.l2_hits += 1
        return value

    def _accept(self, key: str, raw: bytes, namespace: str | None) -> Any:
        """Verify an L2 value and copy it into L1 with the expiry it already had."""
        unsealed = unseal(self._signer, key, raw)
        if unsealed is None:
            with self._lock:
                self._count(namespace).rejected += 1
            logger.warning("discarded a cache value that failed its HMAC check: %s", key)
            return MISSING
        remaining = unsealed.expires_at - time.time()
        if remaining <= 0:
            return MISSING
        data = unsealed.data
        size = len(key) + len(raw)
        if self.config.compact is not None:
            data, size = self.config.compact(data), self.config.compact(size)
        self.l1.put(key, data, size, remaining)
        return data

    def _store(
        self, key: str, value: Any, data: bytes, ttl_s: float, namespace: str | None
    ) -> None:
        size = len(key) + len(data) + 100
        if self.config.compact is not None:
            size = self.config.compact(size)  # one shared int per distinct size
        self.l1.put(key, value, size, ttl_s)
        if self._l2_usable():
            raw = seal(self._signer, key, data, time.time() + ttl_s)
            self._l2_call(namespace, lambda: self.l2.set(key, raw, ttl_s))  # type: ignore[union-attr]

    # --- maintenance -------------------------------------------------------------------
    def clear_expired(self) -> int:
        removed = self.l1.clear_expired()
        if removed:
            self.changed = True
        return removed

    def stats(self) -> dict[str, Any]:
        """This process's figures for this cache, and per namespace when it has some."""
        self.l1.fit()  # a lowered size bound shows in the figures at once
        total = Counters()
        with self._lock:
            namespaces = {label: Counters(**vars(c)) for label, c in self._counters.items()}
        for counters in namespaces.values():
            total.add(counters)
        result = total.as_dict()
        result.update(
            enabled=self.config.enabled(),
            current_size=len(self.l1),
            max_size=self.l1.max_entries,
            bytes=self.l1.bytes,
            max_bytes=self.l1.max_bytes,
            evictions=self.l1.evictions,
            expirations=self.l1.expirations,
            ttl_s=self.config.ttl_s(),
        )
        labelled = {label: c.as_dict() for label, c in namespaces.items() if label}
        if labelled:
            result["namespaces"] = labelled
        return result

"""The cache manager: the named caches of one process on one L2, their stats and invalidation."""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import socket
import threading
import time
import uuid
import weakref
from typing import Any

from workers.cache.backends import L2Backend, RedisBackend, Subscription
from workers.cache.coherence import ACK_WAIT_S, STATS_TTL_S, Coherence, maintain
from workers.cache.compact import freeze
from workers.cache.keying import check_tenant
from workers.cache.named import CacheConfig, Counters, NamedCache, with_rates
from workers.cache.sqlite import FILE_NAME, SCHEME, SqliteBackend, sqlite_path
from workers.core.errors import BackendUnavailableError, ConfigError
from workers.core.keys import Keys
from workers.core.settings import Mode, Settings

logger = logging.getLogger(__name__)

CACHE_NAMES = ("tool_selection", "response", "embedding")
TOOL_SELECTION_NAMESPACES = ("query", "context", "rl")

_SIZE_FIELDS = ("current_size", "max_size", "bytes", "max_bytes", "evictions", "expirations")


def _config(settings: Settings, name: str) -> CacheConfig:
    enabled, size, ttl = (f"{name}_cache_{suffix}" for suffix in ("enabled", "size", "ttl"))
    switches = {
        namespace: f"tool_selection_cache_{namespace}" for namespace in TOOL_SELECTION_NAMESPACES
    }

    def namespace_enabled(namespace: str) -> bool:
        switch = switches.get(namespace) if name == "tool_selection" else None
        return switch is None or bool(getattr(settings, switch))

    return CacheConfig(
        enabled=lambda: bool(getattr(settings, enabled)),
        max_entries=lambda: int(getattr(settings, size)),
        max_bytes=lambda: int(settings.cache_max_bytes),
        ttl_s=lambda: float(getattr(settings, ttl)),
        namespace_enabled=namespace_enabled,
        compact=freeze if name == "tool_selection" else None,
    )


def l2_url(settings: Settings) -> str | None:
    """Where the shared level lives: ``cache_url`` / ``redis_url``, else (embedded mode) a
    SQLite file in ``cache_dir``, else nowhere (L1 only)."""
    url = settings.effective_cache_url
    if url:
        return url
    if settings.mode is Mode.EMBEDDED and settings.cache_dir:
        return (
            f"{SCHEME}/{os.path.abspath(os.path.join(settings.cache_dir, FILE_NAME)).lstrip('/')}"
        )
    return None


def l2_backend(settings: Settings) -> L2Backend | None:
    """The L2 backend ``settings`` select (see ``l2_url``)."""
    url = l2_url(settings)
    if url is None:
        return None
    if url.startswith(SCHEME):
        sizes = {name: f"{name}_cache_size" for name in CACHE_NAMES}

        def row_cap(bucket: str) -> int | None:
            field = sizes.get(bucket)
            return None if field is None else int(getattr(settings, field))

        return SqliteBackend(sqlite_path(url), row_cap)
    return RedisBackend(url)


class CacheManager:
    """The three named caches of this process on one L2 (or none: L1 only)."""

    def __init__(self, settings: Settings, l2: L2Backend | str | None = "auto") -> None:
        self.settings = settings
        self.keys = Keys(settings.key_prefix)
        self._owns_l2 = l2 == "auto"
        if l2 == "auto":
            l2 = l2_backend(settings)
        assert not isinstance(l2, str)
        self.l2: L2Backend | None = l2
        self.pid = os.getpid()
        self.process_id = f"{socket.gethostname()}:{self.pid}:{uuid.uuid4().hex[:6]}"
        self.generation = 0
        secret = settings.cache_hmac_key.get_secret_value().encode()
        self.caches: dict[str, NamedCache] = {
            name: NamedCache(
                name,
                _config(settings, name),
                self.keys,
                lambda: settings.tenant,
                secret,
                l2,
                lambda: settings.cache_single_flight_timeout_s,
                lambda: self.generation,
                lambda: settings.cache_single_flight_lease_s,
            )
            for name in CACHE_NAMES
        }
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()
        self.closed = False
        self._start_lock = threading.Lock()
        self.invalidations_applied = 0
        self.coherence = Coherence(
            l2, self.keys, self.process_id, self.caches, self.apply_invalidation, self._closed
        )

    @property
    def tool_selection(self) -> NamedCache:
        return self.caches["tool_selection"]

    @property
    def response(self) -> NamedCache:
        return self.caches["response"]

    @property
    def embedding(self) -> NamedCache:
        return self.caches["embedding"]

    @property
    def listener_errors(self) -> int:
        """Failed subscribes and polls of the invalidation listener."""
        return self.coherence.errors

    @property
    def _subscription(self) -> Subscription | None:
        """The listener's subscription (None while cut off from the L2)."""
        return self.coherence.subscription

    def cache(self, name: str) -> NamedCache:
        try:
            return self.caches[name]
        except KeyError:
            raise ConfigError(
                f"no cache named {name!r}; known caches: {', '.join(CACHE_NAMES)}"
            ) from None

    def seed_from(self, other: CacheManager) -> int:
        """Start each L1 with ``other``'s live entries (settings that moved away from a shared
        manager keep their warm entries); returns how many were taken."""
        taken = 0
        for name, cache in self.caches.items():
            taken += cache.l1.copy_from(other.caches[name].l1)
            cache.changed = True
        return taken

    # --- lifecycle ---------------------------------------------------------------------
    def start(self) -> CacheManager:
        """Subscribe to invalidations (now, so no fill escapes them) and start maintenance."""
        with self._start_lock:
            if self._thread is not None:
                return self
            self.coherence.subscribe()
            thread = threading.Thread(
                target=maintain,
                args=(weakref.ref(self), self._closed),
                name=f"victor-cache-{self.keys.prefix}",
                daemon=True,
            )
            self._thread = thread
            thread.start()
        return self

    def close(self) -> None:
        """Stop the maintenance thread and publish the final stats."""
        self.closed = True
        self._closed.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(2)
        if self.active():  # a process that never used the cache is not one of the fleet's
            self.publish_stats()
        self.coherence.close()
        if self._owns_l2 and self.l2 is not None:
            self.l2.close()

    # --- invalidation ------------------------------------------------------------------
    def _match(self, cache_type: str | None, pattern: str, tenant: str | None) -> str:
        names = "*" if cache_type in (None, "all") else self.cache(cache_type).name
        tenant_part = "*" if tenant is None else check_tenant(tenant)
        return f"{self.keys.prefix}:{tenant_part}:cache:{names}:{pattern}"

    def apply_invalidation(self, caches: list[str], match: str) -> int:
        """Remove matching keys from this process's L1 (no Redis, no broadcast)."""
        self.generation += 1
        removed = 0
        for name in caches:
            cache = self.caches.get(name)
            if cache is not None:
                removed += cache.l1.delete_where(lambda key: fnmatch.fnmatchcase(key, match))
                cache.changed = True
        self.invalidations_applied += 1
        return removed

    def invalidate(
        self,
        cache_type: str | None = None,
        pattern: str = "*",
        tenant: str | None = None,
        wait_s: float = ACK_WAIT_S,
    ) -> dict[str, Any]:
        """Remove matching entries from L2 (SCAN) and from the L1 of every process.

        ``pattern`` is a glob over the part of the key after the cache name
        (``skill:version:digest``); ``cache_type`` None or "all" means every cache;
        ``tenant`` None means every tenant.
        """
        if not pattern:
            raise ConfigError("pattern must not be empty; use '*' to match every entry")
        caches = list(CACHE_NAMES) if cache_type in (None, "all") else [cache_type or ""]
        match = self._match(cache_type, pattern, tenant)
        result: dict[str, Any] = {
            "match": match,
            "l1_removed": self.apply_invalidation(caches, match),
            "l2_removed": 0,
            "processes_notified": 0,
            "processes_acknowledged": 0,
            "l2": "none" if self.l2 is None else "up",
        }
        if self.l2 is None:
            return result
        message = {
            "op": "invalidate",
            "id": uuid.uuid4().hex,
            "caches": caches,
            "match": match,
            "origin": self.process_id,
        }
        try:
            result["l2_removed"] = self.l2.delete_matching(match)
            result.update(self.coherence.broadcast(message, wait_s))
        except BackendUnavailableError as exc:
            result["l2"] = "down"
            result["error"] = str(exc)
        return result

    def clear_expired(self, broadcast: bool = True, wait_s: float = ACK_WAIT_S) -> dict[str, Any]:
        """Drop expired L1 entries here and (broadcast) in every process, and expired L2 rows
        (Redis expires its own by TTL; a SQLite file is swept and trimmed to the row caps)."""
        removed = sum(cache.clear_expired() for cache in self.caches.values())
        result: dict[str, Any] = {
            "l1_removed": removed,
            "l2_removed": self.sweep_l2(),
            "processes_notified": 0,
            "processes_acknowledged": 0,
        }
        if broadcast and self.l2 is not None:
            message = {"op": "clear_expired", "id": uuid.uuid4().hex, "origin": self.process_id}
            try:
                result.update(self.coherence.broadcast(message, wait_s))
            except BackendUnavailableError as exc:
                result["error"] = str(exc)
        return result

    def sweep_l2(self) -> int:
        """Expired (and over-cap) L2 rows removed now; 0 when L2 is down or expires by itself."""
        if self.l2 is None or not self.l2.available():
            return 0
        try:
            return self.l2.sweep()
        except BackendUnavailableError as exc:
            logger.warning("%s", exc)
            return 0

    def handle_message(self, raw: bytes) -> None:
        """Apply one broadcast from the channel, then acknowledge it."""
        self.coherence.handle_message(raw)

    # --- stats -------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """This process's figures per cache and in total."""
        caches = {name: cache.stats() for name, cache in self.caches.items()}
        total = _sum_caches(caches.values())
        total["errors"] += self.listener_errors  # failed Redis calls of any kind
        l2_state = "none"
        if self.l2 is not None:
            l2_state = "up" if self.l2.available() else "down"
        return {
            "scope": "process",
            "processes": 1,
            "process_id": self.process_id,
            "l2": l2_state,
            "listener_errors": self.listener_errors,
            **total,
            "caches": caches,
        }

    def publish_stats(self) -> bool:
        """Write this process's stats to Redis with a TTL (fleet figures read them)."""
        if self.l2 is None or not self.l2.available():
            return False
        changed = [cache for cache in self.caches.values() if cache.changed]
        for cache in changed:
            cache.changed = False
        payload = json.dumps({**self.stats(), "published_at": time.time()}).encode()
        try:
            self.l2.put_value(self.keys.cache_stats(self.process_id), payload, STATS_TTL_S)
        except BackendUnavailableError:
            for cache in changed:
                cache.changed = True  # publish again once Redis is back
            return False
        return True

    def active(self, local: dict[str, Any] | None = None) -> bool:
        """Whether this process used its caches (its figures belong in the fleet's)."""
        local = local or self.stats()
        return bool(local["hits"] + local["misses"] + local["bypassed"] + local["current_size"])

    def fleet_stats(self) -> dict[str, Any]:
        """Figures summed over every live process that publishes to this Redis and prefix."""
        local = self.stats()
        if self.l2 is None:
            return local
        active = self.active(local)
        if active:
            self.publish_stats()
        try:
            raws = self.l2.values_matching(self.keys.cache_stats_pattern())
        except BackendUnavailableError as exc:
            return {**local, "fleet_error": str(exc)}
        reports = []
        for raw in raws:
            try:
                reports.append(json.loads(raw))
            except ValueError:
                continue
        if active and not any(report.get("process_id") == self.process_id for report in reports):
            reports.append(local)
        # A cold fleet (no process has used a cache yet) shows this process's bounds and zero
        # counts, not a max_size of 0; it still counts no process.
        summed = reports or [local]
        caches: dict[str, dict[str, Any]] = {}
        for name in CACHE_NAMES:
            caches[name] = _sum_caches(
                [report["caches"][name] for report in summed if name in report.get("caches", {})]
            )
            for report in summed:
                if "namespaces" in report.get("caches", {}).get(name, {}):
                    spaces = caches[name].setdefault("namespaces", {})
                    for label, values in report["caches"][name]["namespaces"].items():
                        spaces[label] = _sum_caches([spaces.get(label, {}), values])
        total = _sum_caches(caches.values())
        total["errors"] = sum(int(report.get("errors", 0)) for report in summed)
        return {
            "scope": "fleet",
            "processes": len(reports),
            "l2": local["l2"],
            **total,
            "caches": caches,
            "process": {
                key: local[key]
                for key in ("process_id", "hits", "misses", "hit_rate", "current_size")
            },
        }


def _sum_caches(reports: Any) -> dict[str, Any]:
    summed: dict[str, Any] = {}
    numeric = [*Counters.__dataclass_fields__, *_SIZE_FIELDS]
    for report in reports:
        for name in numeric:
            summed[name] = summed.get(name, 0) + int(report.get(name, 0) or 0)
    for name in numeric:
        summed.setdefault(name, 0)
    return with_rates(summed)

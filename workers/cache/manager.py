"""The cache manager: the named caches of one process, kept coherent across the fleet.

One maintenance thread per manager listens for invalidations on ``Keys.cache_channel()``
(pub/sub), applies them to this process's L1 and acknowledges them, publishes this process's
stats to Redis (with a TTL) so fleet-wide figures include every process, and, with
``cache_auto_invalidate``, sweeps expired L1 entries every ``cache_auto_invalidate_interval``.
"""

from __future__ import annotations

import atexit
import fnmatch
import hashlib
import json
import logging
import os
import socket
import threading
import time
import uuid
import weakref
from collections import OrderedDict
from typing import Any

from workers.cache.backends import L2Backend, MemoryBackend, RedisBackend, Subscription
from workers.cache.compact import freeze
from workers.cache.keying import check_tenant
from workers.cache.named import CacheConfig, Counters, NamedCache, with_rates
from workers.cache.sqlite import FILE_NAME, SCHEME, SqliteBackend, sqlite_path
from workers.errors import BackendUnavailableError, ConfigError
from workers.keys import Keys
from workers.settings import Mode, Settings

logger = logging.getLogger(__name__)

CACHE_NAMES = ("tool_selection", "response", "embedding")
TOOL_SELECTION_NAMESPACES = ("query", "context", "rl")
STATS_INTERVAL_S = 1.0
STATS_TTL_S = 30
ACK_WAIT_S = 2.0

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
            )
            for name in CACHE_NAMES
        }
        self._subscription: Subscription | None = None
        self._resubscribed = False
        self._subscribed_once_ok = True  # False while subscribing keeps failing
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()
        self.closed = False
        self._start_lock = threading.Lock()
        self.listener_errors = 0
        self.invalidations_applied = 0

    @property
    def tool_selection(self) -> NamedCache:
        return self.caches["tool_selection"]

    @property
    def response(self) -> NamedCache:
        return self.caches["response"]

    @property
    def embedding(self) -> NamedCache:
        return self.caches["embedding"]

    def cache(self, name: str) -> NamedCache:
        try:
            return self.caches[name]
        except KeyError:
            raise ConfigError(
                f"no cache named {name!r}; known caches: {', '.join(CACHE_NAMES)}"
            ) from None

    # --- lifecycle ---------------------------------------------------------------------
    def start(self) -> CacheManager:
        """Subscribe to invalidations (now, so no fill escapes them) and start maintenance."""
        with self._start_lock:
            if self._thread is not None:
                return self
            self._subscribe()
            thread = threading.Thread(
                target=_maintain,
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
        self.publish_stats()
        if self._subscription is not None:
            self._subscription.close()
            self._subscription = None
        if self._owns_l2 and self.l2 is not None:
            self.l2.close()

    def _subscribe(self) -> bool:
        if self.l2 is None or self._subscription is not None:
            return self._subscription is not None
        try:
            self._subscription = self.l2.subscribe(self.keys.cache_channel())
        except BackendUnavailableError as exc:
            self.listener_errors += 1
            # Once per outage: the listener retries every back-off until the L2 returns.
            log = logger.warning if self._subscribed_once_ok else logger.debug
            self._subscribed_once_ok = False
            log("%s", exc)
            return False
        self._subscribed_once_ok = True
        if self._resubscribed:
            # Invalidations sent while we were cut off are lost: drop what L1 may hold stale.
            for cache in self.caches.values():
                cache.l1.clear()
        self._resubscribed = True
        return True

    def _listen_once(self, timeout_s: float) -> None:
        if self.l2 is None:
            self._closed.wait(timeout_s)
            return
        if self._subscription is None and not self._subscribe():
            self._closed.wait(min(timeout_s, self.l2.retry_after_s))
            return
        assert self._subscription is not None
        try:
            message = self._subscription.poll(timeout_s)
        except BackendUnavailableError as exc:
            self.listener_errors += 1
            logger.warning("%s", exc)
            self._subscription.close()
            self._subscription = None
            self._closed.wait(min(timeout_s, self.l2.retry_after_s))
            return
        if message is not None:
            self.handle_message(message)

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
            result.update(self._broadcast(message, wait_s))
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
                result.update(self._broadcast(message, wait_s))
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

    def _broadcast(self, message: dict[str, Any], wait_s: float) -> dict[str, int]:
        assert self.l2 is not None
        notified = self.l2.publish(self.keys.cache_channel(), json.dumps(message).encode())
        if self._subscription is not None:
            notified = max(0, notified - 1)  # this process applied it already, and stays quiet
        acknowledged = 0
        if notified and wait_s > 0:
            acknowledged = self.l2.wait_acks(self.keys.cache_ack(message["id"]), notified, wait_s)
        return {"processes_notified": notified, "processes_acknowledged": acknowledged}

    def handle_message(self, raw: bytes) -> None:
        """Apply one broadcast from the channel, then acknowledge it."""
        try:
            message = json.loads(raw)
            op = message["op"]
            ident = str(message["id"])
        except (ValueError, KeyError, TypeError):
            logger.warning("ignored a malformed cache broadcast: %r", raw[:200])
            return
        if message.get("origin") == self.process_id:
            return
        if op == "invalidate":
            caches = [str(name) for name in message.get("caches", [])]
            match = str(message.get("match", ""))
            if match.startswith(f"{self.keys.prefix}:"):
                self.apply_invalidation(caches, match)
        elif op == "clear_expired":
            for cache in self.caches.values():
                cache.clear_expired()
        if self.l2 is not None:
            try:
                self.l2.push_ack(self.keys.cache_ack(ident), STATS_TTL_S)
            except BackendUnavailableError as exc:
                logger.warning("%s", exc)

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

    def fleet_stats(self) -> dict[str, Any]:
        """Figures summed over every live process that publishes to this Redis and prefix."""
        local = self.stats()
        if self.l2 is None:
            return local
        active = local["hits"] + local["misses"] + local["bypassed"] + local["current_size"]
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
        caches: dict[str, dict[str, Any]] = {}
        for name in CACHE_NAMES:
            caches[name] = _sum_caches(
                [report["caches"][name] for report in reports if name in report.get("caches", {})]
            )
            for report in reports:
                if "namespaces" in report.get("caches", {}).get(name, {}):
                    spaces = caches[name].setdefault("namespaces", {})
                    for label, values in report["caches"][name]["namespaces"].items():
                        spaces[label] = _sum_caches([spaces.get(label, {}), values])
        total = _sum_caches(caches.values())
        total["errors"] = sum(int(report.get("errors", 0)) for report in reports)
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


def _maintain(ref: weakref.ReferenceType[CacheManager], closed: threading.Event) -> None:
    """The maintenance loop; ends when the manager is closed or collected."""
    next_sweep = 0.0
    next_stats = 0.0
    while not closed.is_set():
        manager = ref()
        if manager is None:
            return
        try:
            manager._listen_once(0.2)
            now = time.monotonic()
            settings = manager.settings
            if settings.cache_auto_invalidate:
                if next_sweep == 0.0:
                    next_sweep = now + settings.cache_auto_invalidate_interval
                elif now >= next_sweep:
                    for cache in manager.caches.values():
                        cache.clear_expired()
                    manager.sweep_l2()
                    next_sweep = now + settings.cache_auto_invalidate_interval
            if now >= next_stats and any(c.changed for c in manager.caches.values()):
                manager.publish_stats()
                next_stats = now + STATS_INTERVAL_S
        except Exception:  # the loop must outlive any one bad tick
            logger.exception("cache maintenance tick failed")
            closed.wait(1.0)
        finally:
            del manager


MAX_MANAGERS = 16
_managers: OrderedDict[tuple[int, str], CacheManager] = OrderedDict()
_managers_lock = threading.Lock()


def settings_fingerprint(settings: Settings) -> str:
    """Equal settings (secrets included) give equal fingerprints."""
    values = settings.model_dump(mode="json")
    values["cache_hmac_key"] = settings.cache_hmac_key.get_secret_value()
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()


def cache_manager(settings: Settings) -> CacheManager:
    """This process's started manager for these settings: equal settings share one.

    So two sessions of one process (two analyses in a row) share the L1. A process that forks
    gets its own. At most ``MAX_MANAGERS`` are kept; the oldest is closed beyond that.
    """
    key = (os.getpid(), settings_fingerprint(settings))
    evicted: list[CacheManager] = []
    with _managers_lock:
        manager = _managers.get(key)
        if manager is None or manager.closed:
            manager = CacheManager(settings)
            _managers[key] = manager
        _managers.move_to_end(key)
        while len(_managers) > MAX_MANAGERS:
            evicted.append(_managers.popitem(last=False)[1])
    for old in evicted:
        old.close()
    return manager.start()


@atexit.register
def _close_file_backed_managers() -> None:
    """Publish the final stats of managers on a SQLite L2 (a short CLI run's figures stay
    readable by ``victor cache stats`` for a while) and close their files."""
    with _managers_lock:
        mine = [m for (pid, _), m in _managers.items() if pid == os.getpid() and not m.closed]
    for manager in mine:
        if isinstance(manager.l2, SqliteBackend):
            manager.close()


def memory_manager(settings: Settings, backend: MemoryBackend | None = None) -> CacheManager:
    """A manager on an in-memory L2 (tests and single-process tools)."""
    return CacheManager(settings, backend or MemoryBackend()).start()


def latest_manager() -> CacheManager | None:
    """The manager most recently asked for in this process, if any."""
    with _managers_lock:
        for (pid, _), manager in reversed(_managers.items()):
            if pid == os.getpid() and not manager.closed:
                return manager
    return None

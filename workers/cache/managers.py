"""The per-process registry of cache managers: equal settings share one started manager.

A manager reads its bounds, TTLs and switches from its settings object at each use, so an
assignment on that object (``settings.tool_selection_cache_size *= 2``) retunes the live
manager: the same manager, warm L1 and all, answers for the object afterwards. Only what a
manager fixes when it is built (where L2 lives, the key prefix, the HMAC key) makes a new one.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import threading
from collections import OrderedDict

from workers.cache.manager import CacheManager
from workers.cache.memory import MemoryBackend
from workers.cache.sqlite import SqliteBackend
from workers.core.settings import Settings

MAX_MANAGERS = 16
# The settings a manager fixes when it is built; it reads every other one live.
STRUCTURAL_FIELDS = (
    "redis_url",
    "broker_url",
    "cache_url",
    "cache_dir",
    "key_prefix",
    "cache_hmac_key",
)
# (pid, structural fingerprint, id of the manager's settings object) -> manager
_managers: OrderedDict[tuple[int, str, int], CacheManager] = OrderedDict()
_managers_lock = threading.Lock()


def _digest(values: dict[str, object]) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()


def settings_fingerprint(settings: Settings) -> str:
    """Equal settings (secrets included) give equal fingerprints."""
    values = settings.model_dump(mode="json")
    values["cache_hmac_key"] = settings.cache_hmac_key.get_secret_value()
    return _digest(values)


def structural_fingerprint(settings: Settings) -> str:
    """Equal for settings a manager cannot tell apart once built (``STRUCTURAL_FIELDS``)."""
    values: dict[str, object] = {name: getattr(settings, name) for name in STRUCTURAL_FIELDS}
    values["cache_hmac_key"] = settings.cache_hmac_key.get_secret_value()
    return _digest(values)


def cache_manager(settings: Settings) -> CacheManager:
    """This process's started manager for these settings: equal settings share one.

    So two sessions of one process (two analyses in a row) share the L1. The manager built on
    this very object keeps answering for it after assignments to its bounds, TTLs or switches
    (it reads them live). A process that forks gets its own. At most ``MAX_MANAGERS`` are
    kept; the oldest is closed beyond that.
    """
    pid, structure = os.getpid(), structural_fingerprint(settings)
    evicted: list[CacheManager] = []
    with _managers_lock:
        key = (pid, structure, id(settings))
        shared = manager = _managers.get(key)
        if manager is None or manager.closed or manager.settings is not settings:
            manager = _equal_manager(pid, structure, settings)
        if manager is None:
            manager = CacheManager(settings)
            if shared is not None and not shared.closed:
                # This object shared another's manager and its values have moved away from
                # it: keep its warm entries.
                manager.seed_from(shared)
        _managers[key] = manager
        _managers.move_to_end(key)
        while len(_managers) > MAX_MANAGERS:
            old = _managers.popitem(last=False)[1]
            if old not in _managers.values():
                evicted.append(old)
    for old in evicted:
        old.close()
    return manager.start()


def _equal_manager(pid: int, structure: str, settings: Settings) -> CacheManager | None:
    """A live manager of this process whose settings equal ``settings`` now (lock held)."""
    wanted: str | None = None
    for (owner, shape, _), manager in reversed(_managers.items()):
        if owner != pid or shape != structure or manager.closed:
            continue
        wanted = wanted or settings_fingerprint(settings)
        if settings_fingerprint(manager.settings) == wanted:
            return manager
    return None


@atexit.register
def _close_file_backed_managers() -> None:
    """Publish the final stats of managers on a SQLite L2 (a short CLI run's figures stay
    readable by ``victor cache stats`` for a while) and close their files."""
    with _managers_lock:
        mine = {m for (pid, _, _), m in _managers.items() if pid == os.getpid() and not m.closed}
    for manager in mine:
        if isinstance(manager.l2, SqliteBackend):
            manager.close()


def memory_manager(settings: Settings, backend: MemoryBackend | None = None) -> CacheManager:
    """A manager on an in-memory L2 (tests and single-process tools)."""
    return CacheManager(settings, backend or MemoryBackend()).start()


def latest_manager() -> CacheManager | None:
    """The manager most recently asked for in this process, if any."""
    with _managers_lock:
        for (pid, _, _), manager in reversed(_managers.items()):
            if pid == os.getpid() and not manager.closed:
                return manager
    return None

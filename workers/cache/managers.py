"""The per-process registry of cache managers: equal settings share one started manager."""

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

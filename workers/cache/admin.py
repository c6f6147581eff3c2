"""The guide's cache calls: ``get_cache_stats``, ``invalidate_cache``, ``clear_expired_cache``."""

from __future__ import annotations

from typing import Any

from workers.cache.manager import CacheManager
from workers.cache.managers import cache_manager, latest_manager
from workers.core.settings import Settings, load_settings


def _manager(settings: Settings | None) -> CacheManager:
    if settings is None:
        manager = latest_manager()
        if manager is not None:
            return manager
        settings = load_settings()
    return cache_manager(settings)


def get_cache_stats(settings: Settings | None = None, *, fleet: bool = True) -> dict[str, Any]:
    """Hit/miss figures (split L1/L2), rates, sizes, evictions and bytes, per cache and total.

    ``fleet`` sums every process publishing to the same Redis and key prefix; in embedded mode
    (no Redis) the figures are this process's.
    """
    manager = _manager(settings)
    return manager.fleet_stats() if fleet else manager.stats()


def invalidate_cache(
    cache_type: str | None = None,
    pattern: str = "*",
    *,
    tenant: str | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Remove matching entries from L2 and from the L1 of every process of the fleet.

    ``cache_type``: tool_selection, response, embedding, or None/"all"; ``pattern``: a glob
    over ``skill:version:digest`` (for example ``"*auth*"``); ``tenant``: None for all.
    """
    return _manager(settings).invalidate(cache_type, pattern, tenant)


def clear_expired_cache(settings: Settings | None = None) -> dict[str, Any]:
    """Drop expired entries from the L1 of every process now (L2 entries expire by TTL)."""
    return _manager(settings).clear_expired()

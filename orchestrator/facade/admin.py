"""The facade's cache, metrics and memory calls: synchronous here, awaited on the facade.

``Orchestrator.sync`` is an ``AdminCalls``: the same functions the CLI and the API call
(``workers.cache``, ``workers.telemetry.fleet``, ``workers.maintenance.episodes``), bound to the
orchestrator's settings object, read at each call. The facade awaits them in a thread, so
Redis round trips and invalidation acknowledgements never block the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from workers.core.settings import Settings

if TYPE_CHECKING:
    from workers.maintenance.episodes import EpisodicMemory


class AdminCalls:
    """``orchestrator.sync``: the guide's cache, metrics and memory calls, not awaited."""

    def __init__(
        self, settings: Callable[[], Settings], load_component: Callable[[str], None]
    ) -> None:
        self._settings = settings
        self._load_component = load_component

    @property
    def settings(self) -> Settings:
        return self._settings()

    def get_cache_stats(self) -> dict[str, Any]:
        """Hits, misses, ``hit_rate``, ``miss_rate``, ``current_size``, ``max_size``,
        ``evictions`` and more, summed over the fleet, with each cache under ``caches``."""
        from workers.cache import get_cache_stats

        return get_cache_stats(self.settings)

    def invalidate_cache(self, cache_type: str | None = None, pattern: str = "*") -> dict[str, Any]:
        """Remove the entries matching ``pattern`` (a glob) from one cache (None: all)."""
        from workers.cache import invalidate_cache

        return invalidate_cache(cache_type, pattern, settings=self.settings)

    def clear_expired_cache(self) -> dict[str, Any]:
        """Drop expired entries now, here and in every process of the fleet."""
        from workers.cache import clear_expired_cache

        return clear_expired_cache(self.settings)

    def get_metrics(self) -> dict[str, Any]:
        """Fleet figures: ``avg_latency`` (ms), ``error_rate`` (a fraction), ``memory_usage``
        (MB, the largest process), ``throughput``, percentiles, per skill and per worker."""
        from workers.telemetry.fleet import get_metrics

        return get_metrics(self.settings)

    def consolidate_memories(self) -> dict[str, Any]:
        """Turn finished jobs (episodes) into per-skill facts."""
        from workers.maintenance.episodes import consolidate_memories

        self._load_component("memory")
        return consolidate_memories(self.settings)

    def episodic_memory(self) -> EpisodicMemory:
        """The job history of these settings (this process's, or the fleet's in Redis)."""
        from workers.maintenance.episodes import memories_for

        self._load_component("memory")
        return memories_for(self.settings)[0]


class EpisodicMemoryCalls:
    """``orchestrator.episodic_memory``: the job history, awaited."""

    def __init__(self, calls: AdminCalls) -> None:
        self._calls = calls

    async def clear_old_episodes(self, days: float = 30) -> int:
        """Drop episodes that finished more than ``days`` ago; return how many."""
        memory = self._calls.episodic_memory()
        return await asyncio.to_thread(memory.clear_old_episodes, days)

    async def episodes(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Episodes, newest first."""
        memory = self._calls.episodic_memory()
        return await asyncio.to_thread(memory.episodes, limit)

    async def count(self) -> int:
        memory = self._calls.episodic_memory()
        return await asyncio.to_thread(memory.count)

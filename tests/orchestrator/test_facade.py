"""The facade's cache, metrics and memory calls reach the functions that own them.

They are coroutines, as the guide awaits them; ``orchestrator.sync`` holds the same calls
without an event loop.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

from orchestrator.facade import Orchestrator
from workers.cache import cache_manager
from workers.cache.lru import MISSING
from workers.core.settings import Settings


def _orchestrator(embedded_settings: Callable[..., Settings]) -> Orchestrator:
    # No cache file (L1 only) and a prefix of its own: nothing shared with other tests.
    settings = embedded_settings(cache_dir="", key_prefix=f"facade{uuid.uuid4().hex[:8]}")
    return Orchestrator(settings=settings)


def test_invalidate_cache_removes_the_matching_entries_only(
    embedded_settings: Callable[..., Settings],
) -> None:
    orchestrator = _orchestrator(embedded_settings)
    cache = cache_manager(orchestrator.settings).response
    auth = cache.key("auth_check", "1", {"user": "a"})
    other = cache.key("word_count", "1", {"path": "b"})
    cache.set(auth, {"ok": True})
    cache.set(other, {"words": 3})

    result: dict[str, Any] = asyncio.run(
        orchestrator.invalidate_cache(cache_type="response", pattern="*auth*")
    )

    assert result["l1_removed"] == 1
    assert cache.get(auth) is MISSING
    assert cache.get(other) == {"words": 3}


def test_clear_expired_cache_reports_what_it_removed(
    embedded_settings: Callable[..., Settings],
) -> None:
    result = asyncio.run(_orchestrator(embedded_settings).clear_expired_cache())
    assert result["l1_removed"] == 0 and "l2_removed" in result


def test_get_metrics_has_the_guides_figures(embedded_settings: Callable[..., Settings]) -> None:
    metrics = asyncio.run(_orchestrator(embedded_settings).get_metrics())
    assert metrics["mode"] == "embedded"
    assert {"avg_latency", "error_rate", "throughput"} <= set(metrics)
    assert isinstance(metrics["memory_usage"], float)  # MB, the largest process


def test_cache_stats_and_memories_answer_in_embedded_mode(
    embedded_settings: Callable[..., Settings],
) -> None:
    orchestrator = _orchestrator(embedded_settings)
    assert "l1_hits" in asyncio.run(orchestrator.get_cache_stats())
    assert asyncio.run(orchestrator.consolidate_memories())["episodes"] == 0
    assert orchestrator.sync.consolidate_memories()["episodes"] == 0  # the same, not awaited

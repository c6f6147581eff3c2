"""The beat schedule (``victor beat`` / ``celery -A workers beat``): the guide's periodic clean-up.

Alert checks every ``monitor_interval_s``, memory consolidation every
``memory_consolidate_interval_s``, episodes older than ``episodic_memory_retention_days``
dropped hourly, and expired cache entries cleared every ``cache_auto_invalidate_interval`` when
the cache module is installed and ``cache_auto_invalidate`` is on. Intervals are plain seconds,
so the schedule is JSON-friendly; beat keeps it in memory (no shelve file).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from typing import Any

from celery import Celery

from workers.memory import CLEAR_EPISODES_TASK, CONSOLIDATE_TASK
from workers.monitoring import MONITOR_TASK
from workers.settings import Settings

CACHE_EXPIRY_TASK = "victor.cache.clear_expired"


def _cache_clear() -> Any:
    if importlib.util.find_spec("workers.cache") is None:
        return None
    return getattr(importlib.import_module("workers.cache"), "clear_expired_cache", None)


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """Entry name -> ``{"task", "schedule" (seconds), "kwargs"}``."""
    schedule: dict[str, dict[str, Any]] = {
        "victor-monitor": {
            "task": MONITOR_TASK,
            "schedule": float(settings.monitor_interval_s),
        },
        "victor-consolidate-memories": {
            "task": CONSOLIDATE_TASK,
            "schedule": float(settings.memory_consolidate_interval_s),
        },
        "victor-clear-old-episodes": {
            "task": CLEAR_EPISODES_TASK,
            "schedule": 3600.0,
            "kwargs": {"days": settings.episodic_memory_retention_days},
        },
    }
    if settings.cache_auto_invalidate and importlib.util.find_spec("workers.cache") is not None:
        schedule["victor-clear-expired-cache"] = {
            "task": CACHE_EXPIRY_TASK,
            "schedule": float(settings.cache_auto_invalidate_interval),
        }
    return schedule


def register_cache_task(app: Celery) -> None:
    """Register the cache expiry task when the cache module offers ``clear_expired_cache``."""
    if importlib.util.find_spec("workers.cache") is None:
        return
    settings: Settings = app.victor.settings

    @app.task(name=CACHE_EXPIRY_TASK, shared=False, ignore_result=True)  # type: ignore[untyped-decorator]
    def clear_expired() -> Any:
        """Drop expired cache entries."""
        function = _cache_clear()
        if function is None:
            return 0
        required = [
            parameter
            for parameter in inspect.signature(function).parameters.values()
            if parameter.default is inspect.Parameter.empty
            and parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD)
        ]
        return function(settings) if required else function()

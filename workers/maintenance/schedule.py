"""The beat schedule (``victor beat`` / ``celery -A workers beat``): the guide's periodic clean-up.

Alert checks every ``monitor_interval_s``, memory consolidation every
``memory_consolidate_interval_s``, episodes older than ``episodic_memory_retention_days``
dropped hourly, and expired cache entries cleared every ``cache_auto_invalidate_interval`` when
``cache_auto_invalidate`` is on. Intervals are plain seconds, so the schedule is JSON-friendly;
beat keeps it in memory (no shelve file).
"""

from __future__ import annotations

from typing import Any

from workers.core.names import (
    CACHE_EXPIRY_TASK,
    CLEAR_EPISODES_TASK,
    CONSOLIDATE_TASK,
    MONITOR_TASK,
)
from workers.core.settings import Settings


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
    if settings.cache_auto_invalidate:
        schedule["victor-clear-expired-cache"] = {
            "task": CACHE_EXPIRY_TASK,
            "schedule": float(settings.cache_auto_invalidate_interval),
        }
    return schedule

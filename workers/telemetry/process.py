"""This process's memory: current RSS, the limit and its warning, prefork child recycling.

``memory_limit_mb`` and ``memory_warning_threshold`` apply to every worker process. A process
above ``threshold * limit`` logs one warning per crossing. A prefork child that *ends a task*
above the limit is recycled: Celery's ``worker_max_memory_per_child`` makes billiard check after
each task and exit the child cleanly once its result is sent (no task is lost or run twice), but
billiard measures the *peak* RSS (``ru_maxrss``), so one spike recycles a child forever after.
``use_current_rss_for_recycling`` makes that check read the current RSS.
"""

from __future__ import annotations

import logging
import os

from workers.core.settings import Settings

logger = logging.getLogger(__name__)

PROCESS_TTL_S = 30  # a process's sample expires this long after its last flush

_page_kb = os.sysconf("SC_PAGE_SIZE") // 1024 if hasattr(os, "sysconf") else 4
_statm: tuple[int, int] | None = None  # (pid, fd)


def current_rss_kb() -> int:
    """This process's current RSS in KiB (reads /proc/self/statm; psutil elsewhere)."""
    global _statm
    pid = os.getpid()
    try:
        if _statm is None or _statm[0] != pid:
            _statm = (pid, os.open(f"/proc/{pid}/statm", os.O_RDONLY))
        return int(os.pread(_statm[1], 128, 0).split()[1]) * _page_kb
    except OSError:
        import psutil

        return int(psutil.Process().memory_info().rss // 1024)


_warned: dict[int, bool] = {}


def memory_state(rss_mb: float, limit_mb: float, warning_threshold: float) -> str:
    """``ok``, ``warning`` (at or above threshold * limit) or ``over`` (above the limit)."""
    if rss_mb > limit_mb:
        return "over"
    if rss_mb >= warning_threshold * limit_mb:
        return "warning"
    return "ok"


def check_process_memory(settings: Settings, rss_mb: float) -> str:
    """Log one warning when this process crosses the threshold, re-armed once below it."""
    state = memory_state(rss_mb, settings.memory_limit_mb, settings.memory_warning_threshold)
    pid = os.getpid()
    if state == "ok":
        _warned.pop(pid, None)
    elif not _warned.get(pid):
        _warned[pid] = True
        logger.warning(
            "process memory high",
            extra={
                "event": "memory_warning",
                "pid": pid,
                "rss_mb": round(rss_mb, 1),
                "memory_limit_mb": settings.memory_limit_mb,
                "memory_warning_threshold": settings.memory_warning_threshold,
            },
        )
    return state


def use_current_rss_for_recycling() -> bool:
    """Make billiard's after-task memory check read the current RSS (not the peak).

    Returns False when this billiard has no such check (then the peak rule applies).
    """
    try:
        import billiard.pool
    except ImportError:
        return False
    if not hasattr(billiard.pool, "mem_rss"):
        logger.warning("billiard has no mem_rss; pool children are recycled on peak RSS")
        return False
    billiard.pool.mem_rss = current_rss_kb
    return True

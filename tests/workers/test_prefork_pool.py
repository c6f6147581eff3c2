"""PreforkPool: a shrink counts a child busy from the moment a task is scheduled for it."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from workers.celery_app.factory import celery_config
from workers.core.settings import Settings
from workers.pools.prefork import PreforkPool, _IdleShrinkAsynPool


def _child(pid: int, fd: int) -> Any:
    return SimpleNamespace(pid=pid, inqW_fd=fd)


def _job(acked_by: int | None = None, write_to: Any = None, scheduled: Any = None, done=False):
    return SimpleNamespace(
        worker_pids=lambda: [acked_by] if acked_by else [],
        ready=lambda: done,
        _write_to=write_to,
        _scheduled_for=scheduled,
    )


def _active(pool: Any, child: Any) -> bool:
    return _IdleShrinkAsynPool._worker_active(pool, child)


def test_a_child_is_busy_while_a_task_is_scheduled_written_or_running_there() -> None:
    first, second, third = _child(11, 5), _child(12, 6), _child(13, 7)
    pool = SimpleNamespace(
        _busy_workers={7},
        _cache={
            1: _job(acked_by=11),  # running: billiard sees this one too
            2: _job(scheduled=second),  # scheduled, not yet acknowledged: billiard does not
            3: _job(write_to=_child(14, 8), done=True),  # finished
        },
    )
    assert _active(pool, first) and _active(pool, second) and _active(pool, third)
    assert not _active(pool, _child(14, 8))
    pool._cache[4] = _job(write_to=_child(14, 8))  # being written to its inqueue
    assert _active(pool, _child(14, 8))


def test_the_factory_makes_it_the_default_pool() -> None:
    assert celery_config(Settings())["worker_pool"] == "workers.pools.prefork:PreforkPool"
    assert PreforkPool.Pool is _IdleShrinkAsynPool

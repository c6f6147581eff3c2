"""Celery's prefork pool, with a ``shrink`` that stops only children that hold no task.

billiard's ``Pool.shrink`` stops (SIGTERM) children it finds inactive, and finds a child
inactive when no job in flight lists the child's pid. A job lists the pid only once the child
has acknowledged it: a job that the main process has scheduled for a child, or is writing to
its inqueue, or that sits in that inqueue unread, lists no pid yet. Under a backlog a
``pool_shrink`` then kills a child that was just handed a task: ``WorkerLostError``, and with
``acks_late`` and ``task_reject_on_worker_lost`` the task runs again (measured: 24 of 5,000
tasks in RELIABILITY.md A12 with a resize every 2 s).

:class:`PreforkPool` counts those children as busy too (a job scheduled for or written to
them, or their inqueue marked busy), so a shrink takes only a child with nothing to do, or is
refused ("all processes busy") and tried again by the caller. Everything else is Celery's
prefork pool. The factory makes it the default pool (``worker_pool``), so ``-P prefork``,
``celery -A workers worker`` and ``victor worker`` all run it.
"""

from __future__ import annotations

from typing import Any

from celery.concurrency.asynpool import AsynPool
from celery.concurrency.prefork import TaskPool

__all__ = ["PreforkPool"]


class _IdleShrinkAsynPool(AsynPool):
    """The event-loop pool of prefork, with a stricter idea of an idle child."""

    # billiard's jobs in flight, by job id (set in Pool.__init__; private, so not in the stubs).
    _cache: dict[int, Any]

    def _worker_active(self, worker: Any) -> bool:
        busy = getattr(self, "_busy_workers", ())
        if getattr(worker, "inqW_fd", None) in busy:
            return True
        for job in list(self._cache.values()):
            if worker.pid in job.worker_pids():
                return True
            if job.ready():
                continue
            for proc in (getattr(job, "_write_to", None), getattr(job, "_scheduled_for", None)):
                if proc is not None and (proc is worker or proc.pid == worker.pid):
                    return True
        return False


class PreforkPool(TaskPool):
    """Celery's prefork pool whose ``pool_shrink`` never stops a child that was given a task."""

    Pool = _IdleShrinkAsynPool

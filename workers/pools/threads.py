"""Celery's threads pool, made resizable so ``pool_grow`` and ``pool_shrink`` work on it.

Celery's threads pool (``celery.concurrency.thread:TaskPool``, a ``ThreadPoolExecutor``) has no
``grow``/``shrink``: the remote ``pool_grow``/``pool_shrink`` commands answer ``AttributeError``.
:class:`ResizableThreadPool` keeps that pool (same executor, same ``ApplyResult``, results and
errors reported the same way, soft time limits unsupported as before) and puts a capacity gate in
front of the executor:

* at most ``limit`` tasks run at once; the others wait, in arrival order, in the pool's own queue;
* ``grow(n)`` raises the limit and starts waiting tasks at once;
* ``shrink(n)`` lowers the limit and interrupts nothing: running tasks finish, and a thread whose
  task ends while the pool is over its limit hands its slot back instead of taking the next task;
* the size never goes below 1: a shrink that would go below is refused with ``ValueError`` (as
  prefork refuses a shrink it cannot do), so the worker's prefetch count is left untouched;
  growing has no upper bound here, the caller bounds it;
* ``num_processes`` and ``info["max-concurrency"]`` always give the current size, so
  ``inspect stats`` shows it and the consumer's prefetch (``num_processes`` times
  ``worker_prefetch_multiplier``, adjusted by the control commands) follows every resize.

The executor never starts more threads than the current size; idle threads are kept for reuse, so
after a shrink the idle surplus is bounded by the largest size the pool has had.

Selecting the pool: ``celery worker -P`` accepts only alias names (prefork, eventlet, gevent, solo,
processes, threads, custom), so ``-P workers.pools.threads:ResizableThreadPool`` is rejected as an
invalid choice. Use either the ``custom`` alias::

    CELERY_CUSTOM_WORKER_POOL=workers.pools.threads:ResizableThreadPool \\
        celery -A APP worker -P custom -c 2

or set ``worker_pool = "workers.pools.threads:ResizableThreadPool"`` in the app's configuration
and leave ``-P`` out.
"""

from __future__ import annotations

import functools
import os
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from celery.concurrency.base import apply_target

# ApplyResult, the threads pool's handle on a Future, is missing from celery-types.
from celery.concurrency.thread import ApplyResult, TaskPool  # type: ignore[attr-defined]

__all__ = ["ResizableThreadPool"]


class _Job:
    """One task handed to the pool: waiting for a slot, or running in one."""

    __slots__ = ("accept_callback", "args", "callback", "future", "kwargs", "target")

    def __init__(
        self,
        target: Callable[..., Any],
        args: tuple[Any, ...] | None,
        kwargs: dict[str, Any] | None,
        callback: Callable[..., Any] | None,
        accept_callback: Callable[..., Any] | None,
    ) -> None:
        self.target = target
        self.args = args
        self.kwargs = kwargs
        self.callback = callback
        self.accept_callback = accept_callback
        self.future: Future[Any] = Future()

    def run(self) -> None:
        """Run the task in this thread and settle its future as the executor would."""
        if not self.future.set_running_or_notify_cancel():
            return
        try:
            # Reports through ``callback``; returns None, which the future holds, as in Celery.
            apply_target(self.target, self.args, self.kwargs, self.callback, self.accept_callback)
        except BaseException as exc:
            self.future.set_exception(exc)
        else:
            self.future.set_result(None)


def _step(n: int) -> int:
    """Check a grow/shrink step: a whole number, zero or more."""
    step = int(n)
    if step < 0:
        raise ValueError(f"pool resize step must be 0 or more, got {n!r}")
    return step


class ResizableThreadPool(TaskPool):
    """Celery's threads pool with ``grow``/``shrink`` and a size that is always reported right."""

    limit: int
    # Made by Celery's TaskPool.__init__; the stubs do not declare it.
    executor: ThreadPoolExecutor

    def __init__(self, limit: int | None = None, *args: Any, **kwargs: Any) -> None:
        size = (os.cpu_count() or 1) if limit is None else max(1, int(limit))
        super().__init__(size, *args, **kwargs)
        self._lock = threading.Lock()
        self._waiting: deque[_Job] = deque()
        self._running = 0
        self._closed = False

    @property
    def num_processes(self) -> int:
        """How many tasks the pool runs at once now."""
        return self.limit

    def _get_info(self) -> dict[str, Any]:
        """Pool statistics for ``inspect stats``, with the current size."""
        # BasePool._get_info (what ``info`` reports) is private, so not in the stubs.
        parent: Any = super()
        info: dict[str, Any] = parent._get_info()
        with self._lock:
            info.update(
                {
                    "max-concurrency": self.limit,
                    "running": self._running,
                    "waiting": len(self._waiting),
                }
            )
        return info

    def grow(self, n: int = 1) -> None:
        """Let ``n`` more tasks run at once, starting waiting tasks now."""
        step = _step(n)
        with self._lock:
            self._resize(self.limit + step)
            ready = self._take_ready()
        self._start(ready)

    def shrink(self, n: int = 1) -> None:
        """Let ``n`` fewer tasks run at once; running tasks finish; refused below 1."""
        step = _step(n)
        with self._lock:
            if self.limit - step < 1:
                raise ValueError(
                    f"cannot shrink the pool by {step}: it runs {self.limit} at once, minimum is 1"
                )
            self._resize(self.limit - step)

    def on_apply(
        self,
        target: Callable[..., Any],
        args: tuple[Any, ...] | None = None,
        kwargs: dict[str, Any] | None = None,
        callback: Callable[..., Any] | None = None,
        accept_callback: Callable[..., Any] | None = None,
        **_: Any,
    ) -> ApplyResult:
        """Queue a task; it starts as soon as the pool is under its size."""
        job = _Job(target, args, kwargs, callback, accept_callback)
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot schedule new futures after shutdown")
            self._waiting.append(job)
            ready = self._take_ready()
        self._start(ready)
        return ApplyResult(job.future)

    def on_stop(self) -> None:
        """Cancel waiting tasks, then let running ones finish, as the threads pool does."""
        with self._lock:
            self._closed = True
            waiting = list(self._waiting)
            self._waiting.clear()
        for job in waiting:
            job.future.cancel()
        super().on_stop()

    def _resize(self, size: int) -> None:
        """Set the size; the executor may then keep up to that many threads busy."""
        self.limit = size
        self.executor._max_workers = size

    def _take_ready(self) -> list[_Job]:
        """Claim a slot for each waiting task that may start now (lock held)."""
        ready: list[_Job] = []
        while not self._closed and self._waiting and self._running < self.limit:
            self._running += 1
            ready.append(self._waiting.popleft())
        return ready

    def _start(self, ready: list[_Job]) -> None:
        """Hand each claimed task to the executor."""
        for job in ready:
            try:
                handle = self.executor.submit(self._drive, job)
            except RuntimeError:
                self._give_back(job)
            else:
                handle.add_done_callback(functools.partial(self._on_handle_done, job))

    def _drive(self, job: _Job | None) -> None:
        """Run tasks in one slot while the pool stays within its size, then free the slot."""
        while job is not None:
            job.run()
            job = self._next_or_release()

    def _next_or_release(self) -> _Job | None:
        """Keep the slot for the next waiting task, or free it when over size or idle."""
        with self._lock:
            if not self._closed and self._waiting and self._running <= self.limit:
                return self._waiting.popleft()
            self._running -= 1
            return None

    def _on_handle_done(self, job: _Job, handle: Future[None]) -> None:
        """Free the slot of a task the executor cancelled before it started."""
        if handle.cancelled():
            self._give_back(job)

    def _give_back(self, job: _Job) -> None:
        """Free a claimed slot whose task never ran, and cancel that task."""
        with self._lock:
            self._running -= 1
        job.future.cancel()

"""Embedded mode: a real Celery worker in this process on kombu's memory transport.

Its pool is the resizable threads pool (``workers.pools.threads``) when ``tuner_enabled``, so
the control plane can tune it in place (``orchestrator.tuner.local``): I/O-bound skills (fetch,
providers) gain from more threads, CPU-bound ones share one GIL and the tuner finds that out.
With the tuner off it is Celery's fixed threads pool.
"""

from __future__ import annotations

import itertools
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery import Celery, signals

from workers.celery_app.internals import (
    default_app,
    set_default_app,
    set_task_join_will_block,
)
from workers.core.errors import VictorError
from workers.runtime import runtime_of

RESIZABLE_THREADS = "workers.pools.threads:ResizableThreadPool"
_NUMBERS = itertools.count(1)


@contextmanager
def embedded_worker(
    app: Celery,
    concurrency: int | None = None,
    pool: str | None = None,
    start_timeout_s: float = 30,
) -> Iterator[Any]:
    """Run a worker for ``app`` in a background thread while the block runs."""
    settings = runtime_of(app).settings
    if pool is None:
        pool = RESIZABLE_THREADS if settings.tuner_enabled else "threads"
    ready = threading.Event()

    # app.WorkController is the worker class bound to this app, made at run time: a value,
    # which mypy cannot take as a base class (the stubs type it as type[WorkController]).
    class EmbeddedWorkController(app.WorkController):  # type: ignore[name-defined,misc]
        def on_consumer_ready(self, consumer: Any) -> None:
            # What a standalone worker does here: readiness hooks (metrics, pre-warm) run too.
            signals.worker_ready.send(sender=consumer)
            ready.set()

    app.finalize()
    # The threads pool looks tasks up in the *default* app (trace_task_ret falls back to
    # current_app, and pool threads have no current app of their own): make it ours while
    # the worker runs, or every task fails with NotRegistered inside the pool, unseen.
    previous_default = default_app()
    app.set_default()
    worker = EmbeddedWorkController(
        app=app,
        concurrency=concurrency or settings.effective_concurrency,
        pool=pool,
        # One name per worker: a later session in this process starts from fresh figures.
        hostname=f"embedded-{os.getpid()}-{next(_NUMBERS)}@{socket.gethostname()}",
        loglevel="WARNING",
        without_heartbeat=True,
        without_mingle=True,
        without_gossip=True,
    )
    thread = threading.Thread(target=worker.start, name="victor-embedded-worker", daemon=True)
    thread.start()
    if not ready.wait(start_timeout_s):
        raise VictorError(f"the embedded worker did not start within {start_timeout_s} s")
    # Starting a worker marks the whole process as "inside a worker", which forbids
    # result.get() everywhere; here the caller is not a task, so lift it again.
    set_task_join_will_block(False)
    try:
        yield worker
    finally:
        worker.stop(in_sighandler=False)
        # The stopped consumer still sits in the memory transport's 2 s drain timeout; it no
        # longer takes work, and its daemon thread ends by itself, so do not wait for it.
        thread.join(0.1)
        if default_app() is app:
            set_default_app(previous_default)

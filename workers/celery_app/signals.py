"""The one place that connects Celery's signals: lifecycle, presence, metrics, memory limits.

``connect(app, runtime)`` runs once per app (from ``create_app``): it gives the app a metrics
reporter when ``metrics_enabled``; the process-wide signal handlers connect once per process.
"""

from __future__ import annotations

import os
import time
import weakref
from typing import Any

from celery import Celery, signals

from workers.celery_app import lifecycle
from workers.core.names import PUBLISHED_HEADER
from workers.runtime import Runtime, has_runtime
from workers.telemetry.process import use_current_rss_for_recycling
from workers.telemetry.reporter import Reporter
from workers.telemetry.sampler import WorkerSampler

_REPORTER_ATTR = "_victor_reporter"
_apps: list[Celery] = []
_reporters: weakref.WeakSet[Reporter] = weakref.WeakSet()
_connected = False
_task_signals = False


def reporter_of(app: Any) -> Reporter | None:
    """The metrics reporter of ``app`` (None when ``metrics_enabled`` is off)."""
    return getattr(app, _REPORTER_ATTR, None)


def connect(app: Celery, runtime: Runtime) -> None:
    """Per app: a reporter; once per process: every signal handler."""
    global _connected, _task_signals
    _apps.append(app)
    settings = runtime.settings
    if settings.metrics_enabled:
        reporter = Reporter(settings)
        setattr(app, _REPORTER_ATTR, reporter)  # lives and dies with its app
        _reporters.add(reporter)
    if not _connected:
        _connected = True
        signals.before_task_publish.connect(on_before_task_publish, weak=False)
        signals.worker_init.connect(on_worker_init, weak=False)
        signals.worker_process_init.connect(on_worker_process_init, weak=False)
        signals.worker_ready.connect(on_worker_ready, weak=False)
        signals.task_received.connect(on_task_received, weak=False)
        signals.worker_process_shutdown.connect(on_worker_process_shutdown, weak=False)
        signals.worker_shutdown.connect(on_worker_shutdown, weak=False)
    if settings.metrics_enabled and not _task_signals:
        # Only now: with no receivers Celery skips sending these signals at all.
        _task_signals = True
        signals.task_prerun.connect(on_task_prerun, weak=False)
        signals.task_postrun.connect(on_task_postrun, weak=False)


def _app_of(sender: Any) -> Celery | None:
    app = getattr(sender, "app", None)
    if has_runtime(app):
        return app
    return _apps[-1] if _apps else None


def _hostname_of(sender: Any) -> str:
    return getattr(sender, "hostname", None) or f"pid{os.getpid()}"


def on_before_task_publish(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """Stamp the publish time; the worker derives queue wait from it."""
    if headers is not None and PUBLISHED_HEADER not in headers:
        headers[PUBLISHED_HEADER] = time.time()


def on_worker_init(sender: Any = None, **_: Any) -> None:
    """Main worker process: import every skill now when lazy loading is off."""
    app = _app_of(sender)
    if app is not None:
        lifecycle.load_eagerly(app)


def on_worker_process_init(**_: Any) -> None:
    """Each pool child: eager skills (children may not inherit them), memory rule, metrics."""
    app = _apps[-1] if _apps else None
    if app is not None:
        lifecycle.load_eagerly(app)
    use_current_rss_for_recycling()  # judge the memory limit on current RSS, not the peak
    for reporter in list(_reporters):
        reporter.ensure_started()


def on_worker_ready(sender: Any = None, **_: Any) -> None:
    """Main worker process: readiness, pre-warm, and the worker's own figures each flush."""
    app = _app_of(sender)
    if app is None:
        return
    hostname = _hostname_of(sender)
    lifecycle.worker_ready(app, hostname)
    reporter = reporter_of(getattr(sender, "app", None))
    if reporter is None:
        return
    reporter.hostname = reporter.hostname or hostname
    reporter.worker_sampler = WorkerSampler(sender, hostname, reporter.settings)
    reporter.ensure_started()


def on_task_received(sender: Any = None, request: Any = None, **_: Any) -> None:
    """Main worker process, per message: note a ledger task among the worker's holdings."""
    presence = lifecycle.presence_of(getattr(sender, "app", None))
    if presence is not None and request is not None:
        presence.received(request)


def on_task_prerun(task_id: str = "", task: Any = None, **_: Any) -> None:
    reporter = reporter_of(task.app) if task is not None else None
    if reporter is None:
        return
    request = task.request
    if not reporter.hostname:
        reporter.hostname = request.hostname or ""
    published = getattr(request, PUBLISHED_HEADER, None)
    reporter.task_started(task_id, published if isinstance(published, float) else None)


def on_task_postrun(
    task_id: str = "",
    task: Any = None,
    args: Any = None,
    kwargs: Any = None,
    retval: Any = None,
    state: str | None = None,
    **_: Any,
) -> None:
    reporter = reporter_of(task.app) if task is not None else None
    if reporter is None:
        return
    reporter.task_finished(task_id, task.name, args, kwargs, retval, state or "FAILURE")


def on_worker_process_shutdown(**_: Any) -> None:
    _stop_reporters()


def on_worker_shutdown(sender: Any = None, **_: Any) -> None:
    app = _app_of(sender)
    if app is not None:
        lifecycle.worker_stopping(app, _hostname_of(sender))
    _stop_reporters()


def _stop_reporters() -> None:
    for reporter in list(_reporters):
        if reporter.owned_here():
            reporter.stop()

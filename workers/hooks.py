"""Worker signal hooks: readiness, eager or background (pre-warm) skill loading."""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from celery import Celery
from celery.signals import worker_init, worker_process_init, worker_ready, worker_shutdown

from workers.factory import runtime_of
from workers.reporting import install as install_reporting
from workers.settings import Mode

logger = logging.getLogger(__name__)

_apps: list[Celery] = []
_connected = False


def connect(app: Celery) -> None:
    """Attach the hooks to ``app`` (signals are process-wide, so connect once)."""
    global _connected
    _apps.append(app)
    install_reporting(app)  # metrics, memory limits, maintenance tasks (workers.reporting)
    if _connected:
        return
    _connected = True
    worker_init.connect(on_worker_init, weak=False)
    worker_process_init.connect(on_worker_process_init, weak=False)
    worker_ready.connect(on_worker_ready, weak=False)
    worker_shutdown.connect(on_worker_shutdown, weak=False)


def _app_of(sender: Any) -> Celery | None:
    app = getattr(sender, "app", None)
    if app is not None and hasattr(app, "victor"):
        return app
    return _apps[-1] if _apps else None


def eager_wanted(app: Celery) -> bool:
    settings = runtime_of(app).settings
    return not (settings.lazy_loading_enabled and settings.lazy_load_skills)


def on_worker_init(sender: Any = None, **_: Any) -> None:
    """Main worker process: import every skill now when lazy loading is off."""
    app = _app_of(sender)
    if app is not None and eager_wanted(app):
        runtime_of(app).registry.load_all()


def on_worker_process_init(**_: Any) -> None:
    """Each pool child: eager import when lazy loading is off (children may not inherit it)."""
    app = _apps[-1] if _apps else None
    if app is not None and eager_wanted(app):
        runtime_of(app).registry.load_all()


def on_worker_ready(sender: Any = None, **_: Any) -> None:
    """Mark this worker ready in Redis and start the pre-warm thread when lazy."""
    app = _app_of(sender)
    if app is None:
        return
    runtime = runtime_of(app)
    settings = runtime.settings
    hostname = getattr(sender, "hostname", None) or f"pid{os.getpid()}"
    if settings.mode is Mode.DISTRIBUTED:
        from workers.redis_client import redis_client

        url = settings.result_backend_url or settings.redis_url or settings.effective_broker_url
        try:
            redis_client(url).set(runtime.keys.worker_ready(hostname), str(os.getpid()), ex=3600)
        except Exception:  # readiness is advisory; never block a worker on it
            logger.warning("could not record readiness of %s", hostname, exc_info=True)
    if not eager_wanted(app) and settings.lazy_loading_prewarm_delay_s > 0:
        thread = threading.Thread(target=prewarm, args=(app,), name="victor-prewarm", daemon=True)
        thread.start()


def on_worker_shutdown(sender: Any = None, **_: Any) -> None:
    app = _app_of(sender)
    if app is None or runtime_of(app).settings.mode is not Mode.DISTRIBUTED:
        return
    runtime = runtime_of(app)
    hostname = getattr(sender, "hostname", None) or f"pid{os.getpid()}"
    from workers.redis_client import redis_client

    settings = runtime.settings
    url = settings.result_backend_url or settings.redis_url or settings.effective_broker_url
    try:
        redis_client(url).delete(runtime.keys.worker_ready(hostname))
    except Exception:
        logger.debug("could not clear readiness of %s", hostname, exc_info=True)


def prewarm_allowed(rss_mb: float, cpu_fraction: float, memory_mb: int, cpu: float) -> bool:
    """Pre-warm only while this process is under both lazy-loading thresholds."""
    return rss_mb < memory_mb and cpu_fraction < cpu


def prewarm(app: Celery, sleep: Any = time.sleep) -> list[str]:
    """After the delay, import skills one by one while RSS and CPU stay under thresholds."""
    import psutil

    runtime = runtime_of(app)
    settings = runtime.settings
    sleep(settings.lazy_loading_prewarm_delay_s)
    process = psutil.Process()
    loaded = []
    for name in runtime.registry.names():
        if runtime.registry.is_loaded(name):
            continue
        rss_mb = process.memory_info().rss / 1_048_576
        cpu_fraction = psutil.cpu_percent(interval=0.5) / 100
        if not prewarm_allowed(
            rss_mb,
            cpu_fraction,
            settings.lazy_loading_memory_threshold,
            settings.lazy_loading_cpu_threshold,
        ):
            logger.info("pre-warm paused: rss %.0f MB, cpu %.0f%%", rss_mb, cpu_fraction * 100)
            break
        try:
            runtime.registry.load(name)
            loaded.append(name)
        except Exception:
            logger.info("pre-warm skipped %s", name, exc_info=True)
    return loaded

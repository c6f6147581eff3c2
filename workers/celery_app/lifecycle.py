"""A worker's life: eager or background (pre-warm) skill loading, presence in Redis.

The functions here take an app; ``workers.celery_app.signals`` calls them from Celery's signals.
Readiness is presence: the ready key is the worker's heartbeat (``workers.maintenance.presence``),
and its main process recovers dead workers' tasks in the background.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from celery import Celery

from workers.core.errors import BackendUnavailableError
from workers.core.settings import Mode
from workers.maintenance.presence import Presence
from workers.maintenance.reconciler import recover_dead_workers
from workers.runtime import runtime_of

logger = logging.getLogger(__name__)

_PRESENCE_ATTR = "_victor_presence"


def eager_wanted(app: Celery) -> bool:
    """Whether skills load at start (lazy loading off for skills)."""
    settings = runtime_of(app).settings
    return not (settings.lazy_loading_enabled and settings.lazy_load_skills)


def load_eagerly(app: Celery) -> None:
    """Import every skill now when lazy loading is off; read the personas now unless
    ``lazy_load_personas``."""
    if eager_wanted(app):
        runtime_of(app).registry.load_all()
    settings = runtime_of(app).settings
    if settings.personas_dir and not settings.lazy_load_personas:
        from workers.providers.personas import load_personas

        try:
            load_personas(settings)
        except Exception as exc:  # a bad file: the call naming it fails, with the reason
            logger.error(
                "personas in %s could not be read at start: %s", settings.personas_dir, exc
            )


def presence_of(app: Any) -> Presence | None:
    """The presence (heartbeat, holdings) of the worker running ``app`` in this process."""
    return getattr(app, _PRESENCE_ATTR, None)


def worker_ready(app: Celery, hostname: str) -> None:
    """Start this worker's presence (ready when it returns) and pre-warm when lazy."""
    runtime = runtime_of(app)
    settings = runtime.settings
    if settings.mode is Mode.DISTRIBUTED and presence_of(app) is None:
        presence = Presence(settings, hostname, recover=lambda: recover_dead_workers(app))
        setattr(app, _PRESENCE_ATTR, presence)
        presence.start()
    if not eager_wanted(app) and settings.lazy_loading_prewarm_delay_s > 0:
        thread = threading.Thread(target=prewarm, args=(app,), name="victor-prewarm", daemon=True)
        thread.start()


def worker_stopping(app: Celery, hostname: str) -> None:
    """A clean shutdown: clear this worker's heartbeat and holdings."""
    presence = presence_of(app)
    if presence is None:
        return
    try:
        presence.stop()
    except BackendUnavailableError:  # the heartbeat lapses by itself within its TTL
        logger.debug("could not clear the presence of %s", hostname, exc_info=True)


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

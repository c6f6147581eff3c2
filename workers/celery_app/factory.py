"""The Celery app factory: JSON only, acks late, key prefixes, one task per skill."""

from __future__ import annotations

from typing import Any

from celery import Celery

from workers.celery_app import signals, task_bodies
from workers.core.errors import ConfigError
from workers.core.keys import Keys
from workers.core.names import DEFAULT_QUEUE, RECONCILE_TASK
from workers.core.settings import Mode, Settings, load_settings
from workers.maintenance.schedule import beat_schedule
from workers.runtime import Runtime
from workers.skills.registry import SkillRegistry, load_registry

PREFORK_POOL = "workers.pools.prefork:PreforkPool"


def celery_config(settings: Settings) -> dict[str, Any]:
    """The Celery configuration every victor-fleet process uses (checked by tests)."""
    keys = Keys(settings.key_prefix)
    config: dict[str, Any] = {
        "task_serializer": "json",
        "result_serializer": "json",
        "event_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        # A hard time limit kills the pool child: requeue (the ledger's delivery cap bounds the
        # retries) instead of acking a task that never finished.
        "task_acks_on_timeout": False,
        # billiard waits this long after a pool child died before it raises WorkerLostError
        # (default 10 s); a task whose time limit fires first is handled as a timeout instead.
        "worker_lost_wait": 1.0,
        "worker_prefetch_multiplier": settings.worker_prefetch_multiplier,
        "worker_concurrency": settings.effective_concurrency,
        "task_time_limit": settings.task_time_limit_s,
        "task_soft_time_limit": settings.task_soft_time_limit_s,
        "result_expires": settings.result_expires_s,
        "task_default_queue": DEFAULT_QUEUE,
        "broker_connection_retry_on_startup": True,
        "worker_hijack_root_logger": False,
        # Task events cost a publish per task state; Flower turns them on when it watches
        # (its enable_events broadcast), so an unwatched fleet does not pay for them.
        "worker_send_task_events": False,
        "task_send_sent_event": False,
        "result_chord_join_timeout": 30.0,
        # The default pool (also for `-P prefork`): prefork whose pool_shrink stops only a
        # child holding no task (workers.pools.prefork), so the tuner's shrinks lose nothing.
        "worker_pool": PREFORK_POOL,
    }
    if settings.mode is Mode.DISTRIBUTED:
        # kombu sweeps unacked messages back every interval x throttle (default 10 x 10 s):
        # sweep every interval so a dead worker's tasks return soon after the visibility timeout.
        restore_s = settings.unacked_restore_interval_s or max(
            1, settings.visibility_timeout_s // 5
        )
        transport = {
            "visibility_timeout": settings.visibility_timeout_s,
            "global_keyprefix": keys.broker_prefix,
            "unacked_restore_interval": restore_s,
            "unacked_restore_throttle": 1,
        }
        config["broker_transport_options"] = transport
        config["beat_schedule"] = {
            "victor-reconcile": {
                "task": RECONCILE_TASK,
                "schedule": max(1.0, settings.reconciler_stale_after_s / 3),
                "options": {"expires": max(1.0, settings.reconciler_stale_after_s / 3)},
            }
        }
        config["result_backend_transport_options"] = {
            "visibility_timeout": settings.visibility_timeout_s,
            "global_keyprefix": keys.backend_prefix,
        }
        config["redis_backend_health_check_interval"] = 30
        # Recycle a prefork child that ends a task above the limit (workers.telemetry.process).
        config["worker_max_memory_per_child"] = settings.memory_limit_mb * 1024
    else:
        config["broker_transport_options"] = {
            "polling_interval": settings.embedded_polling_interval_s
        }
    config["beat_schedule"] = {**config.get("beat_schedule", {}), **beat_schedule(settings)}
    config["beat_scheduler"] = "celery.beat:Scheduler"  # in memory: no shelve (pickle) file
    return config


def check_config(app: Celery) -> None:
    """Refuse to run with a configuration that loses tasks or accepts pickle."""
    conf = app.conf
    for name in ("accept_content", "result_accept_content"):
        if set(conf[name]) != {"json"} and set(conf[name]) != {"application/json"}:
            raise ConfigError(f"{name} must be ['json'], got {conf[name]!r}")
    for name in ("task_serializer", "result_serializer", "event_serializer"):
        if conf[name] != "json":
            raise ConfigError(f"{name} must be 'json', got {conf[name]!r}")
    if not (conf.task_acks_late and conf.task_reject_on_worker_lost):
        raise ConfigError("task_acks_late and task_reject_on_worker_lost must both be on")
    visibility = (conf.broker_transport_options or {}).get("visibility_timeout")
    if visibility is not None and not conf.task_time_limit < visibility:
        raise ConfigError(
            f"task_time_limit ({conf.task_time_limit}) must be below the broker visibility "
            f"timeout ({visibility}); raise VICTOR_VISIBILITY_TIMEOUT_S"
        )


def create_app(settings: Settings | None = None, registry: SkillRegistry | None = None) -> Celery:
    """Build a Celery app for ``settings`` with one task per installed skill."""
    settings = settings or load_settings()
    registry = registry or load_registry()
    if settings.mode is Mode.DISTRIBUTED:
        from workers.celery_app import flower_defaults, kombu_patches

        kombu_patches.install()  # a Redis restart must not stop the worker (A7)
        flower_defaults.install(settings)  # `celery -A workers flower`: loopback, credentials
    app = Celery(
        "victor",
        broker=settings.effective_broker_url,
        backend=settings.effective_backend_url,
        set_as_current=False,
    )
    app.conf.update(celery_config(settings))
    check_config(app)
    runtime = Runtime(settings, registry)
    runtime.attach(app)
    task_bodies.register_tasks(app, runtime)
    signals.connect(app, runtime)
    return app

"""The Celery app factory: JSON only, acks late, key prefixes, one task per skill."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any, cast

from celery import Celery, Task
from celery.exceptions import Reject

from workers.cache import CacheProvider, install_cache, tenant_scope
from workers.cache.hooks import task_tenant
from workers.errors import BackendUnavailableError, ConfigError
from workers.executor import SkillExecutor
from workers.keys import Keys
from workers.ledger import FINISHED_JOB, TERMINAL, Ledger, MemoryLedger, RedisLedger
from workers.settings import Mode, Settings, load_settings
from workers.skills.registry import SkillRegistry, load_registry

BATCH_TASK = "victor.batch"
REDUCE_TASK = "victor.reduce"
RECONCILE_TASK = "victor.reconcile"
DEFAULT_QUEUE = "victor"

# What ``app.task(...)`` returns: a decorator that registers a function as a task.
TaskDecorator = Callable[[Callable[..., Any]], Task]


class Runtime:
    """Per-process services of one app: settings, registry, executor, ledger."""

    def __init__(self, settings: Settings, registry: SkillRegistry) -> None:
        self.settings = settings
        self.registry = registry
        self.keys = Keys(settings.key_prefix)
        self.executor = SkillExecutor(settings, registry)
        self.cache: CacheProvider = install_cache(self)
        self._ledger: Ledger | None = None

    @property
    def ledger(self) -> Ledger:
        if self._ledger is None:
            if self.settings.mode is Mode.DISTRIBUTED:
                url = self.settings.result_backend_url or self.settings.redis_url
                url = url or self.settings.effective_broker_url
                self._ledger = RedisLedger(url, self.keys, self.settings.result_expires_s)
            else:
                self._ledger = MemoryLedger()
        return self._ledger


def runtime_of(app: Celery) -> Runtime:
    """The ``Runtime`` that ``create_app`` attached to ``app`` as ``app.victor``."""
    runtime: Runtime = app.victor
    return runtime


def task_decorator(app: Celery, **options: Any) -> TaskDecorator:
    """``app.task(**options)``, typed (Celery ships no annotations)."""
    return cast(TaskDecorator, app.task(**options))


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
    else:
        config["broker_transport_options"] = {
            "polling_interval": settings.embedded_polling_interval_s
        }
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
        from workers import kombu_patches

        kombu_patches.install()  # a Redis restart must not stop the worker (A7)
        from workers import flower_defaults

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
    app.victor = runtime
    _register_tasks(app, runtime)
    from workers import hooks

    hooks.connect(app)
    return app


def _register_tasks(app: Celery, runtime: Runtime) -> None:
    for spec in runtime.registry.specs():
        _register_skill(app, runtime, spec.name, spec.task_name)

    @task_decorator(app, name=BATCH_TASK, bind=True, shared=False)
    def batch(
        self: Task, skill: str, items: list[dict[str, Any]], job_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Run ``skill`` over ``items``; record the outcomes in the job's ledger once.

        Every cache the skills touch (response, tool selection, embedding) is keyed by the
        job's tenant, sent in the ``victor_tenant`` header.
        """
        task_id = self.request.id or ""
        tenant = task_tenant()
        with tenant_scope(tenant) if tenant else nullcontext():
            if not job_id:
                return runtime.executor.run_batch(skill, items)
            return _batch_recorded(task_id, skill, items, job_id, self.request.hostname)

    def _batch_recorded(
        task_id: str, skill: str, items: list[dict[str, Any]], job_id: str, hostname: str | None
    ) -> list[dict[str, Any]]:
        try:
            return _run_recorded(runtime, task_id, skill, items, job_id, hostname)
        except BackendUnavailableError as exc:
            # Redis is away: never ack a task that could not record its outcome. Requeue it; if
            # even the requeue fails, the message stays unacked and returns after the
            # visibility timeout.
            raise Reject(exc, requeue=True) from exc

    def _run_recorded(
        runtime: Runtime,
        task_id: str,
        skill: str,
        items: list[dict[str, Any]],
        job_id: str,
        hostname: str | None,
    ) -> list[dict[str, Any]]:
        ledger = runtime.ledger
        # A task is finished once, by task id: a redelivered or re-dispatched copy returns the
        # recorded outcome, so a chord counts the same value whichever copy reports.
        recorded: list[dict[str, Any]] | None
        recorded, deliveries = ledger.begin(job_id, task_id)
        if recorded is not None:
            return recorded
        if deliveries > runtime.settings.max_deliveries:
            return _dead_letter(ledger, job_id, task_id, skill, items, deliveries)
        outcomes = runtime.executor.run_batch(skill, items)
        for outcome in outcomes:
            if outcome.get("type") == BackendUnavailableError.__name__:
                # Infrastructure, not input: the item must run again, not count as failed.
                raise BackendUnavailableError(str(outcome.get("error")))
        written = ledger.record_result(job_id, task_id, outcomes, hostname or "")
        if not written:
            recorded = ledger.get_result(job_id, task_id)
            return outcomes if recorded is None else recorded
        if written == FINISHED_JOB:
            _job_finished(runtime, job_id)
        return outcomes

    @task_decorator(app, name=REDUCE_TASK, bind=True, shared=False)
    def reduce(
        self: Task,
        results: list[Any],
        skill: str,
        params: dict[str, Any] | None = None,
        job_id: str | None = None,
    ) -> Any:
        """Fan-in step: run ``skill`` with the header results; finish the job.

        With a job id the results come from the ledger, by task id, not from the chord's list:
        a duplicate header delivery can neither add a result nor hide one. A job already
        reduced returns its result (a duplicate body does not run twice).
        """
        if not job_id:
            return runtime.executor.run(skill, {**(params or {}), "results": results})
        ledger = runtime.ledger
        job = ledger.get_job(job_id)
        if job.status in TERMINAL:
            return job.result
        recorded = ledger.results(job_id)
        if len(recorded) < job.total_tasks:
            # Fired before every header task finished: wait for the ledger (the reconciler
            # re-sends the reduce later if this gives up).
            raise self.retry(countdown=1, max_retries=30)
        ordered = [recorded[task_id] for task_id in sorted(recorded, key=_task_order)]
        try:
            value = runtime.executor.run(skill, {**(params or {}), "results": ordered})
        except BackendUnavailableError:
            raise
        except Exception as exc:
            # The job ends here, whoever watches it (CLI, API, SSE): record why.
            ledger.set_status(job_id, "failed", error=f"reduce {skill!r} failed: {exc}")
            _job_finished(runtime, job_id)
            raise
        ledger.set_status(job_id, "succeeded", result=value)
        _job_finished(runtime, job_id)
        return value

    @task_decorator(app, name=RECONCILE_TASK, shared=False, ignore_result=True)
    def reconcile() -> dict[str, Any]:
        """Beat task: re-dispatch stale ledger tasks, fire overdue reduces."""
        from workers.reconciler import reconcile_once

        return reconcile_once(app).as_dict()


def _job_finished(runtime: Runtime, job_id: str) -> None:
    """Where a job ends on the fleet, remember it as an episode (whoever submitted it)."""
    from workers.memory import record_episode

    record_episode(runtime.settings, runtime.ledger.get_job(job_id).as_dict())


def _task_order(task_id: str) -> tuple[int, str]:
    """Task ids are ``{job_id}.{index}``: order by index."""
    _, _, index = task_id.rpartition(".")
    return (int(index), task_id) if index.isdigit() else (1 << 62, task_id)


def _register_skill(app: Celery, runtime: Runtime, name: str, task_name: str) -> None:
    def run(**params: Any) -> Any:
        return runtime.executor.run(name, params)

    run.__name__ = name
    run.__doc__ = f"Run the {name!r} skill."
    app.task(name=task_name, shared=False)(run)


def _dead_letter(
    ledger: Ledger,
    job_id: str,
    task_id: str,
    skill: str,
    items: list[dict[str, Any]],
    deliveries: int,
) -> list[dict[str, Any]]:
    error = f"dead-lettered after {deliveries - 1} deliveries; replay with victor dlq replay"
    ledger.dead_letter(
        {
            "task_id": task_id,
            "job_id": job_id,
            "skill": skill,
            "items": items,
            "deliveries": deliveries - 1,
            "at": time.time(),
        }
    )
    outcomes = [
        {"ok": False, "error": error, "type": "DeadLetteredError", "item": item} for item in items
    ]
    ledger.record_result(job_id, task_id, outcomes)
    return outcomes

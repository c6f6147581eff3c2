"""The fleet's own Celery tasks: one per skill, batch and reduce (with the ledger), upkeep.

``register_tasks`` is the one place every task is registered (``create_app`` calls it).
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from typing import Any

from celery import Celery, Task
from celery.exceptions import Reject

from workers.cache import clear_expired_cache, tenant_scope
from workers.cache.hooks import task_tenant
from workers.core.errors import BackendUnavailableError
from workers.core.names import (
    BATCH_TASK,
    CACHE_EXPIRY_TASK,
    CLEAR_EPISODES_TASK,
    CONSOLIDATE_TASK,
    MONITOR_TASK,
    RECONCILE_TASK,
    REDUCE_TASK,
)
from workers.ledger import FINISHED_JOB, TERMINAL, Ledger
from workers.ledger.records import failed_items
from workers.maintenance.episodes import consolidate_memories, memories_for, record_episode
from workers.maintenance.reconciler import reconcile_once
from workers.runtime import Runtime, task_decorator
from workers.skills.streaming import streaming_to
from workers.telemetry.alerts import Monitor


def register_tasks(app: Celery, runtime: Runtime) -> None:
    """Register every task of the fleet on ``app``."""
    for spec in runtime.registry.specs():
        _register_skill(app, runtime, spec.name, spec.task_name)
    _register_job_tasks(app, runtime)
    _register_upkeep_tasks(app, runtime)


def _register_job_tasks(app: Celery, runtime: Runtime) -> None:
    @task_decorator(app, name=BATCH_TASK, bind=True, shared=False)
    def batch(
        self: Task[Any, Any], skill: str, items: list[dict[str, Any]], job_id: str | None = None
    ) -> list[dict[str, Any]] | dict[str, Any]:
        """Run ``skill`` over ``items``; record the outcomes in the job's ledger once.

        Every cache the skills touch (response, tool selection, embedding) is keyed by the
        job's tenant, sent in the ``victor_tenant`` header.

        With a job id the outcomes live in the ledger, where the reduce, the followers and the
        API read them; the task returns only a receipt (job, items, failed). A chord would
        otherwise encode every outcome again and keep a copy in its join key until the job
        ends, and nothing reads it there.
        """
        task_id = self.request.id or ""
        tenant = task_tenant()
        with tenant_scope(tenant) if tenant else nullcontext():
            if not job_id:
                return runtime.executor.run_batch(skill, items)
            outcomes = _batch_recorded(task_id, skill, items, job_id, self.request.hostname)
        return {"job_id": job_id, "items": len(outcomes), "failed": failed_items(outcomes)}

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

        def publish(item: int, offset: int, text: str) -> None:
            ledger.publish_delta(job_id, task_id, item, offset, text)

        # Skills that stream text (chat) send it to the job's followers as item.delta events.
        with streaming_to(publish):
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
        self: Task[Any, Any],
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
        status, error = ledger.get_job(job_id).item_outcome()
        ledger.set_status(job_id, status, result=value, error=error)
        _job_finished(runtime, job_id)
        return value

    @task_decorator(app, name=RECONCILE_TASK, shared=False, ignore_result=True)
    def reconcile() -> dict[str, Any]:
        """Beat task: re-dispatch stale ledger tasks, fire overdue reduces."""
        return reconcile_once(app).as_dict()


def _register_upkeep_tasks(app: Celery, runtime: Runtime) -> None:
    """The maintenance tasks beat schedules: consolidation, episodes, alerts, cache expiry."""
    settings = runtime.settings
    monitor = Monitor(settings)

    @task_decorator(app, name=CONSOLIDATE_TASK, shared=False, ignore_result=True)
    def consolidate() -> dict[str, Any]:
        """Derive per-skill facts from the episodes."""
        result = consolidate_memories(settings)
        return {key: value for key, value in result.items() if key != "by_skill"}

    @task_decorator(app, name=CLEAR_EPISODES_TASK, shared=False, ignore_result=True)
    def clear_old(days: float | None = None) -> int:
        """Drop episodes older than ``days`` (default ``episodic_memory_retention_days``)."""
        episodic, _ = memories_for(settings)
        return episodic.clear_old_episodes(days or settings.episodic_memory_retention_days)

    @task_decorator(app, name=MONITOR_TASK, shared=False, ignore_result=True)
    def check() -> int:
        """Evaluate the alert rules once; return how many events fired."""
        return len(monitor.check())

    @task_decorator(app, name=CACHE_EXPIRY_TASK, shared=False, ignore_result=True)
    def clear_expired() -> Any:
        """Drop expired cache entries."""
        return clear_expired_cache(settings)


def _job_finished(runtime: Runtime, job_id: str) -> None:
    """Where a job ends on the fleet, remember it as an episode (whoever submitted it)."""
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

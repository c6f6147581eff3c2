"""The reconciler: re-dispatch ledger tasks accepted but not finished; replay dead letters.

Celery on Redis redelivers a dead worker's unacked messages after the visibility timeout, and
a killed pool child's task at once (``task_reject_on_worker_lost``). The reconciler covers what
that misses: a message lost with the broker, a chord body that never fired, a task whose every
copy vanished. It runs as the beat task ``victor.reconcile`` (and ``victor reconcile --once``):

- a task open in the ledger longer than ``reconciler_stale_after_s`` (since it was accepted, or
  since its last delivery began) is published again as ``victor.batch`` with the **same task
  id**, from the task spec the ledger holds; its clock restarts. Results are recorded once per
  task id, so a copy that finishes second changes nothing;
- a job whose header tasks have all finished but whose reduce has not run after the same time
  gets its reduce sent again (the reduce reads its inputs from the ledger by task id);
- the redelivery cap lives in ``victor.batch``: past ``max_deliveries`` deliveries a task is
  dead-lettered (``victor dlq list``) and can be replayed (``victor dlq replay``).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from workers.core.errors import JobNotFoundError, VictorError
from workers.core.names import BATCH_TASK, REDUCE_TASK
from workers.core.redis_client import redis_client, translated
from workers.core.settings import Mode
from workers.ledger import REDUCE_SUFFIX, TERMINAL, Ledger, reduce_task_id
from workers.runtime import runtime_of

if TYPE_CHECKING:
    from celery import Celery

logger = logging.getLogger(__name__)


class DeadLetterNotFoundError(VictorError):
    """No dead letter with the given task id."""


@dataclass
class ReconcileReport:
    """What one reconciler pass did."""

    redispatched: list[str] = field(default_factory=list)
    reduces: list[str] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)
    waiting: int = 0
    locked: bool = False
    duration_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _lock(app: Celery, ttl_s: int) -> tuple[Any, str] | None:
    """One reconciler pass at a time across the fleet (a Redis lock with a TTL)."""
    runtime = runtime_of(app)
    settings = runtime.settings
    if settings.mode is not Mode.DISTRIBUTED:
        return (None, "")
    client = redis_client(settings.state_url)
    token = uuid.uuid4().hex
    with translated("taking the reconciler lock"):
        if not client.set(runtime.keys.reconcile_lock(), token, nx=True, ex=ttl_s):
            return None
    return (client, token)


def _unlock(app: Celery, held: tuple[Any, str]) -> None:
    client, token = held
    if client is None:
        return
    key = runtime_of(app).keys.reconcile_lock()
    # Delete only our own lock (compare-and-delete).
    client.eval(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end "
        "return 0",
        1,
        key,
        token,
    )


def reconcile_once(app: Celery, *, stale_after_s: float | None = None) -> ReconcileReport:
    """One pass over the ledger's open tasks; see the module docstring."""
    started = time.monotonic()
    runtime = runtime_of(app)
    settings = runtime.settings
    ledger: Ledger = runtime.ledger
    stale_after = settings.reconciler_stale_after_s if stale_after_s is None else stale_after_s
    report = ReconcileReport()
    held = _lock(app, ttl_s=max(5, settings.reconciler_stale_after_s))
    if held is None:
        report.locked = True
        return report
    try:
        by_job: dict[str, list[str]] = defaultdict(list)
        for job_id, task_id in ledger.stale_tasks(stale_after):
            by_job[job_id].append(task_id)
        for job_id, task_ids in by_job.items():
            _reconcile_job(app, ledger, job_id, task_ids, report)
    finally:
        _unlock(app, held)
    report.duration_s = round(time.monotonic() - started, 4)
    if report.redispatched or report.reduces:
        logger.warning(
            "reconciler re-dispatched %d task(s) and %d reduce(s)",
            len(report.redispatched),
            len(report.reduces),
        )
    return report


def _reconcile_job(
    app: Celery, ledger: Ledger, job_id: str, task_ids: list[str], report: ReconcileReport
) -> None:
    try:
        job = ledger.get_job(job_id)
    except JobNotFoundError:
        for task_id in task_ids:  # the job expired: nothing left to run
            ledger.close_open(job_id, task_id)
            report.closed.append(task_id)
        return
    specs = ledger.task_specs(job_id)
    recorded = ledger.results(job_id)
    for task_id in task_ids:
        if task_id.endswith(REDUCE_SUFFIX) and task_id == reduce_task_id(job_id):
            if job.status in TERMINAL:
                ledger.close_open(job_id, task_id)
                report.closed.append(task_id)
            elif len(recorded) >= job.total_tasks:
                _send_reduce(app, job_id, job.meta.get("reduce") or {})
                ledger.touch_open(job_id, task_id)
                report.reduces.append(task_id)
            else:
                ledger.touch_open(job_id, task_id)  # its header is still running
                report.waiting += 1
            continue
        spec = specs.get(task_id)
        if task_id in recorded or spec is None or job.status in TERMINAL:
            ledger.close_open(job_id, task_id)
            report.closed.append(task_id)
            continue
        ledger.touch_open(job_id, task_id)
        app.send_task(
            BATCH_TASK,
            args=(spec["skill"], spec["items"]),
            kwargs={"job_id": job_id},
            task_id=task_id,
        )
        report.redispatched.append(task_id)


def _send_reduce(app: Celery, job_id: str, reduce: dict[str, Any]) -> None:
    app.send_task(
        REDUCE_TASK,
        args=([],),
        kwargs={
            "skill": reduce.get("skill"),
            "params": reduce.get("params") or {},
            "job_id": job_id,
        },
        task_id=reduce_task_id(job_id),
    )


def replay_dead_letter(app: Celery, task_id: str) -> dict[str, Any]:
    """Open a dead-lettered task again and publish it with its own task id."""
    ledger: Ledger = runtime_of(app).ledger
    entries = {entry["task_id"]: entry for entry in ledger.dead_letters()}
    entry = entries.get(task_id)
    if entry is None:
        known = ", ".join(sorted(entries)[:5]) or "none"
        raise DeadLetterNotFoundError(
            f"no dead letter with task id {task_id!r} (known: {known}); see victor dlq list"
        )
    ledger.replay_task(entry["job_id"], task_id)
    app.send_task(
        BATCH_TASK,
        args=(entry["skill"], entry["items"]),
        kwargs={"job_id": entry["job_id"]},
        task_id=task_id,
    )
    return entry

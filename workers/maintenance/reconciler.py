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

:func:`recover_dead_workers` does not wait for any of that: every worker's main process runs it
each heartbeat interval (``workers.maintenance.presence``), and each pass here too. A worker
whose heartbeat lapsed (and is still lapsed half a beat later, so a Redis stall does not make
the whole fleet look dead) has its holdings claimed (``workers.maintenance.holdings``); each task
it held that is still open in the ledger has its original message put back in the queue by
kombu's own ``restore_by_tag`` (chord and chain links intact; kombu will not restore it again),
or, when the broker no longer has that message, is published again from its ledger spec as
above. A task already recorded is left alone: if kombu restores its message after the
visibility timeout, that copy returns the recorded outcome.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, cast

from workers.core.errors import JobNotFoundError, VictorError
from workers.core.names import BATCH_TASK, REDUCE_TASK
from workers.core.redis_client import redis_client, translated
from workers.core.settings import Mode
from workers.ledger import REDUCE_SUFFIX, TERMINAL, Ledger, reduce_task_id
from workers.maintenance.holdings import (
    HeldTask,
    claim_holdings,
    dead_incarnations,
    return_holdings,
)
from workers.runtime import runtime_of

if TYPE_CHECKING:
    from celery import Celery
    from kombu.transport.redis import Channel as RedisChannel
    from kombu.transport.redis import QoS as RedisQoS

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
    dead_workers: list[str] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)
    recorded: list[str] = field(default_factory=list)
    locked: bool = False
    duration_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _lock(app: Celery, ttl_s: int, key: str | None = None) -> tuple[Any, str, str] | None:
    """One pass at a time across the fleet (a Redis lock with a TTL; the reconciler's unless
    ``key`` names another)."""
    runtime = runtime_of(app)
    settings = runtime.settings
    if settings.mode is not Mode.DISTRIBUTED:
        return (None, "", "")
    client = redis_client(settings.state_url)
    token = uuid.uuid4().hex
    key = key or runtime.keys.reconcile_lock()
    with translated("taking the reconciler lock"):
        if not client.set(key, token, nx=True, ex=ttl_s):
            return None
    return (client, token, key)


def _unlock(app: Celery, held: tuple[Any, str, str]) -> None:
    client, token, key = held
    if client is None:
        return
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
    report = recover_dead_workers(app)
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


def recover_dead_workers(app: Celery, report: ReconcileReport | None = None) -> ReconcileReport:
    """Put back in the queue the open tasks of every worker whose heartbeat lapsed."""
    report = report or ReconcileReport()
    runtime = runtime_of(app)
    settings = runtime.settings
    if settings.mode is not Mode.DISTRIBUTED:
        return report
    client = redis_client(settings.state_url)
    dead = dead_incarnations(client, runtime.keys)
    if dead:
        # Look again after half a beat: when Redis itself stalled past the TTL, every worker's
        # heartbeat lapsed at once, and the live ones beat again within that time.
        time.sleep(settings.worker_heartbeat_interval_s / 2)
        dead = [entry for entry in dead_incarnations(client, runtime.keys) if entry in dead]
    if not dead:
        return report
    lock_s = max(5, int(settings.worker_heartbeat_ttl_s))
    held = _lock(app, ttl_s=lock_s, key=runtime.keys.worker_recovery_lock())
    if held is None:
        return report  # another worker is recovering them right now
    try:
        for incarnation, hostname in dead:
            tasks = claim_holdings(client, runtime.keys, hostname, incarnation)
            if tasks is None:
                continue  # its heartbeat came back
            report.dead_workers.append(hostname)
            try:
                _recover_tasks(app, runtime.ledger, tasks, report)
            except Exception:
                # Give them back: the next pass (here or on another worker) tries again.
                return_holdings(client, runtime.keys, hostname, incarnation, tasks)
                raise
    finally:
        _unlock(app, held)
    if report.restored or report.redispatched:
        logger.warning(
            "recovered %d task(s) of dead worker(s) %s (%d restored, %d re-published)",
            len(report.restored) + len(report.redispatched),
            ", ".join(report.dead_workers),
            len(report.restored),
            len(report.redispatched),
        )
    return report


def _recover_tasks(
    app: Celery, ledger: Ledger, tasks: list[HeldTask], report: ReconcileReport
) -> None:
    """Restore the original message of each open task; re-publish the ones the broker lost."""
    by_job: dict[str, list[HeldTask]] = defaultdict(list)
    for task in tasks:
        by_job[task.job_id].append(task)
    open_tasks: list[HeldTask] = []
    for job_id, held in by_job.items():
        try:
            job = ledger.get_job(job_id)
        except JobNotFoundError:
            report.recorded.extend(task.task_id for task in held)  # expired: nothing to run
            continue
        for task in held:
            finished = job.status in TERMINAL or (
                task.task_id != reduce_task_id(job_id)
                and ledger.get_result(job_id, task.task_id) is not None
            )
            if finished:
                report.recorded.append(task.task_id)
            else:
                open_tasks.append(task)
    restored = _restore_originals(app, [task.tag for task in open_tasks])
    lost: dict[str, list[str]] = defaultdict(list)
    for task in open_tasks:
        if task.tag in restored:
            report.restored.append(task.task_id)
        else:
            lost[task.job_id].append(task.task_id)
    for job_id, task_ids in lost.items():
        _reconcile_job(app, ledger, job_id, task_ids, report)


def _restore_originals(app: Celery, tags: list[str]) -> set[str]:
    """Put unacked messages back in their queue with kombu's own restore; return the tags that
    the broker still held."""
    restored: set[str] = set()
    if not tags:
        return restored
    with app.connection_for_write() as connection:
        # The broker is Redis here: the stubs type the channel as the abstract StdChannel and
        # its QoS as the virtual transport's, which lack the Redis unacked hash and restore.
        channel = cast("RedisChannel", connection.default_channel)
        qos = cast("RedisQoS", channel.qos)
        with channel.conn_or_acquire() as client:
            for tag in tags:
                if client.hget(qos.unacked_key, tag) is None:
                    continue  # acked meanwhile, already restored, or lost with the broker
                qos.restore_by_tag(tag, client=client)
                restored.add(tag)
    return restored


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

"""The dispatcher: Plan -> ledger records -> Celery canvas (group, chord, chain)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from celery import Celery, chain, chord, group
from celery.canvas import Signature
from kombu.exceptions import OperationalError

from orchestrator.core.plan import Plan
from workers.cache.keying import tenant_scope
from workers.core.errors import BackendUnavailableError, JobError, JobOutcomeUnknownError
from workers.core.names import BATCH_TASK, REDUCE_TASK, TENANT_HEADER
from workers.core.redis_client import REDIS_ERRORS
from workers.core.settings import Mode
from workers.ledger import TERMINAL, JobRecord, MemoryLedger
from workers.maintenance.episodes import record_episode
from workers.runtime import runtime_of

ProgressCallback = Callable[[int, int], None]
_UNREACHABLE: tuple[type[BaseException], ...] = (*REDIS_ERRORS, OperationalError)


@dataclass
class JobHandle:
    """A dispatched job: its id, plan, task ids and the Celery result to follow."""

    job_id: str
    plan: Plan
    task_ids: list[str]
    app: Celery
    result: Any = None
    fan_in: str = "none"
    started_at: float = field(default_factory=time.monotonic)


def new_job_id() -> str:
    return uuid.uuid4().hex


def job_record(
    plan: Plan,
    job_id: str,
    tenant: str,
    status: str,
    now: float,
    total_tasks: int,
    meta: dict[str, Any] | None = None,
) -> JobRecord:
    """The ledger's record of a new job of ``plan`` (its tasks are recorded beside it)."""
    record = JobRecord(
        job_id=job_id,
        tenant=tenant,
        name=plan.name,
        status=status,
        created_at=now,
        updated_at=now,
        total_tasks=total_tasks,
        meta={
            "has_reduce": plan.reduce is not None,
            "items": plan.item_count,
            "strategy": plan.strategy,
            **(meta or {}),
        },
    )
    if plan.reduce is not None:
        record.meta["reduce"] = plan.reduce.model_dump()
    return record


def record_job(
    app: Celery,
    plan: Plan,
    *,
    tenant: str,
    job_id: str | None = None,
    meta: dict[str, Any] | None = None,
) -> tuple[str, list[str], list[tuple[int, str, list[dict[str, Any]]]]]:
    """Record the job and each of its tasks in the ledger (before anything is published)."""
    runtime = runtime_of(app)
    job_id = job_id or new_job_id()
    chunks = plan.chunks()
    task_ids = [f"{job_id}.{index}" for index in range(len(chunks))]
    record = job_record(plan, job_id, tenant, "accepted", time.time(), len(chunks), meta)
    tasks = {
        task_id: {"skill": skill, "items": items, "step": step}
        for task_id, (step, skill, items) in zip(task_ids, chunks, strict=True)
    }
    runtime.ledger.create_job(record, tasks, runtime.settings.result_expires_s)
    return job_id, task_ids, chunks


def dispatch_plan(
    app: Celery, plan: Plan, *, tenant: str | None = None, job_id: str | None = None
) -> JobHandle:
    """Record the plan in the ledger, then run it inline or publish it as a canvas."""
    runtime = runtime_of(app)
    tenant = tenant or runtime.settings.tenant
    job_id, task_ids, chunks = record_job(app, plan, tenant=tenant, job_id=job_id)
    handle = JobHandle(job_id=job_id, plan=plan, task_ids=task_ids, app=app)
    if plan.inline:
        with tenant_scope(tenant):  # the job's tenant scopes its cache entries
            _run_inline(app, handle, chunks)
        return handle
    chorded = plan.reduce is not None and runtime.settings.mode is Mode.DISTRIBUTED
    chained = plan.strategy == "sequential" and len(plan.steps) > 1
    # Outcomes live in the ledger, and the reduce reads them there. A chord's join only counts
    # its parts (the Redis backend does so with or without stored results), so the header keeps
    # its outcomes out of the result backend; a chain of groups (Celery turns it into chords
    # that pass results on) still stores them.
    signatures = [
        app.signature(
            BATCH_TASK,
            args=(skill, items),
            kwargs={"job_id": job_id},
            task_id=task_id,
            immutable=True,
            ignore_result=not chained,
            headers={TENANT_HEADER: tenant},  # workers key their cache entries by it
        )
        for task_id, (_, skill, items) in zip(task_ids, chunks, strict=True)
    ]
    canvas = _canvas(plan, signatures)
    reduce_sig = None
    if plan.reduce is not None:
        # Immutable: with a job id the reduce reads the outcomes from the ledger, so the chord
        # need not send every header result again in the reduce's message.
        reduce_sig = app.signature(
            REDUCE_TASK,
            args=([],),
            kwargs={"skill": plan.reduce.skill, "params": plan.reduce.params, "job_id": job_id},
            task_id=f"{job_id}.reduce",
            immutable=True,
        )
    runtime.ledger.set_status(job_id, "running")
    with app.producer_or_acquire() as producer:
        if reduce_sig is not None and chorded:
            # Redis backends join a chord natively, linear in the header size.
            handle.result = chord(canvas if isinstance(canvas, group) else [canvas])(
                reduce_sig, producer=producer
            )
            handle.fan_in = "chord"
        else:
            # The memory backend's chord is super-linear: fan in from the ledger instead.
            handle.result = canvas.apply_async(producer=producer)
            handle.fan_in = "collect" if reduce_sig is not None else "none"
    return handle


def attach_job(app: Celery, job_id: str) -> JobHandle:
    """A handle to follow a job another client dispatched (its fan-in runs on the fleet)."""
    ledger = runtime_of(app).ledger
    job = ledger.get_job(job_id)
    if job.meta.get("has_reduce") and runtime_of(app).settings.mode is not Mode.DISTRIBUTED:
        raise JobError(f"job {job_id} ran in another process's embedded worker; rerun it")
    plan = Plan(name=job.name, steps=[], chunk_size=1)
    return JobHandle(job_id=job_id, plan=plan, task_ids=sorted(ledger.task_specs(job_id)), app=app)


def _canvas(plan: Plan, signatures: list[Signature]) -> Any:
    if plan.strategy == "sequential" and len(plan.steps) > 1:
        by_step: dict[int, list[Signature]] = {}
        for (step, _, _), signature in zip(plan.chunks(), signatures, strict=True):
            by_step.setdefault(step, []).append(signature)
        return chain(*(group(sigs) for _, sigs in sorted(by_step.items())))
    return group(signatures)


def _run_inline(
    app: Celery, handle: JobHandle, chunks: list[tuple[int, str, list[dict[str, Any]]]]
) -> None:
    runtime = runtime_of(app)
    results = []
    for task_id, (_, skill, items) in zip(handle.task_ids, chunks, strict=True):
        outcomes = runtime.executor.run_batch(skill, items)
        runtime.ledger.record_result(handle.job_id, task_id, outcomes)
        results.append(outcomes)
    if handle.plan.reduce is not None:
        value = runtime.executor.run(
            handle.plan.reduce.skill, {**handle.plan.reduce.params, "results": results}
        )
        status, error = runtime.ledger.get_job(handle.job_id).item_outcome()
        runtime.ledger.set_status(handle.job_id, status, result=value, error=error)
    elif not handle.task_ids:
        runtime.ledger.set_status(handle.job_id, "succeeded")  # nothing to do, nothing failed


def wait_job(
    handle: JobHandle,
    *,
    timeout_s: float = 3600.0,
    on_progress: ProgressCallback | None = None,
    poll_s: float = 0.5,
    ride_out_s: float = 120.0,
    on_outage: Callable[[str], None] | None = None,
) -> JobRecord:
    """Follow a job to its end, reporting progress; run the fan-in for ``collect`` jobs.

    The follower reads the job each time the ledger says it changed (a result recorded, a new
    status: ``Ledger.watch``), and at least every ``poll_s`` (which also bounds how late a
    reduce that died without a word is noticed).

    Redis timeouts and lost connections are ridden out for up to ``ride_out_s`` at a time
    (``on_outage`` hears of each outage once); past that, ``JobOutcomeUnknownError`` says how
    to follow the job again. The job keeps running on the fleet meanwhile.
    """
    follower = _Follower(handle)
    try:
        return _follow(follower, handle, timeout_s, on_progress, poll_s, ride_out_s, on_outage)
    finally:
        follower.close()


def _follow(
    follower: _Follower,
    handle: JobHandle,
    timeout_s: float,
    on_progress: ProgressCallback | None,
    poll_s: float,
    ride_out_s: float,
    on_outage: Callable[[str], None] | None,
) -> JobRecord:
    deadline = time.monotonic() + timeout_s
    outage_since: float | None = None
    while True:
        try:
            job = follower.step(on_progress)
        except BackendUnavailableError as exc:
            now = time.monotonic()
            if outage_since is None:
                outage_since = now
                if on_outage is not None:
                    on_outage(str(exc))
            if now - outage_since > ride_out_s:
                raise JobOutcomeUnknownError(
                    f"job {handle.job_id}: Redis unreachable for {now - outage_since:.0f} s "
                    f"({exc}); the job may still finish on the fleet: follow it with "
                    f"victor run --attach {handle.job_id}"
                ) from exc
            time.sleep(min(1.0, max(poll_s, 0.1)))
            continue
        outage_since = None
        if job is not None:
            return job
        if time.monotonic() > deadline:
            current = runtime_of(handle.app).ledger.get_job(handle.job_id)
            raise JobError(
                f"job {handle.job_id} did not finish within {timeout_s:.0f} s "
                f"({current.done_tasks}/{current.total_tasks} tasks done); is a worker running?"
            )
        follower.pause(poll_s)


class _Follower:
    """One poll of a job: progress, the collected fan-in, the end (None while it runs)."""

    def __init__(self, handle: JobHandle) -> None:
        self.handle = handle
        self.runtime = runtime_of(handle.app)
        self.reduce_sent = False
        # Watch before the first read: a change after it wakes the follower.
        self.watch = self.runtime.ledger.watch(handle.job_id)

    def step(self, on_progress: ProgressCallback | None) -> JobRecord | None:
        handle, ledger = self.handle, self.runtime.ledger
        job = ledger.get_job(handle.job_id)
        if on_progress is not None:
            on_progress(job.done_tasks, job.total_tasks)
        if job.status in TERMINAL:
            return self._ended(job)
        if (
            handle.fan_in == "collect"
            and not self.reduce_sent
            and job.done_tasks >= job.total_tasks
        ):
            _send_collected_reduce(handle)
            self.reduce_sent = True
        failure = _celery_failure(handle)
        if failure is not None:
            ledger.set_status(handle.job_id, "failed", error=failure)
            return self._ended(ledger.get_job(handle.job_id))
        return None

    def _ended(self, job: JobRecord) -> JobRecord:
        release(self.handle)
        record_episode(self.runtime.settings, job.as_dict())
        return job

    def pause(self, poll_s: float) -> None:
        self.watch.wait(poll_s)

    def close(self) -> None:
        self.watch.close()


def _send_collected_reduce(handle: JobHandle) -> None:
    runtime = runtime_of(handle.app)
    plan = handle.plan
    assert plan.reduce is not None
    by_task = {
        event.task_id: event.outcome
        for event in runtime.ledger.events(handle.job_id, 0, len(handle.task_ids) + 1)
    }
    results = [by_task[task_id] for task_id in handle.task_ids if task_id in by_task]
    handle.result = handle.app.signature(
        REDUCE_TASK,
        args=(results,),
        kwargs={"skill": plan.reduce.skill, "params": plan.reduce.params, "job_id": handle.job_id},
        task_id=f"{handle.job_id}.reduce",
    ).apply_async()


def _celery_failure(handle: JobHandle) -> str | None:
    result = handle.result
    if result is None or handle.fan_in == "none":
        return None
    try:
        if not result.ready() or not result.failed():
            return None
        return f"{type(result.result).__name__}: {result.result}"
    except _UNREACHABLE as exc:  # Redis away: not the job's failure
        raise BackendUnavailableError(f"reading the reduce step's state: {exc}") from exc
    except Exception as exc:  # a result that cannot be read (tampered, foreign) is a failure
        return f"the reduce result could not be read ({type(exc).__name__}); see the worker log"


def release(handle: JobHandle) -> None:
    """Drop the backend's subscriptions for the job's Celery results (the ledger has them)."""
    result = handle.result
    handle.result = None
    pending = [result]
    while pending:
        current = pending.pop()
        if current is None:
            continue
        pending.extend(getattr(current, "results", None) or [])
        pending.append(getattr(current, "parent", None))
        remove = getattr(current.backend, "remove_pending_result", None)
        if remove is not None and getattr(current, "id", None):
            try:
                remove(current)
            except Exception:  # a stale subscription is a cache entry; dropping it loses nothing
                continue


def publish_window(
    app: Celery,
    job_id: str,
    task_ids: list[str],
    chunks: list[tuple[int, str, list[dict[str, Any]]]],
    window: int,
    timeout_s: float = 3600.0,
) -> dict[str, Any]:
    """Publish recorded tasks keeping at most ``window`` in flight; return outcomes by task id.

    A rolling window: a slow task holds one slot, not a whole wave.
    """
    runtime = runtime_of(app)
    ledger = runtime.ledger
    runtime.ledger.set_status(job_id, "running")
    pending = list(zip(task_ids, chunks, strict=True))
    outcomes: dict[str, Any] = {}
    in_flight = 0
    seen = 0
    deadline = time.monotonic() + timeout_s
    with app.producer_or_acquire() as producer:
        while len(outcomes) < len(task_ids):
            while pending and in_flight < window:
                task_id, (_, skill, items) = pending.pop(0)
                app.signature(
                    BATCH_TASK,
                    args=(skill, items),
                    kwargs={"job_id": job_id},
                    task_id=task_id,
                ).apply_async(producer=producer, ignore_result=True)
                in_flight += 1
            events = ledger.events(job_id, seen)
            for event in events:
                if event.task_id not in outcomes:
                    outcomes[event.task_id] = event.outcome
                    in_flight -= 1
            seen += len(events)
            if not events:
                if time.monotonic() > deadline:
                    raise JobError(f"job {job_id}: no result within {timeout_s:.0f} s")
                if isinstance(ledger, MemoryLedger):
                    ledger.wait(0.05)
                else:
                    time.sleep(0.002)
    return outcomes

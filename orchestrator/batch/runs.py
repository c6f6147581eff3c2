"""A batch run from request to outcome: the store, new or resumed runs, the plan, the reduce."""

from __future__ import annotations

import json
import os
import resource
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil
from celery import Celery
from pydantic import ValidationError

from orchestrator.batch.cache_hits import CacheHitCounter, response_hits
from orchestrator.batch.chunking import ChunkChoice, choose_chunk_size
from orchestrator.batch.collector import collector_for
from orchestrator.batch.driver import BatchDriver, BatchOptions, DriverStats, chunks_of
from orchestrator.batch.fleet_samples import (
    DecisionReader,
    FleetSampler,
    fleet_decisions,
    pool_reader,
)
from orchestrator.batch.inputs import BatchInputError, InputSource, count_records, read_records
from orchestrator.batch.output import (
    OutputFiles,
    errors_path_for,
    fleet_path_for,
    timings_path_for,
)
from orchestrator.batch.record import (
    ACTIVE,
    CANCELLED,
    FINISHED,
    ChunkSet,
    RunCancelledError,
    RunFinishedError,
    RunRecord,
    RunStore,
    fingerprint,
    new_run_id,
)
from orchestrator.batch.redis_store import RedisRunStore
from orchestrator.batch.sqlite_store import SqliteRunStore, run_store_path
from workers.core.errors import JobStateError
from workers.core.keys import Keys
from workers.core.names import REDUCE_TASK
from workers.core.settings import Mode, Settings
from workers.ledger import JobRecord
from workers.ledger.records import outcome_error, outcome_status
from workers.maintenance.episodes import memories_for
from workers.runtime import runtime_of
from workers.skills.registry import SkillRegistry

# (items done, items failed, cache hits so far or None when unknown)
RunProgressCallback = Callable[[int, int, int | None], None]
# (app, output file, reduce skill, its params) -> the reduce's value
Reducer = Callable[[Celery, str, str, dict[str, Any]], Any]
UNFINISHED_TASKS = 1 << 62  # the ledger job of a run never finishes by count; the driver ends it


@dataclass
class BatchRequest:
    """What ``victor batch`` was asked to do."""

    source: InputSource
    skill: str
    out: str
    params: dict[str, Any] = field(default_factory=dict)
    reduce: str | None = None
    reduce_params: dict[str, Any] = field(default_factory=dict)
    errors: str | None = None
    id_field: str | None = None
    chunk_size: int | None = None  # None: chosen when the run starts (batch.chunking)
    window: int = 8
    stale_after_s: float = 900.0

    def identity(self) -> dict[str, Any]:
        """The fields that make two commands the same run."""
        return {
            "input": self.source.location,
            "kind": self.source.kind,
            "skill": self.skill,
            "params": self.params,
            "reduce": self.reduce,
            "reduce_params": self.reduce_params,
            "out": os.path.abspath(self.out),
            "id_field": self.id_field,
            "chunk_size": self.chunk_size,
            "include": self.source.include,
            "exclude": self.source.exclude,
        }


def open_store(settings: Settings) -> RunStore:
    """Redis on a fleet; the cache directory's SQLite file in embedded mode."""
    if settings.mode is Mode.DISTRIBUTED:
        return RedisRunStore(
            settings.state_url, Keys(settings.key_prefix), settings.result_expires_s
        )
    return SqliteRunStore(run_store_path(settings))


def check_request(request: BatchRequest, registry: SkillRegistry) -> None:
    """Everything checkable before a run starts: the skills and the reduce's parameters."""
    registry.get(request.skill)  # an unknown skill names the known ones
    if request.reduce is not None:
        spec = registry.get(request.reduce)
        try:
            spec.input_model.model_validate({**request.reduce_params, "results": []})
        except ValidationError as exc:
            first = exc.errors()[0]
            raise BatchInputError(
                f"--reduce-params do not fit skill {request.reduce!r}: "
                f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
            ) from exc


def open_run(
    request: BatchRequest, settings: Settings, store: RunStore, *, resume: str | None, new: bool
) -> tuple[RunRecord, bool]:
    """The run to drive: the one named by ``resume``, the unfinished one of the same command,
    or a new one. Returns the record and whether it resumes."""
    print_id = fingerprint(request.identity())
    record: RunRecord | None = None
    if resume is not None:
        record = store.get(resume)
    elif not new:
        record = store.find_latest(settings.tenant, print_id)
        if record is not None and record.status in FINISHED:
            raise RunFinishedError(
                f"batch run {record.run_id} of this command already finished "
                f"({record.status}) into {record.out}; pass --new to run it again",
                record.status,
            )
        if record is not None and record.status not in ACTIVE:
            record = None  # a cancelled run is not picked up again by itself
    if record is not None:
        _check_resumable(record)
        store.update(record.run_id, status="running", host=socket.gethostname(), pid=os.getpid())
        record.status = "running"
        return record, True
    record = RunRecord(
        run_id=new_run_id(),
        tenant=settings.tenant,
        fingerprint=print_id,
        status="running",
        skill=request.skill,
        input=request.source.location,
        out=os.path.abspath(request.out),
        errors=os.path.abspath(request.errors or errors_path_for(request.out)),
        chunk_size=request.chunk_size or _auto_chunk(request, settings).size,
        options=request.identity(),
        host=socket.gethostname(),
        pid=os.getpid(),
    )
    store.create(record)
    return record, False


def _auto_chunk(request: BatchRequest, settings: Settings, items: int | None = None) -> ChunkChoice:
    if request.chunk_size:
        return ChunkChoice(request.chunk_size, "--chunk-size")
    if items is None:
        items = count_records(request.source, settings)
    return choose_chunk_size(settings, request.skill, items, request.window)


def _check_resumable(record: RunRecord) -> None:
    if record.status in FINISHED:
        raise JobStateError(
            f"batch run {record.run_id} already finished ({record.status}) into {record.out}; "
            "nothing to resume (pass --new to run it again)"
        )
    if record.host == socket.gethostname() and record.pid != os.getpid():
        if psutil.pid_exists(record.pid) and record.status == "running":
            try:
                alive = "victor" in " ".join(psutil.Process(record.pid).cmdline())
            except psutil.Error:
                alive = False
            if alive:
                raise JobStateError(
                    f"batch run {record.run_id} is being driven by pid {record.pid}; "
                    f"wait for it or cancel it with victor batch cancel {record.run_id}"
                )


def drive_run(
    app: Celery,
    store: RunStore,
    record: RunRecord,
    request: BatchRequest,
    *,
    resuming: bool,
    on_progress: RunProgressCallback | None = None,
    reducer: Reducer | None = None,
    tuner_decisions: DecisionReader | None = None,
) -> dict[str, Any]:
    """Run (or finish) ``record`` with the app's workers; return the run's summary.

    ``reducer`` runs the reduce (default ``run_reduce``; the API publishes it under its lock).
    ``tuner_decisions`` reads the tuner's decisions for the pool samples (default: the fleet's
    decision stream; embedded, the session's tuner journal when the caller passes it).
    """
    runtime = runtime_of(app)
    settings = runtime.settings
    started = time.monotonic()
    committed = store.chunks(record.run_id) if resuming else None
    if committed is not None and len(committed) != record.chunks_done:
        record.chunks_done = len(committed)
    skipped = record.chunks_done if resuming else 0
    _record_ledger_job(app, record)
    timings = record.timings or timings_path_for(record.out)
    if record.timings is None:
        store.update(record.run_id, timings=timings)
    files = OutputFiles(
        record.out, record.errors, record.out_bytes, record.err_bytes, timings=timings
    )
    # Embedded, the figures are this process's and cheap to read; a fleet's are a Redis scan.
    every_s = 0.2 if settings.mode is Mode.EMBEDDED else 1.0
    counter = CacheHitCounter(response_hits(settings), every_s=every_s)

    def progressed(done: int, failed: int) -> None:
        if on_progress is not None:
            on_progress(done, failed, counter.hits())

    stats = DriverStats(record.done_items, record.failed_items, record.chunks_done)
    options = BatchOptions(
        run_id=record.run_id,
        spec=runtime.registry.get(request.skill),
        params=request.params,
        chunk_size=record.chunk_size,
        window=request.window,
        tenant=record.tenant,  # the run's own (an API run's is its key's, not the server's)
        id_field=request.id_field,
        stale_after_s=request.stale_after_s,
        resuming=resuming,
    )
    done = committed if committed is not None else ChunkSet()
    skip_started = time.monotonic()
    records = read_records(
        request.source, settings, parse=lambda index: index // record.chunk_size not in done
    )
    driver = BatchDriver(
        app, store, files, collector_for(app, record.run_id), options, stats, progressed
    )
    sampler = FleetSampler(
        fleet_path_for(record.out),
        pool_reader(settings),
        tuner_decisions or fleet_decisions(settings),
        skip_empty=settings.mode is Mode.EMBEDDED,
    ).start()
    try:
        driver.run(chunks_of(records, record.chunk_size, done, record.run_id))
    except RunCancelledError:
        store.update(record.run_id, status=CANCELLED)
        runtime.ledger.set_status(record.run_id, "revoked")
        raise
    except BaseException as exc:  # Ctrl-C or a failure: the run can be resumed
        store.update(
            record.run_id, status="interrupted", error=f"{type(exc).__name__}: {exc}"[:500]
        )
        raise
    finally:
        sampler.stop()
        files.close()
    elapsed = time.monotonic() - started
    status = outcome_status(stats.failed_items, stats.done_items) if stats.done_items else "failed"
    error = outcome_error(stats.failed_items, stats.done_items) or (
        None if stats.done_items else "the input holds no items"
    )
    result = None
    if request.reduce is not None and stats.done_items:
        result = (reducer or run_reduce)(app, record.out, request.reduce, request.reduce_params)
    ran = stats.items_sent
    hits = counter.hits(fresh=True)
    store.update(
        record.run_id,
        status=status,
        error=error,
        total_items=stats.done_items,
        result=result,
        elapsed_s=round(elapsed, 3),
        items_run=ran,
        cache_hits=hits,
    )
    runtime.ledger.set_status(record.run_id, status, error=error)
    return {
        "run_id": record.run_id,
        "status": status,
        "items": stats.done_items,
        "failed_items": stats.failed_items,
        "skipped_chunks": skipped,
        "recovered_chunks": stats.recovered_chunks,
        "republished_chunks": stats.republished,
        "items_run": ran,
        "elapsed_s": round(elapsed, 3),
        "items_per_s": round(ran / elapsed, 1) if elapsed > 0 else None,
        "resume_skip_s": round(skip_started - started + (stats.first_chunk_s or 0.0), 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "cache_hits": hits,
        "out": record.out,
        "errors": record.errors,
        "timings": timings,
        "fleet": sampler.path,
        "error": error,
        "result": result,
    }


def _record_ledger_job(app: Celery, record: RunRecord) -> None:
    """The ledger job the run's tasks record into (id = run id; it never finishes by count)."""
    runtime = runtime_of(app)
    now = time.time()
    job = JobRecord(
        job_id=record.run_id,
        tenant=record.tenant,
        name=f"batch {record.skill}",
        status="running",
        created_at=now,
        updated_at=now,
        total_tasks=UNFINISHED_TASKS,
        meta={"batch": True, "has_reduce": False, "items": 0},
    )
    runtime.ledger.create_job(job, {}, runtime.settings.result_expires_s)


def run_reduce(app: Celery, out: str, skill: str, params: dict[str, Any]) -> Any:
    """Run the reduce skill over the run's outcomes, read back from the output file."""
    result = app.signature(
        REDUCE_TASK, args=([reduce_outcomes(out)],), kwargs={"skill": skill, "params": params}
    )
    return result.apply_async().get(timeout=3600, disable_sync_subtasks=False)


def reduce_outcomes(out: str) -> list[dict[str, Any]]:
    """The run's outcomes as a reduce takes them, read back from the output file."""
    outcomes: list[dict[str, Any]] = []
    with open(out, "rb") as stream:
        for raw in stream:
            line = json.loads(raw)
            if line.get("ok"):
                outcomes.append({"ok": True, "value": line.get("result")})
            else:
                outcomes.append({"ok": False, "error": line.get("error"), "item": line.get("id")})
    return outcomes


def plan_summary(
    request: BatchRequest, settings: Settings, registry: SkillRegistry, workers_seen: int
) -> dict[str, Any]:
    """What ``--dry-run`` prints: items, chunks, workers and an estimate when facts allow."""
    items = count_records(request.source, settings)
    choice = _auto_chunk(request, settings, items)
    chunk_size = request.chunk_size or choice.size
    chunks = None if items is None else -(-items // chunk_size)
    estimate = None
    try:
        facts = memories_for(settings)[1].facts(request.skill).get(request.skill, {})
    except Exception:  # facts are advice: a missing store means no estimate, not an error
        facts = {}
    per_task_ms = facts.get("avg_latency_ms")
    if per_task_ms and chunks is not None:
        slots = max(1, workers_seen * settings.effective_concurrency)
        estimate = round(per_task_ms / 1000 * chunks / slots, 1)
    return {
        "input": request.source.location,
        "kind": request.source.kind,
        "skill": request.skill,
        "items": items,
        "chunks": chunks,
        "chunk_size": chunk_size,
        "chunk_size_from": "--chunk-size" if request.chunk_size else choice.reason,
        "window": request.window,
        "mode": settings.mode.value,
        "workers_seen": workers_seen,
        "estimated_s": estimate,
        "out": os.path.abspath(request.out),
        "errors": os.path.abspath(request.errors or errors_path_for(request.out)),
    }

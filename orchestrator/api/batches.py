"""Batch runs as the API sees them: start (checked, idempotent), read, list, output, cancel.

A run started here is an ordinary batch run (``orchestrator.batch``): its items are written
to ``batch_dir/<tenant>/<run id>/input.jsonl``, its record is in the fleet's run store with
the key's tenant, and a thread of this process drives it (the driver is synchronous and
bounds its work in flight). If the process dies, the run stays resumable on this host with
``victor batch --resume RUN_ID`` and the API's settings.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from celery import Celery

from orchestrator.api.batch_checks import check_spec, spec_hash
from orchestrator.api.batch_views import links
from orchestrator.api.jobs import IN_FLIGHT_S, reserve_idempotency_key
from orchestrator.api.keystore import Principal
from orchestrator.api.models import BatchSpec
from orchestrator.api.quotas import admit_in_flight
from orchestrator.api.services import Services, broker_translated
from orchestrator.batch.chunking import choose_chunk_size, explicit_chunk_size
from orchestrator.batch.handle import write_items
from orchestrator.batch.inputs import input_source
from orchestrator.batch.output import errors_path_for
from orchestrator.batch.record import (
    ACTIVE,
    CANCELLED,
    RunCancelledError,
    RunNotFoundError,
    RunRecord,
    RunStore,
    fingerprint,
    new_run_id,
)
from orchestrator.batch.runs import BatchRequest, drive_run, open_store, reduce_outcomes
from workers.celery_app.internals import remove_pending_result
from workers.core.errors import IdempotencyError, JobError, JobStateError
from workers.core.names import REDUCE_TASK
from workers.core.redis_client import translated
from workers.core.settings import Settings
from workers.skills.spec import SkillSpec

log = logging.getLogger(__name__)

PROGRESS_WRITE_S = 1.0  # how often a running run's cache hits are written to its record
REDUCE_POLL_S = 0.2
REDUCE_TIMEOUT_S = 3600.0
READ_BLOCK = 64 * 1024


class ReduceFailedError(JobError):
    """Raised when an API batch run's reduce step fails or does not finish in time."""


def batch_root(settings: Settings) -> Path:
    """``batch_dir``; unset, ``cache_dir/batches`` (the system's temp dir with no cache dir)."""
    if settings.batch_dir:
        return Path(os.path.expanduser(settings.batch_dir))
    base = settings.cache_dir or os.path.join(tempfile.gettempdir(), "victor-fleet")
    return Path(base) / "batches"


class BatchRunner:
    """Starts and follows batch runs for one API app; each run drives in its own thread."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self._store: RunStore | None = None
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()

    @property
    def store(self) -> RunStore:
        if self._store is None:  # built on first use: no connection at app creation
            self._store = open_store(self.services.settings)
        return self._store

    def running(self) -> list[str]:
        """The ids of the runs this process is driving now."""
        with self._lock:
            return [run_id for run_id, thread in self._threads.items() if thread.is_alive()]

    def wait(self, timeout_s: float) -> list[str]:
        """Wait up to ``timeout_s`` for this process's runs to end; the ids still running."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            threads = list(self._threads.values())
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return self.running()

    # --- reading ------------------------------------------------------------------------
    def get(self, principal: Principal, run_id: str) -> RunRecord:
        """The caller's run; another tenant's is reported as missing (404, never 403)."""
        record = self.store.get(run_id)
        if record.tenant != principal.tenant:
            raise RunNotFoundError(f"no batch run with id {run_id!r}")
        return record

    def list_runs(self, principal: Principal, limit: int) -> list[RunRecord]:
        return self.store.runs(principal.tenant, limit)

    def output(self, principal: Principal, run_id: str, failed: bool) -> Iterator[bytes]:
        """The run's committed output lines (or its errors file's): each item once, so far."""
        record = self.get(principal, run_id)
        path, size = (record.errors, record.err_bytes) if failed else (record.out, record.out_bytes)
        if size and not os.path.exists(path):
            raise RunNotFoundError(
                f"the output of batch run {run_id} is not on this API host ({path}); read it "
                "from the API that started the run, or share batch_dir between API hosts"
            )
        return _read_upto(path, size)

    def cancel(self, principal: Principal, run_id: str) -> RunRecord:
        """Mark the run cancelled; its driver stops at its next check (as victor batch cancel)."""
        record = self.get(principal, run_id)
        if record.status == CANCELLED:
            return record
        if record.status not in ACTIVE:
            raise JobStateError(
                f"batch run {run_id} already {record.status}; only unfinished runs cancel"
            )
        self.store.update(run_id, status=CANCELLED)
        return self.store.get(run_id)

    # --- starting -----------------------------------------------------------------------
    def start(
        self, principal: Principal, spec: BatchSpec, idempotency_key: str | None
    ) -> tuple[dict[str, Any], bool]:
        """Check, record and start a run; ``(accepted view, replayed)``.

        With an Idempotency-Key the same key and body give the same run (within
        ``api_idempotency_ttl_s``); the same key with another body is refused (422).
        """
        services = self.services
        skill = check_spec(services, spec)
        body_hash = spec_hash(spec)
        idem_key = None
        if idempotency_key is not None:
            digest = hashlib.sha256(f"batch\n{idempotency_key}".encode()).hexdigest()
            idem_key = services.keys.idempotency(principal.tenant, f"batch-{digest}")
            replay = self._replay(idem_key, body_hash)
            if replay is not None:
                return replay, True
        run_id = new_run_id()
        admit_in_flight(
            services.redis,
            services.keys,
            services.settings,
            principal.tenant,
            run_id,
            len(spec.items),
        )
        if idem_key is not None:
            key = idem_key
            replay = reserve_idempotency_key(
                services,
                key,
                {"body": body_hash, "run_id": run_id},
                lambda: self._replay(key, body_hash),
            )
            if replay is not None:
                return replay, True
        try:
            record, request = self._record(principal, spec, skill, run_id)
        except BaseException:
            if idem_key is not None:
                with contextlib.suppress(Exception), translated("freeing an Idempotency-Key"):
                    services.redis.delete(idem_key)
            raise
        thread = threading.Thread(
            target=self._drive, args=(record, request), name=f"batch-{run_id}", daemon=True
        )
        with self._lock:
            self._threads[run_id] = thread
        thread.start()
        accepted = {"id": run_id, "status": "running", "items": len(spec.items)}
        return {**accepted, "links": links(run_id)}, False

    def _replay(self, idem_key: str, body_hash: str) -> dict[str, Any] | None:
        """The run an Idempotency-Key names; None when the key is free (again)."""
        with translated("reading an Idempotency-Key"):
            raw = self.services.redis.get(idem_key)
        if raw is None:
            return None
        stored = json.loads(raw)
        if stored["body"] != body_hash:
            raise IdempotencyError(
                "Idempotency-Key was already used with a different body; use a new key for a "
                "new batch run"
            )
        try:
            record = self.store.get(stored["run_id"])
        except RunNotFoundError as exc:
            if time.time() - float(stored.get("at", 0)) > IN_FLIGHT_S:
                with translated("releasing an Idempotency-Key"):
                    self.services.redis.delete(idem_key)
                return None
            raise IdempotencyError(
                "a request with this Idempotency-Key is still being recorded; retry in a second",
                in_flight=True,
            ) from exc
        accepted = {"id": record.run_id, "status": record.status, "items": record.total_items}
        return {**accepted, "links": links(record.run_id)}

    def _record(
        self, principal: Principal, spec: BatchSpec, skill: SkillSpec, run_id: str
    ) -> tuple[RunRecord, BatchRequest]:
        """Write the items under ``batch_dir`` and create the run's record (the key's tenant)."""
        settings = self.services.settings
        directory = batch_root(settings) / principal.tenant / run_id
        directory.mkdir(parents=True, mode=0o700)
        location = str(directory / "input.jsonl")
        write_items(spec.items, location)
        out = str(directory / "results.jsonl")
        request = BatchRequest(
            source=input_source(location, "jsonl", file_param=skill.file_param),
            skill=spec.skill,
            out=out,
            params=spec.params,
            reduce=spec.reduce,
            reduce_params=spec.reduce_params,
            id_field=spec.id_field,
            chunk_size=spec.chunk_size or explicit_chunk_size(settings),
            window=max(4, 2 * settings.effective_concurrency),
            stale_after_s=float(settings.reconciler_stale_after_s),
        )
        # As victor batch: unless given, sized from the skill's observed time per item.
        chunk_size = request.chunk_size or (
            choose_chunk_size(settings, spec.skill, len(spec.items), request.window).size
        )
        record = RunRecord(
            run_id=run_id,
            tenant=principal.tenant,
            fingerprint=fingerprint(request.identity()),
            status="running",
            skill=spec.skill,
            input=location,
            out=out,
            errors=errors_path_for(out),
            chunk_size=chunk_size,
            options=request.identity(),
            host=socket.gethostname(),
            pid=os.getpid(),
            total_items=len(spec.items),
        )
        self.store.create(record)
        return record, request

    # --- driving (in the run's thread) --------------------------------------------------
    def _drive(self, record: RunRecord, request: BatchRequest) -> None:
        store, run_id = self.store, record.run_id
        last_write = time.monotonic()

        def progressed(done: int, failed: int, hits: int | None) -> None:
            nonlocal last_write
            if hits is not None and time.monotonic() - last_write >= PROGRESS_WRITE_S:
                last_write = time.monotonic()
                store.update(run_id, cache_hits=hits)

        try:
            drive_run(
                self.services.app,
                store,
                record,
                request,
                resuming=False,
                on_progress=progressed,
                reducer=self._reduce,
            )
        except RunCancelledError:
            log.info("batch run %s cancelled", run_id)
        except ReduceFailedError as exc:  # every item is written; the run's value is not
            log.warning("batch run %s failed: %s", run_id, exc)
            with contextlib.suppress(Exception):
                store.update(run_id, status="failed", error=str(exc)[:500])
                self.services.ledger.set_status(run_id, "failed", error=str(exc)[:500])
        except Exception as exc:  # resumable with the CLI (victor batch --resume)
            log.exception("batch run %s stopped; resume it with victor batch --resume", run_id)
            # drive_run records a failure of its driver; one before the driver started, not.
            with contextlib.suppress(Exception):
                if store.get(run_id).status == "running":
                    error = f"{type(exc).__name__}: {exc}"[:500]
                    store.update(run_id, status="interrupted", error=error)
        finally:
            with self._lock:
                self._threads.pop(run_id, None)

    def _reduce(self, app: Celery, out: str, skill: str, params: dict[str, Any]) -> Any:
        """The run's reduce, published under the API's dispatch lock (Celery's result consumer
        is one per app) and then polled, so it holds no lock while it runs."""
        outcomes = reduce_outcomes(out)
        lock = self.services.dispatch_lock
        with lock, broker_translated("publishing a batch run's reduce"):
            result = app.signature(
                REDUCE_TASK, args=([outcomes],), kwargs={"skill": skill, "params": params}
            ).apply_async()
        try:
            deadline = time.monotonic() + REDUCE_TIMEOUT_S
            with broker_translated("waiting for a batch run's reduce"):
                while not result.ready():
                    if time.monotonic() > deadline:
                        raise ReduceFailedError(
                            f"reduce step did not finish in {REDUCE_TIMEOUT_S:.0f} s"
                        )
                    time.sleep(REDUCE_POLL_S)
                if result.failed():
                    error = result.result
                    raise ReduceFailedError(f"reduce step failed: {type(error).__name__}: {error}")
                return result.result
        finally:
            with lock, contextlib.suppress(Exception):  # a stale subscription loses nothing
                remove_pending_result(result.backend, result)


def _read_upto(path: str, size: int) -> Iterator[bytes]:
    """The first ``size`` bytes of ``path``, a block at a time."""
    if not size:
        return
    with open(path, "rb") as stream:
        left = size
        while left > 0:
            block = stream.read(min(READ_BLOCK, left))
            if not block:
                return
            left -= len(block)
            yield block

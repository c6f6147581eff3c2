"""The in-process ledger of embedded mode: jobs, results and dead letters in dictionaries."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

from workers.core.errors import JobNotFoundError
from workers.ledger.records import (
    FINISHED_JOB,
    MAX_DELTAS,
    RECORDED,
    TERMINAL,
    DeltaEvent,
    JobRecord,
    TaskEvent,
    failed_items,
    outcome_error,
    outcome_status,
    reduce_task_id,
)


class MemoryLedger:
    """In-process ledger for embedded mode."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._jobs: dict[str, JobRecord] = {}
        self._tasks: dict[str, dict[str, dict[str, Any]]] = {}
        self._results: dict[str, dict[str, Any]] = {}
        self._events: dict[str, list[TaskEvent]] = {}
        self._deltas: dict[str, deque[DeltaEvent]] = {}
        self._open: dict[tuple[str, str], float] = {}
        self._deliveries: dict[str, int] = {}
        self._dead: dict[str, dict[str, Any]] = {}

    def create_job(self, job: JobRecord, tasks: dict[str, dict[str, Any]], ttl_s: int) -> None:
        with self._lock:
            self._jobs[job.job_id] = job
            self._tasks[job.job_id] = dict(tasks)
            self._results[job.job_id] = {}
            self._events[job.job_id] = []
            now = time.time()
            for task_id in tasks:
                self._open[(job.job_id, task_id)] = now
            if job.meta.get("has_reduce"):
                self._open[(job.job_id, reduce_task_id(job.job_id))] = now

    def get_job(self, job_id: str) -> JobRecord:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                raise JobNotFoundError(f"no job with id {job_id!r}")
            job.done_tasks = len(self._results[job_id])
            return job

    def set_status(
        self, job_id: str, status: str, *, result: Any = None, error: str | None = None
    ) -> None:
        with self._lock:
            job = self.get_job(job_id)
            job.status = status
            job.updated_at = time.time()
            if result is not None:
                job.result = result
            if error is not None:
                job.error = error
            if status in TERMINAL:
                self._open.pop((job_id, reduce_task_id(job_id)), None)
            self._lock.notify_all()

    def begin_task(self, task_id: str, job_id: str | None = None) -> int:
        with self._lock:
            self._deliveries[task_id] = self._deliveries.get(task_id, 0) + 1
            if job_id is not None and (job_id, task_id) in self._open:
                self._open[(job_id, task_id)] = time.time()
            return self._deliveries[task_id]

    def begin(self, job_id: str, task_id: str) -> tuple[Any, int]:
        with self._lock:
            return self.get_result(job_id, task_id), self.begin_task(task_id, job_id)

    def get_result(self, job_id: str, task_id: str) -> Any:
        with self._lock:
            return self._results.get(job_id, {}).get(task_id)

    def results(self, job_id: str) -> dict[str, Any]:
        with self._lock:
            return dict(self._results.get(job_id, {}))

    def touch_open(self, job_id: str, task_id: str) -> None:
        with self._lock:
            self._open[(job_id, task_id)] = time.time()

    def close_open(self, job_id: str, task_id: str) -> None:
        with self._lock:
            self._open.pop((job_id, task_id), None)

    def replay_task(self, job_id: str, task_id: str) -> None:
        with self._lock:
            job = self.get_job(job_id)
            previous = self._results.get(job_id, {}).pop(task_id, None)
            job.failed_items -= failed_items(previous)
            job.error = None
            self._deliveries.pop(task_id, None)
            self._dead.pop(task_id, None)
            now = time.time()
            self._open[(job_id, task_id)] = now
            if job.meta.get("has_reduce"):
                self._open[(job_id, reduce_task_id(job_id))] = now
            job.status = "running"
            job.result = None
            job.updated_at = now

    def record_result(self, job_id: str, task_id: str, outcome: Any, worker: str = "") -> int:
        with self._lock:
            results = self._results.setdefault(job_id, {})
            if task_id in results:
                return 0
            recorded = RECORDED
            results[task_id] = outcome
            job = self._jobs.get(job_id)
            if job:
                job.failed_items += failed_items(outcome)
            if (
                job
                and not job.meta.get("has_reduce")
                and job.status != "revoked"
                and len(results) >= job.total_tasks
            ):
                items = int(job.meta.get("items", 0))
                job.status = outcome_status(job.failed_items, items)
                job.error = outcome_error(job.failed_items, items) or job.error
                job.updated_at = time.time()
                recorded = FINISHED_JOB
            events = self._events.setdefault(job_id, [])
            events.append(TaskEvent(len(events) + 1, task_id, outcome, worker))
            self._open.pop((job_id, task_id), None)
            self._deliveries.pop(task_id, None)
            self._lock.notify_all()
            return recorded

    def events(self, job_id: str, after_seq: int = 0, limit: int = 1000) -> list[TaskEvent]:
        with self._lock:
            self.get_job(job_id)
            return self._events[job_id][after_seq : after_seq + limit]

    def publish_delta(self, job_id: str, task_id: str, item: int, offset: int, text: str) -> None:
        with self._lock:
            deltas = self._deltas.setdefault(job_id, deque(maxlen=MAX_DELTAS))
            seq = deltas[-1].seq + 1 if deltas else 1
            deltas.append(DeltaEvent(seq, task_id, item, offset, text))
            self._lock.notify_all()

    def deltas(self, job_id: str, after_seq: int = 0, limit: int = 1000) -> list[DeltaEvent]:
        with self._lock:
            found = [delta for delta in self._deltas.get(job_id, ()) if delta.seq > after_seq]
            return found[:limit]

    def task_specs(self, job_id: str) -> dict[str, dict[str, Any]]:
        with self._lock:
            self.get_job(job_id)
            return dict(self._tasks[job_id])

    def stale_tasks(self, older_than_s: float) -> list[tuple[str, str]]:
        cutoff = time.time() - older_than_s
        with self._lock:
            return [key for key, accepted in self._open.items() if accepted < cutoff]

    def list_jobs(self, tenant: str, offset: int = 0, limit: int = 50) -> list[JobRecord]:
        with self._lock:
            jobs = [job for job in self._jobs.values() if job.tenant == tenant]
        jobs.sort(key=lambda job: job.created_at, reverse=True)
        return jobs[offset : offset + limit]

    def dead_letter(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._dead[entry["task_id"]] = entry

    def dead_letters(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._dead.values())

    def remove_dead_letter(self, task_id: str) -> bool:
        with self._lock:
            return self._dead.pop(task_id, None) is not None

    def wait(self, timeout_s: float) -> None:
        """Block until any result or status is recorded, or ``timeout_s`` passes."""
        with self._lock:
            self._lock.wait(timeout_s)

    def watch(self, job_id: str) -> _MemoryWatch:
        """Wake-ups on any change in this ledger (one process: every job shares the lock)."""
        return _MemoryWatch(self)


class _MemoryWatch:
    def __init__(self, ledger: MemoryLedger) -> None:
        self._ledger = ledger

    def wait(self, timeout_s: float) -> None:
        self._ledger.wait(timeout_s)

    def close(self) -> None:
        """Nothing to release: the watch holds no connection."""

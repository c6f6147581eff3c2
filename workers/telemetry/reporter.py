"""Worker reporting: Celery signals -> per-process pending windows -> the metrics store.

Per task (in the process that runs it): queue wait (publish to start, from a header stamped at
publish time), run time, outcome, retries, by skill; RSS before and after. Per process: RSS and
CPU (psutil). Per worker (its Celery hostname): the same task windows summed over its processes
(and running totals the tuner differences), and from the main process its pool
(``workers.telemetry.sampler``).

The signal handlers only add to in-process dicts; a background thread per process swaps them
out and writes one pipeline per flush (``metrics_flush_interval_s``), into 10 s buckets that
expire after ``metrics_retention_s``. A failed flush is dropped, so memory stays bounded.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from workers.core.keys import Keys
from workers.core.names import BATCH_TASK, REDUCE_TASK, SKILL_TASK_PREFIX
from workers.core.settings import Settings
from workers.telemetry.histograms import latency_bucket
from workers.telemetry.process import PROCESS_TTL_S, check_process_memory, current_rss_kb
from workers.telemetry.slot_wait import take_slot_wait
from workers.telemetry.store import MetricsStore, store_for

logger = logging.getLogger(__name__)

_MAX_STARTED = 10_000


def skill_of(task_name: str, args: Any, kwargs: Any) -> str:
    """The skill a task runs: victor.skill.<name>, or the skill argument of batch/reduce."""
    if task_name.startswith(SKILL_TASK_PREFIX):
        return task_name[len(SKILL_TASK_PREFIX) :]
    if task_name in (BATCH_TASK, REDUCE_TASK):
        skill = (kwargs or {}).get("skill")
        if skill is None and args:
            skill = args[0] if task_name == BATCH_TASK else (args[1] if len(args) > 1 else None)
        if isinstance(skill, str):
            return skill
    return task_name


def _units(task_name: str, args: Any, kwargs: Any, retval: Any, ok: bool) -> tuple[int, int]:
    """(work units, failed units): the items of a batch, else one call."""
    if task_name == BATCH_TASK:
        if ok and isinstance(retval, list):
            failed = sum(
                1 for outcome in retval if isinstance(outcome, dict) and not outcome.get("ok")
            )
            return len(retval), failed
        if ok and isinstance(retval, dict) and {"items", "failed"} <= retval.keys():
            return int(retval["items"]), int(retval["failed"])  # a ledgered batch's receipt
        items = (kwargs or {}).get("items")
        if items is None and args and len(args) > 1:
            items = args[1]
        count = len(items) if isinstance(items, list) else 1
        return count, count
    return 1, 0 if ok else 1


def _count_run(
    window: dict[str, int], units: int, run_us: int, run_index: int, ok: bool, failed_units: int
) -> None:
    """Add one finished task to a window (a skill's or the worker's): the same fields in both."""
    window["n"] = window.get("n", 0) + 1
    window["units"] = window.get("units", 0) + units
    window["run_us"] = window.get("run_us", 0) + run_us
    field = f"h:{run_index}"
    window[field] = window.get(field, 0) + 1
    if not ok:
        window["fail"] = window.get("fail", 0) + 1
    if failed_units:
        window["ufail"] = window.get("ufail", 0) + failed_units


class Reporter:
    """Collects task figures of one app in this process and flushes them in the background."""

    def __init__(self, settings: Settings, store: MetricsStore | None = None) -> None:
        self.settings = settings
        self.keys = Keys(settings.key_prefix)
        self.store = store or store_for(settings)
        self.bucket_s = settings.metrics_bucket_s
        self.bucket_ttl_s = settings.metrics_retention_s + settings.metrics_bucket_s
        self.hostname = ""
        self._lock = threading.Lock()
        self._started: dict[str, tuple[float, float | None, int]] = {}
        self._windows: dict[tuple[str, int], dict[str, int]] = {}
        self._worker_windows: dict[int, dict[str, int]] = {}
        self._jobs: dict[str, dict[str, int]] = {}
        self._tasks_done = 0
        self._pid = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._process: Any = None
        self.worker_sampler: Callable[[], dict[str, Any]] | None = None

    # --- hot path -------------------------------------------------------------------------
    def task_started(self, task_id: str, published_at: float | None) -> None:
        if self._pid != os.getpid():
            self._start_thread()
        if len(self._started) > _MAX_STARTED:
            self._started.clear()  # tasks that never finished here (killed); do not grow
        take_slot_wait()  # a fresh count for this task
        self._started[task_id] = (time.perf_counter(), published_at, current_rss_kb())

    def task_finished(
        self, task_id: str, task_name: str, args: Any, kwargs: Any, retval: Any, state: str
    ) -> None:
        started = self._started.pop(task_id, None)
        if started is None:
            return
        began, published_at, rss_before = started
        # Waiting for a provider slot is queue time, not run time (workers.providers.limits).
        slot_wait_us = int(take_slot_wait() * 1_000_000)
        run_us = max(0, int((time.perf_counter() - began) * 1_000_000) - slot_wait_us)
        rss_growth = current_rss_kb() - rss_before
        skill = skill_of(task_name, args, kwargs)
        bucket = int(time.time() // self.bucket_s)
        retry = state == "RETRY"
        ok = state == "SUCCESS"
        units, failed_units = (0, 0) if retry else _units(task_name, args, kwargs, retval, ok)
        run_index = latency_bucket(run_us / 1000)
        wait_us = None
        if published_at is not None:
            wait_us = max(0, int((time.time() - run_us / 1_000_000 - published_at) * 1_000_000))
        elif slot_wait_us:
            wait_us = slot_wait_us
        job_id = (kwargs or {}).get("job_id") if task_name.startswith("victor.") else None
        with self._lock:
            window = self._windows.get((skill, bucket))
            if window is None:
                window = self._windows[(skill, bucket)] = {}
            if retry:
                window["retry"] = window.get("retry", 0) + 1
                return
            _count_run(window, units, run_us, run_index, ok, failed_units)
            if wait_us is not None:
                window["waited"] = window.get("waited", 0) + 1
                window["wait_us"] = window.get("wait_us", 0) + wait_us
                field = f"w:{latency_bucket(wait_us / 1000)}"
                window[field] = window.get(field, 0) + 1
            mine = self._worker_windows.get(bucket)
            if mine is None:
                mine = self._worker_windows[bucket] = {}
            _count_run(mine, units, run_us, run_index, ok, failed_units)
            if isinstance(job_id, str):
                stats = self._jobs.get(job_id)
                if stats is None:
                    stats = self._jobs[job_id] = {}
                for name, amount in (
                    ("n", 1),
                    ("fail", 0 if ok else 1),
                    ("units", units),
                    ("ufail", failed_units),
                    ("run_us", run_us),
                    ("rss_kb", rss_growth),
                    (f"h:{run_index}", 1),
                ):
                    field = f"{skill}|{name}"
                    stats[field] = stats.get(field, 0) + amount
            self._tasks_done += 1

    # --- background -----------------------------------------------------------------------
    def _start_thread(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                return
            if self._pid:
                # A forked copy (a new pool child): the worker's own figures stay with the
                # main process.
                self.worker_sampler = None
            self._pid = os.getpid()
            self._started = {}
            self._windows = {}
            self._worker_windows = {}
            self._jobs = {}
            self._process = None
            self._stop = threading.Event()
            self._thread = threading.Thread(
                target=_flush_loop,
                args=(weakref.ref(self), self._stop, self.settings.metrics_flush_interval_s),
                name="victor-metrics",
                daemon=True,
            )
            self._thread.start()

    def owned_here(self) -> bool:
        """Whether this process runs this reporter's flush thread."""
        return self._pid == os.getpid()

    def ensure_started(self) -> None:
        if self._pid != os.getpid():
            self._start_thread()

    def stop(self) -> None:
        self._stop.set()
        try:
            self.flush(final=True)
        except Exception:
            logger.debug("final metrics flush failed", exc_info=True)

    def process_sample(self) -> dict[str, Any]:
        import psutil

        if self._process is None:
            self._process = psutil.Process()
            self._process.cpu_percent(None)
        memory = self._process.memory_info()
        return {
            "pid": os.getpid(),
            "ppid": os.getppid(),
            "hostname": self.hostname,
            "rss_mb": round(memory.rss / 1_048_576, 2),
            "cpu_percent": self._process.cpu_percent(None),
            "tasks": self._tasks_done,
            "memory_limit_mb": self.settings.memory_limit_mb,
            "at": time.time(),
        }

    def flush(self, final: bool = False) -> None:
        """Write pending windows, job stats and this process's sample in one round trip.

        ``final``: the process is ending (a pool_shrink, a recycled child, a shutdown): its
        figures are written and the process leaves the index at once, not a TTL later.
        """
        with self._lock:
            windows, self._windows = self._windows, {}
            mine, self._worker_windows = self._worker_windows, {}
            jobs, self._jobs = self._jobs, {}
        keys = self.keys
        now = time.time()
        ops: list[tuple[Any, ...]] = []
        for (skill, bucket), fields in windows.items():
            ops.append(
                ("hincr", keys.metrics_bucket("skill", skill, bucket), fields, self.bucket_ttl_s)
            )
            ops.append(("zadd", keys.metrics_skills(), skill, bucket, self.bucket_ttl_s))
        if windows:
            oldest = (now - self.settings.metrics_retention_s) // self.bucket_s
            ops.append(("zprune", keys.metrics_skills(), oldest))
        if mine and self.hostname:
            ops.extend(self._worker_ops(mine))
        for job_id, fields in jobs.items():
            ops.append(("hincr", keys.metrics_job(job_id), fields, self.settings.result_expires_s))
        sample = self.process_sample()
        process_id = f"{socket.gethostname()}:{sample['pid']}"
        if final:
            ops.append(("zrem", keys.metrics_processes(), process_id))
        else:
            ops.append(("hset", keys.metrics_process(process_id), sample, PROCESS_TTL_S))
            ops.append(("zadd", keys.metrics_processes(), process_id, now, PROCESS_TTL_S * 4))
        ops.append(("zprune", keys.metrics_processes(), now - PROCESS_TTL_S))
        if self.worker_sampler is not None:
            worker = self.worker_sampler()
            worker["pid"] = sample["pid"]
            worker["at"] = now
            ops.append(("hset", keys.metrics_worker(worker["hostname"]), worker, PROCESS_TTL_S))
            ops.append(("zadd", keys.metrics_workers(), worker["hostname"], now, PROCESS_TTL_S * 4))
            ops.append(("zprune", keys.metrics_workers(), now - PROCESS_TTL_S))
        check_process_memory(self.settings, sample["rss_mb"])
        self.store.write(ops)

    def _worker_ops(self, windows: dict[int, dict[str, int]]) -> list[tuple[Any, ...]]:
        """This process's share of its worker's windows, and the same added to its totals."""
        ops: list[tuple[Any, ...]] = []
        totals: dict[str, int] = {}
        for bucket, fields in windows.items():
            key = self.keys.metrics_bucket("worker", self.hostname, bucket)
            ops.append(("hincr", key, fields, self.bucket_ttl_s))
            for name, amount in fields.items():
                if not name.startswith("h:"):
                    totals[name] = totals.get(name, 0) + amount
        totals_key = self.keys.metrics_worker_totals(self.hostname)
        ops.append(("hincr", totals_key, totals, self.settings.metrics_retention_s))
        return ops


def _flush_loop(ref: weakref.ref[Reporter], stop: threading.Event, interval_s: float) -> None:
    """Flush every interval while the reporter (and so its app) is alive."""
    while not stop.wait(interval_s):
        reporter = ref()
        if reporter is None:
            return
        try:
            reporter.flush()
        except Exception:  # metrics never take a worker down; the next flush retries
            logger.debug("metrics flush failed", exc_info=True)
        del reporter

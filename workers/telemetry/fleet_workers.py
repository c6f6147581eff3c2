"""Per-worker figures of the fleet: each live worker's pool, process tree and task windows.

A worker (its Celery hostname) is live while its main process flushes: the row it writes each
flush (``workers.telemetry.sampler``) says its pool size and type, active and reserved
requests, bounds, and the RSS and CPU of its whole process tree. Its pool children add their
task windows under the worker's name (children know it from the task request) and to running
``totals`` that only grow, so the tuner can take differences between two reads.
"""

from __future__ import annotations

from typing import Any

from workers.core.keys import Keys
from workers.telemetry.process import PROCESS_TTL_S
from workers.telemetry.store import MetricsStore, as_ints
from workers.telemetry.windows import add_into, window_figures

_TOTALS = {"tasks": "n", "items": "units", "run_us": "run_us", "failed": "fail"}
_LATENCY = ("avg_latency", "p50", "p95")


def _number(row: dict[str, str], name: str) -> float | None:
    try:
        return float(row[name])
    except (KeyError, ValueError):
        return None


def _blank() -> dict[str, Any]:
    return {
        "pool_size": 0,
        "active": 0,
        "reserved": 0,
        "pid": 0,
        "rss_mb": 0.0,
        "cpu_percent": 0.0,
        "processes": [],
    }


def _from_row(row: dict[str, str]) -> dict[str, Any]:
    """A worker's entry from the row its main process writes each flush."""
    counts = as_ints(row)
    worker = _blank()
    worker.update(
        pool_size=counts.get("pool_size", 0),
        active=counts.get("active", 0),
        reserved=counts.get("reserved", 0),
        pid=counts.get("pid", 0),
        at=_number(row, "at"),
        live_slots=counts.get("live_slots"),
        pool_type=row.get("pool_type"),
        resizable=bool(counts.get("resizable", 0)),
        started_size=counts.get("started_size"),
        tuner={
            "enabled": bool(counts.get("tuner_enabled", 1)),
            "min": counts.get("tuner_min"),
            "max": counts.get("tuner_max"),
        },
        autoscale=None,
    )
    if "autoscale_max" in counts:
        worker["autoscale"] = {
            "min": counts.get("autoscale_min", 0),
            "max": counts["autoscale_max"],
            "limit": counts.get("autoscale_limit", counts["autoscale_max"]),
        }
    worker["tree_rss_mb"] = _number(row, "rss_mb")
    worker["tree_cpu_percent"] = _number(row, "cpu_percent")
    return worker


def worker_figures(
    store: MetricsStore, keys: Keys, now: float, buckets: list[int], seconds: float
) -> dict[str, dict[str, Any]]:
    """Every live worker's figures; ``buckets`` and ``seconds`` are the metrics window."""
    fresh = now - PROCESS_TTL_S
    names = sorted(store.members(keys.metrics_workers(), fresh))
    process_ids = sorted(store.members(keys.metrics_processes(), fresh))
    rows = store.hashes([keys.metrics_worker(name) for name in names])
    workers: dict[str, dict[str, Any]] = {}
    by_pid: dict[str, str] = {}
    for name, row in zip(names, rows, strict=True):
        if row:
            workers[name] = _from_row(row)
            by_pid[row.get("pid", "")] = name
    for row in store.hashes([keys.metrics_process(pid) for pid in process_ids]):
        if not row:
            continue
        owner = by_pid.get(row.get("pid", "")) or by_pid.get(row.get("ppid", ""))
        owner = owner or row.get("hostname") or "unknown"
        worker = workers.setdefault(owner, _blank())
        rss = float(row.get("rss_mb", 0.0))
        cpu = float(row.get("cpu_percent", 0.0))
        worker["rss_mb"] = round(worker["rss_mb"] + rss, 2)
        worker["cpu_percent"] = round(worker["cpu_percent"] + cpu, 1)
        worker["processes"].append(
            {
                "pid": int(row.get("pid", 0)),
                "rss_mb": rss,
                "cpu_percent": cpu,
                "memory_limit_mb": int(float(row.get("memory_limit_mb", 0))),
                "tasks": int(row.get("tasks", 0)),
            }
        )
    # The tree as the main process read it is exact; the processes' own samples linger for
    # PROCESS_TTL_S after a child ends (a pool_shrink, a recycled child).
    for worker in workers.values():
        for name in ("rss_mb", "cpu_percent"):
            tree = worker.pop(f"tree_{name}", None)
            if tree is not None:
                worker[name] = tree
    _add_windows(store, keys, workers, buckets, seconds)
    return workers


def _add_windows(
    store: MetricsStore,
    keys: Keys,
    workers: dict[str, dict[str, Any]],
    buckets: list[int],
    seconds: float,
) -> None:
    """Throughput and latency over the window, and the running totals, of each worker."""
    names = sorted(workers)
    wanted = [keys.metrics_bucket("worker", name, bucket) for name in names for bucket in buckets]
    wanted += [keys.metrics_worker_totals(name) for name in names]
    hashes = store.hashes(wanted)
    totals_rows = hashes[len(names) * len(buckets) :]
    for position, name in enumerate(names):
        fields: dict[str, int] = {}
        for entry in hashes[position * len(buckets) : (position + 1) * len(buckets)]:
            add_into(fields, as_ints(entry))
        figures = window_figures(fields, seconds)
        worker = workers[name]
        for key in ("tasks", "items", "throughput", "items_per_s", "error_rate", *_LATENCY):
            worker[key] = figures[key]
        counts = as_ints(totals_rows[position])
        worker["totals"] = {name: counts.get(field, 0) for name, field in _TOTALS.items()}

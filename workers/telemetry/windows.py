"""Rolling windows: bucket hashes of counters summed, then turned into rates and percentiles.

A window's fields: ``n`` tasks, ``units`` work items, ``run_us`` summed run time, ``fail`` and
``ufail`` failed tasks and items, ``retry``, ``h:<i>`` run-time and ``w:<i>`` queue-wait
histogram counts (``workers.telemetry.histograms``), ``waited``/``wait_us`` for the mean wait.
"""

from __future__ import annotations

from typing import Any

from workers.telemetry.histograms import histogram_percentile


def add_into(into: dict[str, int], fields: dict[str, int]) -> None:
    """Add every counter of ``fields`` to ``into``."""
    for key, value in fields.items():
        into[key] = into.get(key, 0) + value


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def window_figures(fields: dict[str, int], seconds: float) -> dict[str, Any]:
    """Counts, rates over ``seconds``, error rate and latency (ms) of one summed window."""
    tasks = fields.get("n", 0)
    units = fields.get("units", 0)
    run_hist = {int(k[2:]): v for k, v in fields.items() if k.startswith("h:")}
    wait_hist = {int(k[2:]): v for k, v in fields.items() if k.startswith("w:")}
    waited = fields.get("waited", 0)
    return {
        "tasks": tasks,
        "failed_tasks": fields.get("fail", 0),
        "retries": fields.get("retry", 0),
        "items": units,
        "failed_items": fields.get("ufail", 0),
        "throughput": round(tasks / seconds, 3),
        "items_per_s": round(units / seconds, 3),
        "error_rate": round(fields.get("ufail", 0) / units, 6) if units else 0.0,
        "avg_latency": round(fields.get("run_us", 0) / tasks / 1000, 3) if tasks else None,
        "p50": _rounded(histogram_percentile(run_hist, 0.50)),
        "p95": _rounded(histogram_percentile(run_hist, 0.95)),
        "p99": _rounded(histogram_percentile(run_hist, 0.99)),
        "queue_wait_avg_ms": round(fields.get("wait_us", 0) / waited / 1000, 3) if waited else None,
        "queue_wait_p95_ms": _rounded(histogram_percentile(wait_hist, 0.95)),
    }

"""What the tuner is doing: each live worker's size, bounds and last decisions, the lease and
the replica recommendation (``victor tuner status`` and ``GET /v1/tuner`` show the same)."""

from __future__ import annotations

import time
from typing import Any

from orchestrator.tuner.journal import TunerJournal
from orchestrator.tuner.runner import tuner_interval
from orchestrator.tuner.sample import bounds_for, control_mode
from workers.core.redis_client import translated
from workers.core.settings import Settings
from workers.telemetry.fleet import get_metrics

_FIGURES = ("active", "reserved", "throughput", "avg_latency", "p95", "rss_mb", "cpu_percent")


def _lease(journal: TunerJournal) -> dict[str, Any]:
    key = journal.keys.tuner_lease()
    with translated("reading the tuner lease"):
        holder, ttl_ms = journal.client.get(key), journal.client.pttl(key)
    return {
        "holder": holder.decode() if isinstance(holder, bytes) else holder,
        "expires_in_s": round(ttl_ms / 1000, 3) if holder is not None and ttl_ms > 0 else None,
    }


def tuner_status(
    settings: Settings,
    *,
    metrics: dict[str, Any] | None = None,
    journal: TunerJournal | None = None,
    last: int = 5,
) -> dict[str, Any]:
    """The tuner's view of the fleet, with the ``last`` decisions of each worker."""
    metrics = metrics if metrics is not None else get_metrics(settings)
    journal = journal if journal is not None else TunerJournal(settings)
    live = {name: w for name, w in metrics["workers"].items() if w.get("at") is not None}
    records = journal.load_many(sorted(live))
    recent: dict[str, list[dict[str, Any]]] = {}
    for decision in journal.decisions(count=max(200, 50 * len(live))):
        mine = recent.setdefault(str(decision.get("worker")), [])
        if len(mine) < last:
            mine.append(decision)
    workers: dict[str, Any] = {}
    for name, worker in sorted(live.items()):
        record = records.get(name, {})
        bounds = bounds_for(settings, worker)
        workers[name] = {
            "mode": control_mode(worker),
            "pool_type": worker.get("pool_type"),
            "pool_size": worker.get("pool_size"),
            "tracked_size": record.get("size"),
            "bounds": record.get("bounds")
            or {"min": bounds.min_concurrency, "max": bounds.max_concurrency},
            "autoscale": worker.get("autoscale"),
            **{figure: worker.get(figure) for figure in _FIGURES},
            "tuned": bool(record) and not record.get("skipped"),
            "note": record.get("skipped") or ("" if record else "not seen by a tuner yet"),
            "decisions": recent.get(name, []),
        }
    return {
        "at": round(time.time(), 3),
        "enabled": settings.tuner_enabled,
        "interval_s": tuner_interval(settings),
        "lease": _lease(journal),
        "fleet": metrics.get("tuner"),
        "workers": workers,
    }

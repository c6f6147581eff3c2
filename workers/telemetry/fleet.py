"""Fleet figures: ``get_metrics()`` sums the workers' rolling windows; Prometheus text from it.

Latency is a task's run time (for ``victor.batch`` the whole chunk); queue wait runs from
publish to start. ``error_rate`` is failed work units over work units (a batch's items, or one
call). Queue depth is queued + reserved + active: prefetched tasks leave the broker list, so its
length alone under-reports load. ``memory_usage`` is the RSS in MB of the fleet's largest
process (``memory_limit_mb`` limits each process); ``memory`` adds the fleet's total and each
worker's process tree.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric

from workers.core.keys import Keys
from workers.core.names import DEFAULT_QUEUE, PUBLISHED_HEADER
from workers.core.redis_client import redis_client, translated
from workers.core.settings import Mode, Settings, load_settings
from workers.telemetry.fleet_workers import worker_figures
from workers.telemetry.process import current_rss_kb
from workers.telemetry.registry import MetricsRegistry
from workers.telemetry.store import MetricsStore, as_ints, store_for
from workers.telemetry.windows import add_into, window_figures

QUEUE = DEFAULT_QUEUE
PRIORITY_SEPARATOR = "\x06\x16"
PRIORITY_STEPS = (0, 3, 6, 9)
QUANTILES = {"p50": "0.5", "p95": "0.95", "p99": "0.99"}


def queue_figures(settings: Settings) -> dict[str, Any]:
    """Queued messages on the broker and the age of the oldest one."""
    if settings.mode is not Mode.DISTRIBUTED:
        return _memory_queue_figures()
    keys = Keys(settings.key_prefix)
    names = [keys.broker_queue(QUEUE)] + [
        keys.broker_queue(f"{QUEUE}{PRIORITY_SEPARATOR}{step}") for step in PRIORITY_STEPS[1:]
    ]
    client = redis_client(settings.effective_broker_url)
    with translated("reading the queue"):
        pipe = client.pipeline(transaction=False)
        for name in names:
            pipe.llen(name)
            pipe.lindex(name, -1)  # kombu pushes on the left and pops on the right
        raw = pipe.execute()
    queued = sum(int(length) for length in raw[0::2])
    oldest: float | None = None
    for message in raw[1::2]:
        if message is None:
            continue
        try:
            published = json.loads(message)["headers"].get(PUBLISHED_HEADER)
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
        if isinstance(published, int | float):
            oldest = published if oldest is None else min(oldest, published)
    age = None if oldest is None else round(max(0.0, time.time() - oldest), 3)
    return {"queued": queued, "oldest_age_s": age}


def _memory_queue_figures() -> dict[str, Any]:
    """Embedded mode: this process's queue on kombu's memory transport (the embedded worker's;
    another process has none, and reads 0)."""
    from kombu.transport import memory

    queue = memory.Channel.queues.get(QUEUE)
    queued = queue.qsize() if queue is not None else 0
    age = None
    if queue is not None and queued:
        try:
            published = queue.queue[0]["headers"].get(PUBLISHED_HEADER)
        except (IndexError, KeyError, TypeError, AttributeError):
            published = None
        if isinstance(published, int | float):
            age = round(max(0.0, time.time() - published), 3)
    return {"queued": queued, "oldest_age_s": age}


def get_metrics(
    settings: Settings | None = None,
    window_s: float | None = None,
    store: MetricsStore | None = None,
) -> dict[str, Any]:
    """Fleet and per-skill figures over the last ``window_s`` (``metrics_window_s``)."""
    settings = settings or load_settings()
    store = store or store_for(settings)
    keys = Keys(settings.key_prefix)
    window = float(window_s or settings.metrics_window_s)
    bucket_s = settings.metrics_bucket_s
    now = time.time()
    current = int(now // bucket_s)
    first = current - max(1, math.ceil(window / bucket_s)) + 1
    # Figures of the last flush interval may not be written yet: leave that time out.
    seconds = max(bucket_s / 10, now - settings.metrics_flush_interval_s - first * bucket_s)

    skills = sorted(store.members(keys.metrics_skills(), first))
    buckets = list(range(first, current + 1))
    hashes = store.hashes(
        [keys.metrics_bucket("skill", skill, bucket) for skill in skills for bucket in buckets]
    )
    fleet_fields: dict[str, int] = {}
    by_skill: dict[str, Any] = {}
    for position, skill in enumerate(skills):
        fields: dict[str, int] = {}
        for entry in hashes[position * len(buckets) : (position + 1) * len(buckets)]:
            add_into(fields, as_ints(entry))
        if fields.get("n") or fields.get("retry"):
            by_skill[skill] = window_figures(fields, seconds)
            add_into(fleet_fields, fields)

    workers = worker_figures(store, keys, now, buckets, seconds)

    queue = queue_figures(settings)
    reserved = sum(worker["reserved"] for worker in workers.values())
    active = sum(worker["active"] for worker in workers.values())
    queue.update(reserved=reserved, active=active, depth=queue["queued"] + reserved + active)
    fleet = window_figures(fleet_fields, seconds)
    memory = memory_figures(workers, settings)
    return {
        "at": now,
        "window_s": window,
        "mode": settings.mode.value,
        **{name: fleet[name] for name in ("p50", "p95", "p99", "throughput", "error_rate")},
        # The guide compares these with plain numbers: no tasks in the window is 0 ms here
        # (``fleet["avg_latency"]`` stays None), and memory is the largest process's RSS.
        "avg_latency": fleet["avg_latency"] or 0.0,
        "memory_usage": memory["largest_process_mb"],
        "memory": memory,
        "fleet": fleet,
        "skills": by_skill,
        "workers": workers,
        "queue": queue,
        "tuner": tuner_figures(store, keys),
    }


def skill_item_ms(
    settings: Settings, skill: str, store: MetricsStore | None = None
) -> float | None:
    """The skill's mean run time per item (ms) over the metrics window, from what the workers
    published; None when no task of it ran in the window."""
    store = store or store_for(settings)
    keys = Keys(settings.key_prefix)
    bucket_s = settings.metrics_bucket_s
    current = int(time.time() // bucket_s)
    first = current - max(1, math.ceil(settings.metrics_window_s / bucket_s)) + 1
    fields: dict[str, int] = {}
    for entry in store.hashes(
        [keys.metrics_bucket("skill", skill, bucket) for bucket in range(first, current + 1)]
    ):
        add_into(fields, as_ints(entry))
    units = fields.get("units", 0)
    return fields.get("run_us", 0) / units / 1000 if units else None


def memory_figures(workers: dict[str, dict[str, Any]], settings: Settings) -> dict[str, Any]:
    """RSS in MB: the largest process of the fleet (what ``memory_limit_mb`` limits), the
    fleet's total, and each worker's process tree.

    In embedded mode the fleet is this process, so its current RSS counts too.
    """
    largest = 0.0
    for worker in workers.values():
        sizes = [float(process["rss_mb"]) for process in worker["processes"]]
        largest = max(largest, *sizes) if sizes else max(largest, float(worker["rss_mb"]))
    if settings.mode is Mode.EMBEDDED:
        largest = max(largest, current_rss_kb() / 1024)
    return {
        "largest_process_mb": round(largest, 2),
        "fleet_mb": round(sum(worker["rss_mb"] for worker in workers.values()), 2),
        "limit_mb": settings.memory_limit_mb,
        "workers": {name: worker["rss_mb"] for name, worker in workers.items()},
    }


def tuner_figures(store: MetricsStore, keys: Keys) -> dict[str, Any] | None:
    """What the acting tuner last published: replica recommendation, decisions by action."""
    (row,) = store.hashes([keys.tuner_fleet()])
    if not row:
        return None
    decisions = {
        k[len("decisions:") :]: int(v) for k, v in row.items() if k.startswith("decisions:")
    }
    figures: dict[str, Any] = {"decisions": decisions, "holder": row.get("holder")}
    for name in ("desired_replicas", "raw_replicas", "capacity_per_replica", "depth", "at"):
        figures[name] = float(row[name]) if name in row else None
    return figures


def metrics_registry(metrics: dict[str, Any]) -> MetricsRegistry:
    """A registry of gauges holding one ``get_metrics()`` snapshot."""
    registry = MetricsRegistry("victor")
    fleet = metrics["fleet"]

    def put(name: str, description: str, value: Any, **labels: str) -> None:
        if value is None:
            return
        gauge = registry.create_gauge(name, description, labels=tuple(labels))
        (gauge.labels(**labels) if labels else gauge).set(float(value))

    put("fleet_avg_latency_ms", "Mean task run time over the window", fleet["avg_latency"])
    for quantile in ("p50", "p95", "p99"):
        put(
            "fleet_latency_ms",
            "Task run time percentiles",
            fleet[quantile],
            quantile=QUANTILES[quantile],
        )
    put("fleet_throughput_tasks_per_s", "Tasks finished per second", fleet["throughput"])
    put("fleet_items_per_s", "Work items finished per second", fleet["items_per_s"])
    put("fleet_error_rate", "Failed work items over work items", fleet["error_rate"])
    put("fleet_tasks", "Tasks finished in the window", fleet["tasks"])
    put("fleet_retries", "Task retries in the window", fleet["retries"])
    put("fleet_queue_wait_avg_ms", "Mean publish-to-start wait", fleet["queue_wait_avg_ms"])
    workers = metrics["workers"].values()
    put("fleet_memory_mb", "RSS of all worker processes", sum(w["rss_mb"] for w in workers))
    put(
        "fleet_largest_process_memory_mb",
        "RSS of the largest worker process (memory_limit_mb applies per process)",
        max((p["rss_mb"] for w in workers for p in w["processes"]), default=None),
    )
    queue = metrics["queue"]
    for name in ("queued", "reserved", "active", "depth"):
        put(f"queue_{name}", f"Queue: {name} tasks", queue[name])
    put("queue_oldest_age_s", "Age of the oldest queued message", queue["oldest_age_s"])
    for skill, figures in metrics["skills"].items():
        put(
            "skill_avg_latency_ms",
            "Mean task run time per skill",
            figures["avg_latency"],
            skill=skill,
        )
        for quantile in ("p50", "p95", "p99"):
            put(
                "skill_latency_ms",
                "Task run time percentiles per skill",
                figures[quantile],
                skill=skill,
                quantile=QUANTILES[quantile],
            )
        put(
            "skill_throughput_tasks_per_s",
            "Tasks per second per skill",
            figures["throughput"],
            skill=skill,
        )
        put("skill_error_rate", "Error rate per skill", figures["error_rate"], skill=skill)
        put("skill_tasks", "Tasks finished in the window per skill", figures["tasks"], skill=skill)
    for worker, figures in metrics["workers"].items():
        put("worker_memory_mb", "RSS of a worker's processes", figures["rss_mb"], worker=worker)
        put(
            "worker_cpu_percent",
            "CPU of a worker's processes",
            figures["cpu_percent"],
            worker=worker,
        )
        for name in ("pool_size", "active", "reserved"):
            put(f"worker_{name}", f"Worker {name}", figures[name], worker=worker)
        put(
            "worker_throughput_tasks_per_s",
            "Tasks per second per worker",
            figures.get("throughput"),
            worker=worker,
        )
        put(
            "worker_avg_latency_ms",
            "Mean run time per worker",
            figures.get("avg_latency"),
            worker=worker,
        )
    tuner = metrics.get("tuner")
    if tuner:
        for name, description in (
            ("desired_replicas", "Worker replicas the tuner recommends (with hysteresis)"),
            ("capacity_per_replica", "Tuned pool size per worker replica"),
        ):
            put(f"tuner_{name}", description, tuner[name])
        decisions = registry.create_counter(
            "tuner_decisions_total", "Tuner decisions by action", labels=("action",)
        )
        for action, count in sorted(tuner["decisions"].items()):
            decisions.labels(action=action).increment(count)
    return registry


def prometheus_text(settings: Settings | None = None) -> str:
    """The fleet's figures in the Prometheus text format (what ``/metrics`` serves)."""
    return metrics_registry(get_metrics(settings)).prometheus_text()


class FleetCollector:
    """A prometheus-client collector that reads the fleet's figures at each scrape."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def collect(self) -> Iterable[Metric]:
        registry = metrics_registry(get_metrics(self.settings))
        for metric in registry.metrics():
            yield metric.family()

    def describe(self) -> Iterable[Metric]:
        return []


def fleet_collector_registry(settings: Settings) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(settings))
    return registry


def fleet_prometheus_bytes(settings: Settings) -> bytes:
    return generate_latest(fleet_collector_registry(settings))


__all__ = ["get_metrics", "prometheus_text"]

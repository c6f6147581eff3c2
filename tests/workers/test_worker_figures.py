"""Per-worker figures in one process (memory store): windows, totals, the pool and its tree."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from workers.core.settings import Settings
from workers.pools.threads import ResizableThreadPool
from workers.telemetry.fleet import get_metrics
from workers.telemetry.reporter import Reporter
from workers.telemetry.sampler import WorkerSampler, pool_resizable, pool_type
from workers.telemetry.store import MemoryMetricsStore

HOST = "w1@figures"


@pytest.fixture
def reporter(embedded_settings: Callable[..., Settings]) -> Iterator[Reporter]:
    settings = embedded_settings(metrics_flush_interval_s=60, key_prefix="vtworkerfig")
    made = Reporter(settings, MemoryMetricsStore())
    made.hostname = HOST
    yield made
    made.stop()


def _consumer(pool: Any, autoscaler: Any = None) -> Any:
    return SimpleNamespace(pool=pool, controller=SimpleNamespace(autoscaler=autoscaler))


def _run(reporter: Reporter, task_id: str, ms: float, state: str = "SUCCESS") -> None:
    reporter.task_started(task_id, None)
    time.sleep(ms / 1000)
    reporter.task_finished(task_id, "victor.skill.sleep", (), {}, None, state)


def test_a_workers_throughput_latency_and_totals_come_from_its_tasks(reporter: Reporter) -> None:
    pool = ResizableThreadPool(3)
    reporter.worker_sampler = WorkerSampler(_consumer(pool), HOST, reporter.settings)
    for index in range(9):
        _run(reporter, f"a{index}", 10)
    _run(reporter, "slow", 60)
    _run(reporter, "bad", 1, state="FAILURE")
    reporter.flush()
    metrics = get_metrics(reporter.settings, store=reporter.store)
    worker = metrics["workers"][HOST]
    assert worker["tasks"] == 11 and worker["items"] == 11
    assert worker["throughput"] > 0 and worker["items_per_s"] == worker["throughput"]
    assert 9 <= worker["p50"] <= 16
    assert 54 <= worker["p95"] <= 90
    assert worker["avg_latency"] == pytest.approx((9 * 10 + 60 + 1) / 11, rel=0.35)
    assert worker["totals"]["tasks"] == 11 and worker["totals"]["failed"] == 1
    assert worker["totals"]["run_us"] >= (9 * 10 + 60) * 1000
    assert worker["pool_size"] == 3 and worker["pool_type"] == "threads" and worker["resizable"]
    assert worker["tuner"] == {"enabled": True, "min": 1, "max": 16}
    assert worker["autoscale"] is None
    # Totals only grow; the next flush adds to them.
    _run(reporter, "b", 1)
    reporter.flush()
    again = get_metrics(reporter.settings, store=reporter.store)["workers"][HOST]
    assert again["totals"]["tasks"] == 12


def test_the_sampler_reports_the_size_after_a_resize(reporter: Reporter) -> None:
    pool = ResizableThreadPool(2)
    pool.start()
    try:
        sampler = WorkerSampler(_consumer(pool), HOST, reporter.settings)
        pool.grow(3)
        figures = sampler()
        assert figures["pool_size"] == 5 and figures["live_slots"] == 5
        assert figures["started_size"] == 2
        pool.shrink(4)
        assert sampler()["pool_size"] == 1
    finally:
        pool.stop()


def test_the_sampler_reads_the_process_tree_and_the_autoscale_bounds(
    embedded_settings: Callable[..., Settings],
) -> None:
    settings = embedded_settings(tuner_min_concurrency=2, tuner_max_concurrency=6)
    autoscaler = SimpleNamespace(min_concurrency=1, max_concurrency=8)
    pool = SimpleNamespace(num_processes=3, grow=lambda n: None, shrink=lambda n: None)
    sampler = WorkerSampler(_consumer(pool, autoscaler), HOST, settings)
    autoscaler.max_concurrency = 5  # the tuner moved the autoscaler's ceiling
    figures = sampler()
    assert (figures["autoscale_min"], figures["autoscale_max"]) == (1, 8)
    assert figures["autoscale_limit"] == 5
    assert (figures["tuner_min"], figures["tuner_max"], figures["tuner_enabled"]) == (2, 6, 1)
    assert figures["rss_mb"] > 10 and figures["tree_processes"] >= 1
    assert figures["cpu_percent"] >= 0


def test_pool_types_and_which_pools_resize() -> None:
    from celery.concurrency.solo import TaskPool as SoloPool
    from celery.concurrency.thread import TaskPool as ThreadsPool

    assert pool_type(ResizableThreadPool(1)) == "threads"
    assert pool_resizable(ResizableThreadPool(1))
    assert pool_type(ThreadsPool(1)) == "threads" and not pool_resizable(ThreadsPool(1))
    assert pool_type(SoloPool(1)) == "solo" and not pool_resizable(SoloPool(1))
    assert pool_type(object()) == "builtins:object"


def test_the_tree_rss_wins_over_lingering_process_samples(reporter: Reporter) -> None:
    reporter.worker_sampler = lambda: {"hostname": HOST, "pool_size": 1, "rss_mb": 123.5}
    reporter.flush()
    # A pool child removed a moment ago still has a fresh sample of its own.
    gone = {"pid": 999_999, "ppid": 0, "hostname": HOST, "rss_mb": 500.0, "cpu_percent": 1.0}
    keys = reporter.keys
    reporter.store.write(
        [
            ("hset", keys.metrics_process("h:999999"), gone, 30),
            ("zadd", keys.metrics_processes(), "h:999999", time.time(), 120),
        ]
    )
    worker = get_metrics(reporter.settings, store=reporter.store)["workers"][HOST]
    assert worker["rss_mb"] == 123.5
    assert len(worker["processes"]) == 2


def test_the_per_task_cost_stays_a_few_dict_updates(reporter: Reporter) -> None:
    started = time.perf_counter()
    for index in range(5000):
        reporter.task_started(str(index), None)
        reporter.task_finished(str(index), "victor.skill.noop", (), {}, None, "SUCCESS")
    per_task_us = (time.perf_counter() - started) / 5000 * 1e6
    assert per_task_us < 100, per_task_us


def test_a_process_that_ends_leaves_the_listing_at_once(reporter: Reporter) -> None:
    """A pool child stopped by pool_shrink (or recycled) is not listed for a TTL after it."""
    import os

    reporter.worker_sampler = lambda: {"hostname": HOST, "pool_size": 1, "rss_mb": 50.0}
    reporter.flush()
    worker = get_metrics(reporter.settings, store=reporter.store)["workers"][HOST]
    assert [process["pid"] for process in worker["processes"]] == [os.getpid()]
    reporter.stop()  # what the worker_process_shutdown signal does in the ending process
    after = get_metrics(reporter.settings, store=reporter.store)["workers"].get(HOST, {})
    assert after.get("processes", []) == []


def test_embedded_mode_counts_the_memory_transports_queue(
    embedded_settings: Callable[..., Settings],
) -> None:
    """The embedded worker's backlog is visible (the in-process tuner needs it)."""
    from queue import Queue

    from kombu.transport import memory

    from workers.core.names import DEFAULT_QUEUE, PUBLISHED_HEADER
    from workers.telemetry.fleet import queue_figures

    settings = embedded_settings()
    queue = memory.Channel.queues.setdefault(DEFAULT_QUEUE, Queue())
    before = queue.qsize()
    message = {"headers": {PUBLISHED_HEADER: time.time() - 2.0}, "body": ""}
    queue.put(message)
    try:
        figures = queue_figures(settings)
        assert figures["queued"] == before + 1
        if before == 0:
            assert figures["oldest_age_s"] is not None and figures["oldest_age_s"] >= 2.0
    finally:
        queue.queue.remove(message)

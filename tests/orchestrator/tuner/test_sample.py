"""From a worker's metrics to a tuner sample, its bounds, and the fleet's replica advice."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.tuner.replicas import advise_replicas, capacity_per_replica
from orchestrator.tuner.sample import (
    AUTOSCALE,
    FIXED,
    POOL,
    Reading,
    bounds_for,
    build_sample,
    control_mode,
    reported_size,
)
from workers.core.settings import Settings


def _worker(**extra: Any) -> dict[str, Any]:
    """A ``get_metrics()["workers"][name]`` entry of a busy prefork worker."""
    worker: dict[str, Any] = {
        "pool_size": 4,
        "active": 4,
        "reserved": 3,
        "rss_mb": 312.5,
        "cpu_percent": 41.0,
        "pool_type": "prefork",
        "resizable": True,
        "autoscale": None,
        "tuner": {"enabled": True, "min": 1, "max": 16},
        "totals": {"tasks": 1000, "items": 1000, "run_us": 50_000_000, "failed": 0},
    }
    worker.update(extra)
    return worker


def test_a_sample_is_what_finished_between_two_readings() -> None:
    before = Reading(at=100.0, tasks=1000, run_us=50_000_000)
    worker = _worker(totals={"tasks": 1080, "run_us": 50_000_000 + 80 * 45_000})
    now = Reading.of(worker, 102.0)
    sample = build_sample(worker, before, now, queued=250, pool_size=4)
    assert sample is not None
    assert (sample.at, sample.interval_s, sample.pool_size) == (102.0, 2.0, 4)
    assert sample.completed == 80
    assert sample.latency_ms == pytest.approx(45.0)
    assert (sample.active, sample.reserved, sample.queued) == (4, 3, 250)
    assert (sample.rss_mb, sample.cpu_percent) == (312.5, 41.0)


@pytest.mark.parametrize(
    ("reported", "interval_s"),
    [
        pytest.param((99.1, 101.6), 2.5, id="the-worker-s-own-timestamps"),
        pytest.param((99.1, 99.1), 2.0, id="nothing-new-since-falls-back-to-the-runner-s"),
        pytest.param((None, 101.6), 2.0, id="a-reading-without-one-falls-back-to-the-runner-s"),
    ],
)
def test_the_rate_is_over_the_worker_s_own_timestamps(
    reported: tuple[float | None, float], interval_s: float
) -> None:
    before = Reading(at=100.0, tasks=1000, run_us=50_000_000, reported_at=reported[0])
    worker = _worker(at=reported[1], totals={"tasks": 1100, "run_us": 55_000_000})
    sample = build_sample(worker, before, Reading.of(worker, 102.0), queued=10, pool_size=4)
    assert sample is not None
    # The runner's clock still dates the sample: it decides which readings follow a change.
    assert (sample.at, sample.interval_s, sample.completed) == (102.0, interval_s, 100)


def test_an_idle_interval_has_no_latency() -> None:
    worker = _worker(active=0, reserved=0)
    reading = Reading.of(worker, 10.0)
    sample = build_sample(worker, Reading(8.0, reading.tasks, reading.run_us), reading, 0, 4)
    assert sample is not None and sample.completed == 0 and sample.latency_ms is None


@pytest.mark.parametrize(
    ("before", "at"),
    [
        (Reading(100.0, 2000, 50_000_000), 102.0),  # the totals went back: a restart
        (Reading(100.0, 1000, 60_000_000), 102.0),
        (Reading(102.0, 900, 40_000_000), 102.0),  # no time passed
    ],
)
def test_counters_that_went_back_give_no_sample(before: Reading, at: float) -> None:
    worker = _worker()
    assert build_sample(worker, before, Reading.of(worker, at), 0, 4) is None


def test_a_worker_without_totals_reads_as_zero() -> None:
    assert Reading.of({}, 5.0) == Reading(5.0, 0, 0)


@pytest.mark.parametrize(
    ("extra", "mode", "size"),
    [
        ({}, POOL, 4),
        ({"pool_type": "threads", "resizable": True}, POOL, 4),
        ({"pool_type": "solo", "resizable": False}, FIXED, 4),
        ({"autoscale": {"min": 2, "max": 10, "limit": 6}}, AUTOSCALE, 6),
    ],
)
def test_the_control_mode_and_size_follow_the_pool(extra, mode: str, size: int) -> None:
    worker = _worker(**extra)
    assert control_mode(worker) == mode
    assert reported_size(worker) == size


def test_bounds_meet_the_tuners_the_workers_and_the_autoscale_range() -> None:
    settings = Settings(tuner_min_concurrency=2, tuner_max_concurrency=12, tuner_max_step=3)
    plain = bounds_for(settings, _worker())
    assert (plain.min_concurrency, plain.max_concurrency, plain.max_step) == (2, 12, 3)
    assert plain.memory_limit_mb == settings.memory_limit_mb
    assert plain.memory_warning_threshold == settings.memory_warning_threshold
    assert plain.cooldown_s == settings.tuner_cooldown_s
    own = bounds_for(settings, _worker(tuner={"enabled": True, "min": 3, "max": 8}))
    assert (own.min_concurrency, own.max_concurrency) == (3, 8)
    scaled = bounds_for(settings, _worker(autoscale={"min": 0, "max": 6, "limit": 6}))
    assert (scaled.min_concurrency, scaled.max_concurrency) == (2, 6)
    disjoint = bounds_for(settings, _worker(tuner={"enabled": True, "min": 20, "max": 30}))
    assert (disjoint.min_concurrency, disjoint.max_concurrency) == (12, 12)


def test_capacity_per_replica_is_the_mean_tuned_size() -> None:
    assert capacity_per_replica([4, 8, 0], fallback=4) == 6.0
    assert capacity_per_replica([], fallback=3) == 3.0
    assert capacity_per_replica([], fallback=0) == 1.0


def test_replicas_rise_at_once_and_fall_only_after_the_quiet_intervals() -> None:
    history: list[int] = []
    desired = []
    for depth in [40, 80, 16, 16, 16, 16, 0, 0, 0, 0, 120]:
        advice = advise_replicas(history, depth, capacity=8.0, keep=3)
        history = advice.history
        desired.append(advice.desired)
    #                  raw: 5  10  2   2   2  2  0  0  0  0 15
    assert desired == [5, 10, 10, 10, 2, 2, 2, 2, 0, 0, 15]
    assert len(history) == 3


def test_raw_replicas_round_up_and_an_empty_fleet_needs_none() -> None:
    assert advise_replicas([], 17, 8.0, 5).raw == 3
    assert advise_replicas([], 16, 8.0, 5).raw == 2
    assert advise_replicas([], 0, 8.0, 5).raw == 0

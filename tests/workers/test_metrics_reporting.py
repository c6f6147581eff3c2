"""Reporter and get_metrics in one process (memory store): counts, latencies, bounds, TTLs."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from workers.celery_app.factory import create_app
from workers.celery_app.signals import reporter_of
from workers.core.keys import Keys
from workers.core.settings import Settings
from workers.telemetry.fleet import get_metrics, metrics_registry
from workers.telemetry.reporter import Reporter, skill_of
from workers.telemetry.store import MemoryMetricsStore


@pytest.fixture
def reporter(embedded_settings: Callable[..., Settings]) -> Iterator[Reporter]:
    settings = embedded_settings(metrics_flush_interval_s=60, key_prefix="vtreport")
    made = Reporter(settings, MemoryMetricsStore())
    yield made
    made.stop()


def _run(
    reporter: Reporter,
    task_id: str,
    name: str,
    ms: float,
    *,
    kwargs: dict | None = None,
    args: tuple = (),
    retval: object = None,
    state: str = "SUCCESS",
    waited_s: float | None = None,
) -> None:
    published = None if waited_s is None else time.time() - waited_s
    reporter.task_started(task_id, published)
    time.sleep(ms / 1000)
    reporter.task_finished(task_id, name, args, kwargs or {}, retval, state)


def test_counts_and_latencies_match_what_ran(reporter: Reporter) -> None:
    for index in range(8):
        _run(reporter, f"a{index}", "victor.skill.sleep", 20, waited_s=0.5)
    for index in range(2):
        _run(reporter, f"b{index}", "victor.skill.sleep", 80)
    reporter.flush()
    metrics = get_metrics(reporter.settings, store=reporter.store)
    sleep = metrics["skills"]["sleep"]
    assert sleep["tasks"] == 10
    assert sleep["failed_tasks"] == 0
    assert sleep["avg_latency"] == pytest.approx((8 * 20 + 2 * 80) / 10, rel=0.25)
    assert sleep["p50"] == pytest.approx(20, rel=0.25)
    assert sleep["p99"] == pytest.approx(80, rel=0.25)
    assert sleep["queue_wait_avg_ms"] == pytest.approx(500, rel=0.2)
    assert metrics["fleet"]["tasks"] == 10
    assert metrics["avg_latency"] == sleep["avg_latency"]


def test_batch_items_failures_and_retries_are_counted_by_skill(reporter: Reporter) -> None:
    outcomes = [{"ok": True, "value": 1}, {"ok": False, "error": "bad"}, {"ok": True}]
    _run(reporter, "t1", "victor.batch", 1, args=("noop", [{}, {}, {}]), retval=outcomes)
    _run(
        reporter,
        "t2",
        "victor.batch",
        1,
        kwargs={"skill": "noop", "items": [{}, {}]},
        state="FAILURE",
    )
    _run(reporter, "t3", "victor.batch", 1, args=("noop", [{}]), state="RETRY")
    reporter.flush()
    noop = get_metrics(reporter.settings, store=reporter.store)["skills"]["noop"]
    assert noop["tasks"] == 2
    assert noop["failed_tasks"] == 1
    assert noop["retries"] == 1
    assert noop["items"] == 5
    assert noop["failed_items"] == 3
    assert noop["error_rate"] == pytest.approx(3 / 5)


def test_a_ledgered_batchs_receipt_counts_its_items_and_failures(reporter: Reporter) -> None:
    receipt = {"job_id": "j1", "items": 4, "failed": 1}
    _run(reporter, "t1", "victor.batch", 1, args=("noop", [{}] * 4), retval=receipt)
    reporter.flush()
    noop = get_metrics(reporter.settings, store=reporter.store)["skills"]["noop"]
    assert (noop["tasks"], noop["failed_tasks"]) == (1, 0)
    assert (noop["items"], noop["failed_items"]) == (4, 1)
    assert noop["error_rate"] == pytest.approx(1 / 4)


@pytest.mark.parametrize(
    ("name", "args", "kwargs", "skill"),
    [
        ("victor.skill.read_file", (), {}, "read_file"),
        ("victor.batch", ("analyze_code", []), {}, "analyze_code"),
        ("victor.batch", (), {"skill": "sleep", "items": []}, "sleep"),
        ("victor.reduce", ([],), {"skill": "report"}, "report"),
        ("victor.reconcile", (), {}, "victor.reconcile"),
    ],
)
def test_tasks_are_reported_under_their_skill(name, args, kwargs, skill) -> None:
    assert skill_of(name, args, kwargs) == skill


def test_pending_figures_are_dropped_after_each_flush(reporter: Reporter) -> None:
    _run(reporter, "t1", "victor.skill.noop", 0)
    reporter.flush()
    assert reporter._windows == {} and reporter._jobs == {}
    reporter.task_started("never-finishes", None)
    assert len(reporter._started) == 1


def test_windows_expire_with_their_ttl(embedded_settings: Callable[..., Settings]) -> None:
    settings = embedded_settings(
        metrics_bucket_s=1, metrics_window_s=1, metrics_retention_s=10, key_prefix="vtttl"
    )
    store = MemoryMetricsStore()
    reporter = Reporter(settings, store)
    try:
        _run(reporter, "t1", "victor.skill.noop", 0)
        reporter.flush()
        keys = Keys("vtttl")
        bucket = int(time.time() // 1)
        assert store.hashes([keys.metrics_bucket("skill", "noop", bucket)])[0]["n"] == "1"
        # Every key carries a TTL: pretend the clock moved past it.
        for key, (fields, _) in list(store._hashes.items()):
            store._hashes[key] = (fields, time.monotonic() - 1)
        assert store.hashes([keys.metrics_bucket("skill", "noop", bucket)]) == [{}]
    finally:
        reporter.stop()


def test_job_figures_are_kept_per_job_and_skill(reporter: Reporter) -> None:
    _run(
        reporter,
        "j.0",
        "victor.batch",
        5,
        args=("sleep", [{}]),
        kwargs={"job_id": "j"},
        retval=[{"ok": True}],
    )
    reporter.flush()
    stats = reporter.store.hashes([reporter.keys.metrics_job("j")])[0]
    assert stats["sleep|n"] == "1"
    assert int(stats["sleep|run_us"]) >= 5000


def test_process_figures_report_rss(reporter: Reporter) -> None:
    reporter.flush()
    metrics = get_metrics(reporter.settings, store=reporter.store)
    assert metrics["memory"]["fleet_mb"] > 10
    assert isinstance(metrics["memory_usage"], float) and metrics["memory_usage"] > 10
    (worker,) = metrics["workers"].values()
    assert worker["processes"][0]["memory_limit_mb"] == reporter.settings.memory_limit_mb


def test_the_prometheus_view_of_get_metrics_names_each_skill(reporter: Reporter) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    _run(reporter, "t1", "victor.skill.sleep", 1)
    reporter.flush()
    text = metrics_registry(get_metrics(reporter.settings, store=reporter.store)).prometheus_text()
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert samples[("victor_skill_tasks", (("skill", "sleep"),))] == 1
    assert samples[("victor_fleet_tasks", ())] == 1
    assert ("victor_queue_depth", ()) in samples


def test_metrics_enabled_off_installs_no_reporter(
    embedded_settings: Callable[..., Settings],
) -> None:
    assert reporter_of(create_app(embedded_settings(metrics_enabled=False))) is None
    assert reporter_of(create_app(embedded_settings())) is not None


def test_windows_must_fit_the_retention(embedded_settings: Callable[..., Settings]) -> None:
    from workers.core.errors import ConfigError

    with pytest.raises(ConfigError, match="metrics_window_s"):
        embedded_settings(metrics_window_s=1000, metrics_retention_s=900)


def test_the_background_thread_flushes_every_interval(
    embedded_settings: Callable[..., Settings],
) -> None:
    settings = embedded_settings(metrics_flush_interval_s=0.05, key_prefix="vtflush")
    reporter = Reporter(settings, MemoryMetricsStore())
    try:
        _run(reporter, "t1", "victor.skill.noop", 0)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not reporter.store.members(
            reporter.keys.metrics_skills(), 0
        ):
            time.sleep(0.02)
        assert time.monotonic() < deadline - 4  # well within a second, without flush()
    finally:
        reporter.stop()


def test_figures_older_than_the_window_are_left_out(
    embedded_settings: Callable[..., Settings],
) -> None:
    settings = embedded_settings(
        metrics_bucket_s=1,
        metrics_window_s=2,
        metrics_retention_s=60,
        key_prefix="vtwin",
        metrics_flush_interval_s=60,
    )
    reporter = Reporter(settings, MemoryMetricsStore())
    try:
        _run(reporter, "t1", "victor.skill.noop", 0)
        reporter.flush()
        assert get_metrics(settings, store=reporter.store)["fleet"]["tasks"] == 1
        time.sleep(2.1)
        assert get_metrics(settings, store=reporter.store)["fleet"]["tasks"] == 0
        assert get_metrics(settings, window_s=10, store=reporter.store)["fleet"]["tasks"] == 1
    finally:
        reporter.stop()

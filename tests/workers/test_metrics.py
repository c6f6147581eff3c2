"""MetricsRegistry: the guide's API, exact counts under threads, Prometheus text that parses."""

from __future__ import annotations

import threading

import pytest
from prometheus_client.parser import text_string_to_metric_families

from workers.core.errors import ConfigError
from workers.telemetry.histograms import bucket_value_ms, histogram_percentile, latency_bucket
from workers.telemetry.registry import MetricsRegistry


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_counter_and_timer_follow_the_guides_api() -> None:
    registry = MetricsRegistry()
    requests = registry.create_counter(name="requests", description="Requests served")
    latency = registry.create_timer(name="request_seconds", description="Request latency")
    for _ in range(3):
        requests.increment()
        with latency.time():
            pass
    assert requests.value == 3
    assert latency.count == 3
    assert 0 <= latency.sum < 0.1


def test_counters_are_exact_under_threads() -> None:
    counter = MetricsRegistry().create_counter("hits")
    timer = MetricsRegistry().create_timer("blocks")

    def work() -> None:
        for _ in range(20_000):
            counter.increment()
            timer.observe(0.001)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert counter.value == 160_000
    assert timer.count == 160_000


def test_prometheus_text_parses_and_carries_the_values() -> None:
    registry = MetricsRegistry("victor")
    registry.create_counter("tasks_total", "Tasks", labels=("skill",)).labels(skill="a").inc(5)
    registry.create_gauge("pool_size", "Pool size").set(4)
    histogram = registry.create_histogram("run_seconds", "Run time", buckets=(0.1, 1.0))
    for value in (0.05, 0.5, 5.0):
        histogram.observe(value)
    samples = _samples(registry.prometheus_text())
    assert samples[("victor_tasks_total", (("skill", "a"),))] == 5
    assert samples[("victor_pool_size", ())] == 4
    assert samples[("victor_run_seconds_bucket", (("le", "0.1"),))] == 1
    assert samples[("victor_run_seconds_bucket", (("le", "1.0"),))] == 2
    assert samples[("victor_run_seconds_bucket", (("le", "+Inf"),))] == 3
    assert samples[("victor_run_seconds_count", ())] == 3
    assert samples[("victor_run_seconds_sum", ())] == pytest.approx(5.55)


def test_each_registry_has_its_own_prometheus_registry() -> None:
    first, second = MetricsRegistry(), MetricsRegistry()
    first.create_counter("only_here").increment()
    assert "only_here" in first.prometheus_text()
    assert "only_here" not in second.prometheus_text()


def test_creating_a_metric_twice_returns_it_but_a_clash_is_refused() -> None:
    registry = MetricsRegistry()
    assert registry.create_counter("jobs") is registry.create_counter("jobs")
    with pytest.raises(ConfigError, match="already exists as a counter"):
        registry.create_gauge("jobs")


@pytest.mark.parametrize("name", ["2fast", "with-dash", "sp ace", ""])
def test_invalid_metric_names_are_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="invalid metric name"):
        MetricsRegistry().create_counter(name)


def test_labels_must_match_the_declared_names() -> None:
    counter = MetricsRegistry().create_counter("by_skill", labels=("skill",))
    with pytest.raises(ConfigError, match="needs labels skill"):
        counter.labels(tenant="x")


def test_counters_do_not_decrease() -> None:
    with pytest.raises(ValueError, match="cannot decrease"):
        MetricsRegistry().create_counter("up").increment(-1)


@pytest.mark.parametrize("ms", [0.2, 1.0, 7.5, 40.0, 120.0, 2_000.0, 60_000.0])
def test_latency_buckets_are_within_six_percent(ms: float) -> None:
    assert bucket_value_ms(latency_bucket(ms)) == pytest.approx(ms, rel=0.06)


def test_histogram_percentiles_pick_the_right_rank() -> None:
    counts: dict[int, int] = {}
    for ms in [10.0] * 90 + [100.0] * 9 + [1000.0]:
        index = latency_bucket(ms)
        counts[index] = counts.get(index, 0) + 1
    assert histogram_percentile(counts, 0.50) == pytest.approx(10.0, rel=0.06)
    assert histogram_percentile(counts, 0.95) == pytest.approx(100.0, rel=0.06)
    assert histogram_percentile(counts, 1.0) == pytest.approx(1000.0, rel=0.06)
    assert histogram_percentile({}, 0.5) is None

"""The doctor's rules as table tests: each finding names the setting and a value to try."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.doctor import diagnose
from orchestrator.doctor.rules import (
    cache_findings,
    error_findings,
    latency_findings,
    lazy_loading_findings,
    memory_findings,
    tuner_findings,
)
from workers.core.settings import Settings


def settings(**values: Any) -> Settings:
    return Settings(**values)


def worker(rss_mb: float, **extra: Any) -> dict[str, Any]:
    return {"processes": [{"pid": 7, "rss_mb": rss_mb}], **extra}


def test_a_process_past_the_warning_line_asks_for_a_larger_memory_limit() -> None:
    values = settings(memory_limit_mb=1024, memory_warning_threshold=0.8)
    [finding] = memory_findings(values, {"workers": {"w1": worker(900.0)}})
    assert finding.setting == "memory_limit_mb" and finding.env == "VICTOR_MEMORY_LIMIT_MB"
    assert finding.try_value > 1024 and finding.try_value % 256 == 0
    assert "w1 pid 7 uses 900 MB" in finding.message
    assert memory_findings(values, {"workers": {"w1": worker(700.0)}}) == []


@pytest.mark.parametrize(
    ("values", "setting"),
    [
        ({"lazy_loading_enabled": False}, "lazy_loading_enabled"),
        ({"lazy_load_skills": False}, "lazy_load_skills"),
    ],
)
def test_lazy_loading_off_is_named(values: dict[str, Any], setting: str) -> None:
    [finding] = lazy_loading_findings(settings(**values))
    assert (finding.setting, finding.try_value) == (setting, True)
    assert lazy_loading_findings(settings()) == []


def cache_stats(**response: Any) -> dict[str, Any]:
    base = {"hits": 10, "misses": 90, "hit_rate": 0.1, "evictions": 0, "expirations": 0}
    return {"caches": {"response": {**base, **response}}}


@pytest.mark.parametrize(
    ("stats", "setting", "value"),
    [
        ({"evictions": 40}, "response_cache_size", 2000),
        ({"expirations": 40}, "response_cache_ttl", 7200),
    ],
)
def test_a_cache_that_misses_and_evicts_asks_for_size_or_ttl(
    stats: dict[str, Any], setting: str, value: int
) -> None:
    values = settings(response_cache_size=1000, response_cache_ttl=3600)
    [finding] = cache_findings(values, cache_stats(**stats))
    assert (finding.setting, finding.try_value) == (setting, value)


def test_a_cache_with_few_lookups_or_good_hits_says_nothing() -> None:
    values = settings()
    assert cache_findings(values, cache_stats(hits=2, misses=3, evictions=9)) == []
    assert cache_findings(values, cache_stats(hits=90, misses=10, hit_rate=0.9, evictions=9)) == []


def test_high_latency_names_the_slowest_skill() -> None:
    metrics = {
        "avg_latency": 3500.0,
        "skills": {"fetch": {"avg_latency": 5000.0}, "noop": {"avg_latency": 1.0}},
    }
    [finding] = latency_findings(settings(response_cache_enabled=False), metrics)
    assert "slowest: fetch" in finding.message
    assert (finding.setting, finding.try_value) == ("response_cache_enabled", True)
    [finding] = latency_findings(settings(tuner_max_concurrency=8), metrics)
    assert (finding.setting, finding.try_value) == ("tuner_max_concurrency", 16)
    assert latency_findings(settings(), {"avg_latency": 1500.0}) == []


def test_a_high_error_rate_names_the_failing_skills() -> None:
    metrics = {"error_rate": 0.2, "skills": {"fetch": {"error_rate": 0.4}, "noop": {}}}
    [finding] = error_findings(metrics)
    assert "error rate 20.0%" in finding.message and "fetch" in finding.message
    assert error_findings({"error_rate": 0.01}) == []


def test_a_tuner_pinned_at_its_maximum_asks_for_a_higher_one() -> None:
    decisions = [{"reason": "hold 8: throughput +20%, at the maximum 8"}] * 3
    tuner = {"workers": {"w1": {"bounds": {"min": 1, "max": 8}, "decisions": decisions}}}
    [finding] = tuner_findings(settings(), {"workers": {}}, tuner)
    assert (finding.setting, finding.try_value) == ("tuner_max_concurrency", 16)
    tuner["workers"]["w1"]["decisions"] = decisions[:2]
    assert tuner_findings(settings(), {"workers": {}}, tuner) == []


def test_autoscale_workers_under_an_acting_tuner_are_named() -> None:
    metrics = {"workers": {"w1": worker(10.0, autoscale={"min": 1, "max": 4})}}
    tuner = {"lease": {"holder": "tuner-1"}}
    [finding] = tuner_findings(settings(tuner_enabled=True), metrics, tuner)
    assert "--autoscale" in finding.message and finding.setting == "tuner_enabled"
    assert tuner_findings(settings(tuner_enabled=True), metrics, {"lease": {}}) == []


def test_diagnose_puts_warnings_first() -> None:
    values = settings(lazy_loading_enabled=False, memory_limit_mb=512)
    found = diagnose(values, {"workers": {"w1": worker(500.0)}}, {}, {})
    assert [finding.check for finding in found] == ["memory", "lazy_loading"]

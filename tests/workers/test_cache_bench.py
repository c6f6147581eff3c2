"""The cache and tool_selection benchmark groups run end to end at size tiny."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.bench.runner import run_benchmark, run_group


def test_tool_selection_group_reports_a_reduction(tmp_path: Path) -> None:
    result = run_group("tool_selection", "tiny", out_dir=tmp_path)
    assert result["latency_ms"]["cached"] < result["latency_ms"]["uncached"]
    assert 0 < result["reduction"] < 1 and result["hit_rate"] > 0.5
    assert (tmp_path / "tool_selection-tiny.json").exists()


def test_run_benchmark_returns_the_guides_keys() -> None:
    result = run_benchmark(group="tool_selection", iterations=2)
    assert {"latency_ms", "throughput", "hit_rate", "reduction"} <= set(result)


@pytest.mark.redis
@pytest.mark.integration
def test_cache_group_measures_l1_l2_get_memory_and_analyze(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VICTOR_REDIS_URL", redis_url)
    result = run_group("cache", "tiny", out_dir=tmp_path)
    assert result["l1_hit_us"] < result["get_us"] < result["l2_hit_us"] * 2
    assert result["l1_vs_get"] > 5 and result["l2_vs_get"] > 0.5
    memory = result["bytes_per_1000_selection_entries"]
    assert memory["current_size"] >= 1000 and 0 < memory["accounted_mb"] < memory["heap_mb"]
    assert result["analyze"]["embedded"]["second_s"] > 0
    assert result["analyze"]["redis"]["first_s"] > 0
    assert result["direct_get_us"] > 0 and result["l2_vs_direct_get"] > 0
    new_process = result["analyze"]["embedded_new_process"]["job"]
    assert new_process["first_s"] > 0 and new_process["second_s"] > 0

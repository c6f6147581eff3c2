"""The streaming and api benchmark groups run at their tiny size and report sane figures."""

from __future__ import annotations

import pytest

from orchestrator.bench import GROUPS
from orchestrator.bench.runner import run_group

pytestmark = [pytest.mark.redis, pytest.mark.integration]


def test_streaming_group_streams_every_result_before_the_end(tmp_path) -> None:
    assert "streaming" in GROUPS
    result = run_group("streaming", "tiny", out_dir=tmp_path)
    assert result["results_streamed"] == [result["tasks"]]
    assert 0 < result["ours"] < result["peer"]
    assert result["ratio"] == pytest.approx(result["ours"] / result["peer"], rel=0.05)
    assert (tmp_path / "streaming-tiny.json").exists()


def test_api_group_submits_without_failures(tmp_path) -> None:
    result = run_group("api", "tiny", out_dir=tmp_path)
    assert result["failures"] == 0
    assert result["ours"] > 0 and result["peer"] > 0
    assert result["api"]["p50_ms"] <= result["api"]["p99_ms"]

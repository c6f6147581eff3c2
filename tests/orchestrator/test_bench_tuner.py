"""The tuner benchmark: its peaked backend, the figures it reads from a timeline, and its tiny
run through the real CLI (every field the issue asks for, with sane values)."""

from __future__ import annotations

import http.client
import json
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from orchestrator.bench.tuner_load import Point, next_refinement, rolling, seconds_to, steady
from orchestrator.harness.backend import PeakedModel, PeakedServer

VICTOR = str(Path(sys.executable).with_name("victor"))


def test_peaked_model_throughput_peaks_at_the_optimum_and_falls_past_it() -> None:
    model = PeakedModel.with_peak(optimum=6, peak_per_s=50.0, exponent=2.0)
    rates = [model.throughput(size) for size in range(1, 17)]
    assert max(range(1, 17), key=model.throughput) == 6
    assert model.throughput(6) == pytest.approx(50.0)
    assert rates[:6] == sorted(rates[:6]) and rates[5:] == sorted(rates[5:], reverse=True)
    assert model.throughput(12) == pytest.approx(25.0)  # past it: peak * optimum / c


def test_peaked_model_refuses_an_optimum_below_one() -> None:
    with pytest.raises(ValueError, match="optimum >= 1"):
        PeakedModel(optimum=0, base_ms=10.0)


def test_peaked_server_slows_requests_past_the_optimum_and_counts_them() -> None:
    server = PeakedServer(PeakedModel(optimum=2, base_ms=100.0)).serve_in_thread()
    host, port = server.server_address[:2]
    elapsed: list[float] = []

    def call() -> None:
        connection = http.client.HTTPConnection(str(host), int(port), timeout=10)
        started = time.monotonic()
        connection.request("GET", "/work")
        assert connection.getresponse().read() == b"ok\n"
        elapsed.append(time.monotonic() - started)
        connection.close()

    try:
        call()  # alone: the base time
        threads = [threading.Thread(target=call) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        stats = server.snapshot(reset=True)
    finally:
        server.close()
    assert 0.09 <= elapsed[0] < 0.3
    assert max(elapsed[1:]) >= 0.2  # four at once on an optimum of two: at least 2x slower
    assert stats["served"] == 5 and stats["inflight"] == 0
    assert stats["peak_inflight"] >= 3
    assert stats["model"] == {"optimum": 2, "base_ms": 100.0, "exponent": 2.0}


def test_sweep_refinement_bisects_toward_the_better_neighbour() -> None:
    measured = {1: [5.0], 2: [10.0], 4: [20.0], 8: [40.0], 16: [22.0]}
    assert next_refinement(measured) == 12  # 16 beats 4: the peak is above 8
    measured[12] = [30.0]
    assert next_refinement(measured) == 10
    measured[10] = [45.0]
    assert next_refinement(measured) in (9, 11)
    measured.update({9: [44.0], 11: [41.0]})
    assert next_refinement(measured) is None


def test_timeline_figures_read_throughput_reach_and_spread() -> None:
    # 10/s for 10 s at 2 slots, then 40/s at 4 (with one probe to 5) for 20 s.
    points, served = [], 0
    for second in range(31):
        slots = 2 if second < 10 else (5 if second == 25 else 4)
        points.append(Point(float(second), served, slots, 80.0))
        served += 10 if second < 10 else 40
    assert seconds_to(points, 4.0, 36.0) == 14.0
    assert seconds_to(points, 4.0, 41.0) is None
    assert rolling(points, 4.0)[0] == (4.0, 10.0)
    figures = steady(points, 20.0)
    assert figures["per_s"] == pytest.approx(40.0)
    assert figures["pool_spread"] == {"min": 4, "max": 5, "stdev": 0.287, "median": 4}


@pytest.mark.redis
@pytest.mark.integration
def test_bench_tuner_tiny_reports_every_figure_of_the_issue(redis_url: str, tmp_path: Path) -> None:
    completed = subprocess.run(
        [VICTOR, "bench", "tuner", "--size", "tiny", "--json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "VICTOR_REDIS_URL": redis_url},
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout)
    assert result == json.loads((tmp_path / "bench-results" / "tuner-tiny.json").read_text())
    for name in ("ratio", "vs_celery_autoscale", "peak_rss_mb", "memory_limit_mb"):
        assert math.isfinite(result[name]) and result[name] > 0, name
    assert set(result["seconds_to_90"]) == set(result["pool_spread"]) == {"from_min", "from_max"}
    low, high = result["plan"]["low"], result["plan"]["high"]
    for run in result["ours"].values():
        spread = run["pool_spread"]
        assert low <= spread["min"] <= spread["max"] <= high
        assert run["per_s"] > 0 and run["timeline"]
    assert result["peak_rss_mb"] <= result["memory_limit_mb"]
    assert {"1", "2", "4"} <= set(result["sweep"])
    best = result["peer"]["best_fixed"]
    assert best["per_s"] == max(size["per_s"] for size in result["sweep"].values())
    assert result["peer"]["celery_autoscale"]["pool"] == "prefork"
    assert "threads pool cannot autoscale" in result["notes"][0]
    assert low + 1 <= result["backend"]["optimum"] <= high - 1

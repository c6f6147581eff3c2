"""A batch run on a real fleet samples the fleet's pool and picks up the tuner's decisions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from orchestrator.batch.fleet_samples import pool_reader
from orchestrator.harness import WorkerProcess
from orchestrator.tuner.journal import TunerJournal
from tests.conftest import ROOT, settings_env
from workers.core.settings import Settings

VICTOR = [sys.executable, "-m", "orchestrator.cli", "batch"]
WORKERS, CONCURRENCY = 2, 2


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _wait_for_rows(settings: Settings, workers: int) -> None:
    """Until every worker has written its metrics row (its first flush after it started)."""
    read = pool_reader(settings)
    deadline = time.monotonic() + 30
    while read()[1] < workers:
        assert time.monotonic() < deadline, f"the workers reported {read()}"
        time.sleep(0.1)


@pytest.mark.redis
@pytest.mark.integration
def test_fleet_file_holds_the_workers_total_concurrency_and_the_tuners_resizes(
    redis_settings: Callable[..., Settings],
    worker_factory: Callable[..., WorkerProcess],
    tmp_path: Path,
) -> None:
    settings = redis_settings()
    for _ in range(WORKERS):
        worker_factory(settings, concurrency=CONCURRENCY)
    _wait_for_rows(settings, WORKERS)
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"value": i, "ms": 20}) + "\n" for i in range(1_200)))
    out = tmp_path / "o.jsonl"
    args = [str(source), "--skill", "sleep", "--out", str(out), "--chunk-size", "10"]
    driver = subprocess.Popen(
        [*VICTOR, *args, "--json", "-q"],
        env={**os.environ, **settings_env(settings)},
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    fleet = tmp_path / "o.fleet.jsonl"
    deadline = time.monotonic() + 60
    while not (fleet.exists() and fleet.read_bytes()) and driver.poll() is None:
        assert time.monotonic() < deadline, "the driver wrote no pool sample"
        time.sleep(0.05)
    # A decision as the fleet's tuner journals it, made while the run is driven.
    decision = {
        "worker": "w1@test",
        "current": 2,
        "target": 3,
        "action": "grow",
        "rule": "climb",
        "reason": "grow 2->3: made by the test",
        "at": round(time.time(), 3),
        "applied": "applied",
    }
    TunerJournal(settings).append([decision, {**decision, "action": "hold", "at": time.time()}])
    stdout, stderr = driver.communicate(timeout=240)
    assert driver.returncode == 0, stderr.decode()
    summary = json.loads(stdout)
    assert summary["fleet"] == str(fleet) and summary["elapsed_s"] > 2
    lines = _lines(fleet)
    samples = [line for line in lines if "pool" in line]
    assert len(samples) >= 2  # at the start, every 2 s, at the end
    assert {(line["pool"], line["workers"]) for line in samples} == {
        (WORKERS * CONCURRENCY, WORKERS)
    }
    recorded = [line["decision"] for line in lines if "decision" in line]
    assert recorded == [{k: v for k, v in decision.items() if k != "at"}]  # the hold is not kept

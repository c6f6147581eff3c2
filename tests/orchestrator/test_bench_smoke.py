"""Every benchmark group runs at its tiny size through the real CLI, so none rots."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.bench import GROUPS

pytestmark = [pytest.mark.redis, pytest.mark.integration]

VICTOR = str(Path(sys.executable).with_name("victor"))
ROOT = Path(__file__).resolve().parents[2]


def test_bench_list_names_every_group() -> None:
    listed = subprocess.run(
        [VICTOR, "bench", "list"], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.split()
    assert sorted(listed) == sorted(GROUPS)


# The tuner group's tiny run is test_bench_tuner's (it checks every figure the issue asks for);
# running it twice cost the suite a minute.
SMOKED = sorted(set(GROUPS) - {"tuner"})


@pytest.mark.parametrize("group", SMOKED)
def test_bench_group_runs_at_tiny_size_and_reports_a_ratio(
    group: str, redis_url: str, tmp_path: Path
) -> None:
    env = {**os.environ, "VICTOR_REDIS_URL": redis_url}
    completed = subprocess.run(
        [VICTOR, "bench", group, "--size", "tiny", "--json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout)
    assert result["group"] == group
    assert isinstance(result["ratio"], float | int)
    assert math.isfinite(result["ratio"]) and result["ratio"] > 0
    assert "ours" in result and "peer" in result
    assert (tmp_path / "bench-results" / f"{group}-tiny.json").exists()


def test_unknown_bench_group_lists_the_known_ones() -> None:
    completed = subprocess.run(
        [VICTOR, "bench", "nosuch"], capture_output=True, text=True, cwd=ROOT
    )
    assert completed.returncode != 0
    assert "nosuch" in completed.stderr and "dispatch" in completed.stderr

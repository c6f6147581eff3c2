"""victor profile: cProfile and tracemalloc rows around one call, and the CLI around a skill."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.cli.profile import profile_call


def _busy() -> int:
    return sum(index * index for index in range(20_000))


def test_cpu_profile_lists_the_called_function_first_by_cumulative_time() -> None:
    result, rows = profile_call(_busy, "cpu", top=5)
    assert result == _busy()
    assert any("_busy" in row["function"] for row in rows[:3])
    assert all(row["cumulative_s"] >= 0 for row in rows)


def test_memory_profile_finds_the_allocating_line() -> None:
    kept: list[bytearray] = []
    _, rows = profile_call(lambda: kept.append(bytearray(4 * 1_048_576)), "memory", top=3)
    assert rows[0]["size_kb"] >= 4096
    assert "test_metrics_profile.py" in rows[0]["where"]


def test_profile_skill_command_prints_json_rows() -> None:
    outcome = CliRunner().invoke(
        app, ["profile", "skill", "sleep", "--params", '{"ms": 5}', "--top", "50", "--json"]
    )
    assert outcome.exit_code == 0, outcome.output
    rows = json.loads(outcome.stdout)
    assert any("sleep" in row["function"] for row in rows)

"""Goal files that cannot be read as text fail with a message naming the file and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.core.goals import load_goal_file
from tests.orchestrator.test_cli import flat, victor
from workers.core.errors import PlanError


def test_a_goal_file_that_is_not_utf8_names_the_file_and_the_fix(tmp_path: Path) -> None:
    goal = tmp_path / "latin1.yaml"
    goal.write_bytes("name: caf\u00e9\nsteps: [{skill: noop, items: [{}]}]\n".encode("latin-1"))
    with pytest.raises(PlanError, match=r"'.*latin1\.yaml' is not UTF-8 text .*save it as UTF-8"):
        load_goal_file(goal)


def test_victor_run_of_a_non_utf8_goal_exits_2_without_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "utf16.json").write_bytes('{"steps": []}'.encode("utf-16"))
    result = victor("run", "utf16.json", cwd=tmp_path)
    assert result.returncode == 2
    error = flat(result.stderr)
    assert "goal file 'utf16.json' is not UTF-8 text" in error
    assert "save it as UTF-8" in error
    assert "Traceback" not in result.stderr

"""``victor ask``: plan a sentence, show the plan, run it embedded; exit codes as victor run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.orchestrator.test_cli import clean_env, flat, victor_script


def ask(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``victor ask ...`` with no terminal on stdin, in embedded mode."""
    return subprocess.run(
        [str(victor_script()), "ask", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=clean_env(**env),
        stdin=subprocess.DEVNULL,
        timeout=180,
        check=False,
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "core.py").write_text("def f(x):\n    if x:\n        return 1  # TODO\n")
    (tmp_path / "pkg" / "util.py").write_text("y = 2  # TODO later\n")
    (tmp_path / "notes.txt").write_text("hello\n")
    return tmp_path


def test_ask_yes_plans_shows_and_runs_the_goal(tree: Path) -> None:
    done = ask("--yes", "analyze pkg", cwd=tree)
    assert done.returncode == 0, done.stderr
    shown = flat(done.stdout)
    assert "step 1: analyze_code (2 items) <- 'analyze pkg'; paths pkg" in shown
    assert "reduce: report" in shown
    assert "succeeded" in shown
    assert '"files": 2' in done.stdout  # the report of the two files, from the run


def test_ask_json_prints_the_plan_and_the_finished_job(tree: Path) -> None:
    done = ask(
        "--yes",
        "--json",
        "search pkg for 'TODO' and then write a report",
        cwd=tree,
        VICTOR_ENABLE_HIERARCHICAL_PLANNING="true",
    )
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    plan, job = document["plan"], document["job"]
    assert plan["split_by"] == "rules"
    assert [row["skill"] for row in plan["sub_goals"]] == ["search_code", "report"]
    assert (plan["items"], plan["reduce"], plan["strategy"]) == (2, "report", "sequential")
    assert job["status"] == "succeeded"
    assert job["result"]["totals"]["matches"] == 2


def test_ask_exits_3_when_some_items_fail(tree: Path) -> None:
    # fetch is refused at run time (no host is allowed), reading the file succeeds.
    done = ask(
        "--yes",
        "read notes.txt; fetch https://example.org/",
        cwd=tree,
        VICTOR_ENABLE_HIERARCHICAL_PLANNING="true",
    )
    assert done.returncode == 3, done.stdout + done.stderr
    assert "partial" in flat(done.stdout + done.stderr)


def test_ask_without_yes_and_without_a_terminal_refuses_after_showing_the_plan(
    tree: Path,
) -> None:
    done = ask("analyze pkg", cwd=tree)
    assert done.returncode == 2
    assert "step 1: analyze_code" in flat(done.stdout)
    assert "no terminal to ask on; pass --yes" in flat(done.stderr)
    assert "job " not in done.stdout + done.stderr  # nothing was dispatched


def test_ask_plan_only_shows_the_plan_and_runs_nothing(tree: Path) -> None:
    done = ask("--plan-only", "--json", "find 'TODO' in pkg/core.py", cwd=tree)
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)["plan"]
    assert plan["spec"]["steps"][0]["params"] == {"pattern": "TODO"}
    assert "job" not in json.loads(done.stdout)


def test_ask_a_goal_it_cannot_plan_exits_2_with_the_fix(tree: Path) -> None:
    done = ask("--yes", "search for TODO in pkg", cwd=tree)
    assert done.returncode == 2
    assert "quote the pattern" in flat(done.stderr)


def test_planning_a_sentence_imports_no_provider_sdk(tree: Path) -> None:
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from orchestrator.cli import build_app\n"
        "build_app(('ask',))\n"
        "from orchestrator.core.text_planning import plan_text\n"
        "from workers.core.settings import Settings\n"
        "from workers.skills import load_registry\n"
        f"settings = Settings(allowed_roots=[Path({str(tree)!r})])\n"
        "plan_text('analyze pkg then read notes.txt', settings, load_registry())\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('openai', 'anthropic')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip().splitlines()[-1] == "[]"

"""The ``victor`` command line, through the installed console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest

from orchestrator.harness import WorkerProcess
from tests.conftest import settings_env
from workers.celery_app.factory import create_app
from workers.core.settings import Settings

SHIPPED = {"read_file", "analyze_code", "search_code", "report", "noop", "sleep", "select_tools"}


def victor_script() -> Path:
    """The console script that ``pip install`` put next to this interpreter."""
    script = Path(sys.executable).with_name("victor")
    if not script.exists():
        pytest.fail(
            f"the victor console script is not installed next to {sys.executable}; "
            "run make install (pip install -e '.[dev]') before the tests"
        )
    return script


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without VICTOR_* settings (embedded mode), plus ``extra``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("VICTOR_")}
    env.update({"COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"})
    env.update(extra)
    return env


def victor(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout_s: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(victor_script()), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env or clean_env(),
        timeout=timeout_s,
        check=False,
    )


def flat(text: str) -> str:
    """Rich wraps long messages; compare with single spaces."""
    return " ".join(text.split())


def write_tree(root: Path) -> None:
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "a.py").write_text(
        '"""A."""\n\n\ndef alpha(x):\n    # TODO: simplify\n'
        "    if x and x > 1:\n        return 1\n    return 0\n"
    )
    (root / "pkg" / "b.py").write_text(
        "class B:\n    def beta(self, y):\n        for i in y:\n            if i:\n"
        "                return i\n        return None\n"
    )
    (root / "web.js").write_text("// FIXME: later\nfunction f() {\n  return 1;\n}\n")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")


def direct_totals(root: Path) -> dict[str, int]:
    from tasks.analyze import analyze_text

    totals: dict[str, int] = {"files": 0, "functions": 0, "classes": 0}
    for path in sorted(root.rglob("*")):
        if not path.is_file() or ".git" in path.parts:
            continue
        result = analyze_text(path.read_text(), path.name, str(path))
        totals["files"] += 1
        totals["functions"] += len(result["functions"])
        totals["classes"] += result["classes"]
        for key in ("lines", "code", "comment", "blank", "docstring", "todos"):
            totals[key] = totals.get(key, 0) + result[key]
    return totals


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    write_tree(root)
    return root


def test_the_console_script_points_at_the_cli() -> None:
    [script] = [ep for ep in entry_points(group="console_scripts") if ep.name == "victor"]
    assert script.value == "orchestrator.cli:main"
    assert victor_script().exists()


def test_analyze_json_matches_a_direct_analysis(tree: Path, tmp_path: Path) -> None:
    result = victor("analyze", str(tree), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    totals = report["totals"]
    expected = direct_totals(tree)
    for key, value in expected.items():
        assert totals[key] == value, key
    assert totals["files"] == 3  # .git skipped
    assert totals["todos"] == 2
    assert report["languages"] == {"python": 2, "javascript": 1}
    assert report["error_count"] == 0
    [top] = [row for row in report["most_complex"] if row["function"] == "B.beta"]
    assert top["complexity"] == 3


def test_analyze_prints_the_report_tables(tree: Path) -> None:
    result = victor("analyze", ".", cwd=tree)
    assert result.returncode == 0, result.stderr
    output = result.stdout
    for section in (
        "victor analyze",
        "languages",
        "largest files",
        "most complex functions",
        "TODO/FIXME",
        "functions",
        "classes",
    ):
        assert section in output, section
    assert "alpha" in output and "B.beta" in output
    assert "pkg/a.py" in output
    assert str(tree) not in output  # paths are shown relative to the analyzed directory


def test_analyze_top_limits_the_lists(tree: Path) -> None:
    result = victor("analyze", ".", "--json", "--top", "1", cwd=tree)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert len(report["largest_files"]) == 1
    assert len(report["most_complex"]) == 1
    assert report["most_complex"][0]["function"] == "B.beta"


def test_analyze_of_a_missing_path_fails_clearly(tmp_path: Path) -> None:
    result = victor("analyze", str(tmp_path / "nope"), "--json", cwd=tmp_path)
    assert result.returncode != 0
    assert "does not exist" in flat(result.stderr)
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_run_a_goal_file(suffix: str, tree: Path) -> None:
    goal: dict[str, Any] = {
        "name": "search todos",
        "steps": [{"skill": "search_code", "paths": ["pkg"], "params": {"pattern": "TODO"}}],
    }
    path = tree / f"goal{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(goal))
    else:
        path.write_text(
            "name: search todos\nsteps:\n  - skill: search_code\n    paths: [pkg]\n"
            "    params:\n      pattern: TODO\n"
        )
    result = victor("run", path.name, "--json", cwd=tree)
    assert result.returncode == 0, result.stderr
    job = json.loads(result.stdout)
    assert job["status"] == "succeeded"
    assert job["name"] == "search todos"
    assert job["total_tasks"] == job["done_tasks"] == 1


def test_run_a_goal_with_a_reduce_prints_its_result(tree: Path) -> None:
    (tree / "goal.yaml").write_text(
        "steps:\n  - skill: noop\n    items: [{value: 1}, {value: 2}, {value: 3}, {value: 4}]\n"
        "reduce:\n  skill: report\n"
    )
    result = victor("run", "goal.yaml", cwd=tree)
    assert result.returncode == 0, result.stderr
    job = json.loads(result.stdout)
    assert job["status"] == "succeeded"
    assert job["result"]["totals"]["items"] == 4


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bad.yaml", "steps:\n  - skill: noop\n    itemz: []\n", "steps.0.itemz"),
        ("broken.yaml", "steps: [\n", "does not parse"),
        ("broken.json", '{"steps": ', "does not parse"),
        ("empty.json", "{}", "steps: Field required"),
        ("goal.txt", "{}", "must end in .json, .yaml or .yml"),
        ("unknown.yaml", "steps:\n  - skill: anlyze\n    items: [{}]\n", "known skills:"),
    ],
)
def test_a_bad_goal_file_fails_with_a_clear_error(
    name: str, content: str, message: str, tmp_path: Path
) -> None:
    (tmp_path / name).write_text(content)
    result = victor("run", name, cwd=tmp_path)
    assert result.returncode != 0
    error = flat(result.stderr)
    assert message in error
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_a_missing_goal_file_fails(tmp_path: Path) -> None:
    result = victor("run", "missing.yaml", cwd=tmp_path)
    assert result.returncode != 0
    assert "cannot read goal file 'missing.yaml'" in flat(result.stderr)


def test_skills_json_lists_the_installed_skills(tmp_path: Path) -> None:
    result = victor("skills", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert SHIPPED <= set(rows)
    assert rows["analyze_code"]["task"] == "victor.skill.analyze_code"
    assert "path" in rows["analyze_code"]["input"]["properties"]


def test_skills_table(tmp_path: Path) -> None:
    result = victor("skills", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "analyze_code" in result.stdout and "pattern" in result.stdout


def test_worker_without_a_broker_says_what_to_set(tmp_path: Path) -> None:
    result = victor("worker", cwd=tmp_path, timeout_s=30)
    assert result.returncode == 2
    assert "set VICTOR_REDIS_URL" in flat(result.stderr)


@pytest.mark.parametrize("command", [["analyze", "."], ["worker"], ["run", "goal.yaml"]])
def test_an_invalid_env_setting_fails_at_start_naming_it(
    command: list[str], tmp_path: Path
) -> None:
    result = victor(*command, cwd=tmp_path, env=clean_env(VICTOR_MAX_PARALLEL_WORKERS="0"))
    assert result.returncode == 2
    error = flat(result.stderr)
    assert "VICTOR_MAX_PARALLEL_WORKERS" in error
    assert "1 <= max_parallel_workers <= 256" in error
    assert "Traceback" not in result.stderr


def test_misordered_timeouts_fail_at_start(tmp_path: Path) -> None:
    env = clean_env(VICTOR_TASK_TIME_LIMIT_S="900")
    result = victor("analyze", ".", cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert "VICTOR_VISIBILITY_TIMEOUT_S" in flat(result.stderr)


@pytest.mark.redis
@pytest.mark.integration
def test_analyze_in_distributed_mode_runs_on_the_worker(
    tree: Path,
    tmp_path: Path,
    redis_settings: Callable[..., Settings],
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    settings = redis_settings(allowed_roots=[tree], chunk_size=1, parallel_threshold=1)
    worker = worker_factory(settings, concurrency=2)
    env = clean_env(**settings_env(settings))
    result = victor("analyze", str(tree), "--json", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr + worker.log()
    report = json.loads(result.stdout)
    expected = direct_totals(tree)
    for key, value in expected.items():
        assert report["totals"][key] == value, key

    app = create_app(settings)
    try:
        ledger = app.victor.ledger  # type: ignore[attr-defined]
        [job] = ledger.list_jobs(settings.tenant)
        assert job.status == "succeeded"
        assert job.total_tasks == 3
        events = ledger.events(job.job_id)
        assert {event.worker for event in events} == {worker.hostname}
    finally:
        app.close()


@pytest.mark.redis
@pytest.mark.integration
def test_analyze_on_a_fleet_refuses_a_path_the_workers_do_not_serve(
    tree: Path,
    tmp_path: Path,
    redis_settings: Callable[..., Settings],
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    settings = redis_settings(allowed_roots=[tree], chunk_size=1, parallel_threshold=1)
    worker = worker_factory(settings, concurrency=1)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "a.py").write_text("x = 1\n")
    env = clean_env(**settings_env(settings))
    result = victor("analyze", str(elsewhere), cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stderr + worker.log()
    error = flat(result.stderr)
    assert f"worker {worker.hostname} does not serve" in error
    assert "VICTOR_ALLOWED_ROOTS on the workers" in error
    app = create_app(settings)
    try:
        assert app.victor.ledger.list_jobs(settings.tenant) == []  # type: ignore[attr-defined]
    finally:
        app.close()


def test_unserved_paths_names_each_worker_and_its_first_paths(tmp_path: Path) -> None:
    from orchestrator.cli.roots import unserved_paths
    from orchestrator.core.plan import Plan, PlannedStep

    inside, outside = tmp_path / "in" / "a.py", tmp_path / "out" / "b.py"
    plan = Plan(
        name="job",
        steps=[
            PlannedStep(skill="read_file", items=[{"path": str(inside)}, {"path": str(outside)}])
        ],
        chunk_size=1,
    )
    served = {"w1": [str(tmp_path / "in")], "w2": [str(tmp_path)]}
    assert unserved_paths(plan, served) == {"w1": [str(outside)]}

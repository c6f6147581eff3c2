"""A goal whose every item is in the cache is served without a worker; any change runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from orchestrator.cli.analyze import run_goal_cli
from orchestrator.cli.cached_goal import serve_from_cache
from orchestrator.core.planner import analyze_goal
from tests.orchestrator.test_cli import clean_env
from workers.core.settings import Mode, Settings

NO_BROKER = {"redis_url": None, "broker_url": None, "result_backend_url": None, "cache_url": None}


def write_tree(root: Path, count: int) -> None:
    for index in range(count):
        (root / f"m{index}.py").write_text(
            f"def f{index}(x):\n    if x > {index}:\n        return x\n    return None\n"
        )
    (root / "lib.go").write_text(
        "package lib\n\n// Add adds.\nfunc Add(a, b int) int {\n\treturn a + b\n}\n"
    )


def settings_for(root: Path, cache_dir: Path) -> Settings:
    settings = Settings(**NO_BROKER, allowed_roots=[root], cache_dir=str(cache_dir))
    assert settings.mode is Mode.EMBEDDED
    return settings


def analyze_fully(root: Path, settings: Settings) -> dict[str, Any]:
    job = run_goal_cli(analyze_goal(str(root)), settings, quiet=True)
    assert job["status"] == "succeeded", job
    return job


def test_nothing_is_served_before_the_first_run(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    root.mkdir()
    write_tree(root, 3)
    assert serve_from_cache(analyze_goal(str(root)), settings_for(root, tmp_path / "c")) is None


def test_a_second_analysis_is_served_from_the_cache_with_the_same_report(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    root.mkdir()
    write_tree(root, 5)
    first = analyze_fully(root, settings_for(root, tmp_path / "c"))
    # A new settings object, as a new process builds: only the cache file carries over.
    served = serve_from_cache(analyze_goal(str(root)), settings_for(root, tmp_path / "c"))
    assert served is not None
    assert served["status"] == "succeeded" and served["items"] == 6
    assert served["result"] == first["result"]
    assert served["result"]["totals"]["functions"] == 6


def test_an_edited_or_added_file_is_not_served_from_the_cache(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    root.mkdir()
    write_tree(root, 4)
    analyze_fully(root, settings_for(root, tmp_path / "c"))
    (root / "m2.py").write_text("def g():\n    return 2\n\n\ndef h():\n    return 3\n")
    assert serve_from_cache(analyze_goal(str(root)), settings_for(root, tmp_path / "c")) is None
    after_edit = analyze_fully(root, settings_for(root, tmp_path / "c"))
    assert after_edit["result"]["totals"]["functions"] == 4 - 1 + 2 + 1  # the Go file's too
    served = serve_from_cache(analyze_goal(str(root)), settings_for(root, tmp_path / "c"))
    assert served is not None and served["result"] == after_edit["result"]

    (root / "new.py").write_text("def new():\n    return 0\n")
    assert serve_from_cache(analyze_goal(str(root)), settings_for(root, tmp_path / "c")) is None


def test_a_changed_setting_in_the_key_is_not_served_from_the_cache(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    root.mkdir()
    write_tree(root, 2)
    analyze_fully(root, settings_for(root, tmp_path / "c"))
    smaller = settings_for(root, tmp_path / "c").model_copy(update={"max_file_bytes": 10})
    assert serve_from_cache(analyze_goal(str(root)), smaller) is None


LOADED = (
    "import atexit, sys\n"
    "heavy = ('celery', 'kombu', 'redis', 'tree_sitter', 'tasks.parsing.syntax')\n"
    "atexit.register(lambda: print('LOADED', *[m for m in heavy if m in sys.modules],"
    " file=sys.stderr))\n"
    "from orchestrator.cli import main\n"
    "sys.argv = ['victor', 'analyze', '.', '--json']\n"
    "main()\n"
)


def loaded_modules(tree: Path, env: dict[str, str]) -> tuple[dict[str, Any], list[str]]:
    done = subprocess.run(
        [sys.executable, "-c", LOADED],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    line = next(row for row in done.stderr.splitlines() if row.startswith("LOADED"))
    return json.loads(done.stdout), line.split()[1:]


def test_the_served_run_starts_no_worker_and_loads_no_parser(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    write_tree(tree, 3)
    env = clean_env(VICTOR_CACHE_DIR=str(tmp_path / "cache"))
    first, loaded_first = loaded_modules(tree, env)
    assert "celery" in loaded_first  # the probe sees what the usual path loads
    second, loaded_second = loaded_modules(tree, env)
    assert second == first
    assert loaded_second == []

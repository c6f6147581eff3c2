"""``victor run`` shows what each step produced and writes every outcome with ``--out``."""

from __future__ import annotations

import json
from pathlib import Path

from orchestrator.core.steps import PREVIEW_CHARS, preview, summarize_steps
from tests.orchestrator.test_cli import flat, victor


def test_run_shows_a_summary_per_step_with_the_first_results(tmp_path: Path) -> None:
    (tmp_path / "goal.yaml").write_text(
        "steps:\n  - skill: noop\n    items: [{value: 1}, {value: 2}, {value: 3}, {value: 4}]\n"
        "  - skill: noop\n    items: [{value: 5}]\n"
    )
    result = victor("run", "goal.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    job = json.loads(result.stdout)
    first, second = job["steps"]
    assert (first["step"], first["skill"], first["items"]) == (1, "noop", 4)
    assert (first["succeeded"], first["failed"]) == (4, 0)
    assert first["first_results"] == [1, 2, 3]  # noop returns its value
    assert second["first_results"] == [5]


def test_a_goal_whose_items_all_fail_shows_them_and_writes_them_with_out(
    tmp_path: Path,
) -> None:
    (tmp_path / "goal.yaml").write_text(
        "steps:\n  - skill: read_file\n    items: [{path: a.txt}, {path: b.txt}]\n"
    )
    result = victor("run", "goal.yaml", "--out", "outcomes.jsonl", cwd=tmp_path)
    assert result.returncode == 1
    job = json.loads(result.stdout)
    assert job["status"] == "failed"
    [step] = job["steps"]
    assert (step["items"], step["succeeded"], step["failed"]) == (2, 0, 2)
    assert "2 x AccessDeniedError: path '...' does not exist (looked for '...')" in flat(
        result.stderr
    )
    lines = [json.loads(line) for line in (tmp_path / "outcomes.jsonl").read_text().splitlines()]
    assert [(line["index"], line["ok"], line["item"]) for line in lines] == [
        (0, False, {"path": "a.txt"}),
        (1, False, {"path": "b.txt"}),
    ]
    assert lines[1]["error"] == f"path 'b.txt' does not exist (looked for '{tmp_path / 'b.txt'}')"
    assert lines[1]["type"] == "AccessDeniedError"


def test_out_in_a_missing_directory_is_refused_before_anything_runs(tmp_path: Path) -> None:
    (tmp_path / "goal.yaml").write_text("steps:\n  - skill: noop\n    items: [{}]\n")
    result = victor("run", "goal.yaml", "--out", "nowhere/o.jsonl", cwd=tmp_path)
    assert result.returncode == 2
    assert "its directory does not exist" in flat(result.stderr)
    assert "job " not in result.stderr


def test_attach_with_an_empty_job_id_is_a_usage_error(tmp_path: Path) -> None:
    result = victor("run", "--attach", "", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "--attach needs a job id" in flat(result.stderr)
    assert "Traceback" not in result.stderr


def test_step_summaries_count_and_shorten_what_they_show() -> None:
    outcomes = [
        {"step": 1, "skill": "s", "index": 0, "ok": True, "result": "x" * 1000},
        {"step": 1, "skill": "s", "index": 1, "ok": False, "error": "boom"},
        {"step": 2, "skill": "t", "index": 0, "ok": True, "result": list(range(20))},
    ]
    first, second = summarize_steps(iter(outcomes))
    assert (first["items"], first["succeeded"], first["failed"]) == (2, 1, 1)
    assert first["first_results"][0].startswith("x" * PREVIEW_CHARS + "... (1000 chars)")
    assert second["first_results"] == [[0, 1, 2, 3, 4, "... (20 in all)"]]
    assert preview({"a": [1]}) == {"a": [1]}

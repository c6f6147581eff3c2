"""``victor submit --wait | --follow`` and ``victor jobs`` against a real API, worker and Redis."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from orchestrator.cli import app

pytestmark = [pytest.mark.redis, pytest.mark.integration]


@pytest.fixture
def env(redis_settings, worker_factory, live_api, tmp_path):
    settings = redis_settings()
    worker_factory(settings, concurrency=2)
    live = live_api(settings)
    goal = tmp_path / "goal.json"
    goal.write_text(
        json.dumps(
            {
                "name": "cli job",
                "chunk_size": 1,
                "steps": [
                    {"skill": "sleep", "items": [{"ms": 20, "value": index} for index in range(6)]}
                ],
            }
        )
    )
    return {"VICTOR_API_URL": live.url, "VICTOR_API_KEY": live.key()}, goal


def last_json(output: str) -> dict:
    return json.loads(output[output.index("{") :])


def test_submit_follow_streams_to_the_end(env) -> None:
    variables, goal = env
    result = CliRunner().invoke(app, ["submit", str(goal), "--follow", "--json"], env=variables)
    assert result.exit_code == 0, result.output
    job = last_json(result.stdout)
    assert job["status"] == "succeeded" and job["done_tasks"] == 6


def test_submit_wait_then_jobs_lists_it(env) -> None:
    variables, goal = env
    runner = CliRunner()
    result = runner.invoke(app, ["submit", str(goal), "--wait", "--json"], env=variables)
    assert result.exit_code == 0, result.output
    job_id = last_json(result.stdout)["job_id"]
    listed = runner.invoke(app, ["jobs", "--json"], env=variables)
    assert listed.exit_code == 0, listed.output
    assert job_id in [job["job_id"] for job in json.loads(listed.stdout)]


def test_submit_names_the_problem_on_a_bad_key(env) -> None:
    variables, goal = env
    result = CliRunner().invoke(
        app, ["submit", str(goal)], env={**variables, "VICTOR_API_KEY": "vk_wrong"}
    )
    assert result.exit_code == 1
    assert "401" in result.output and "unknown API key" in result.output


def test_a_goal_the_api_refuses_exits_2_as_victor_run_does(env, tmp_path) -> None:
    variables, _ = env
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"steps": [{"skill": "noop", "items": []}]}))
    for follow in ([], ["--follow"]):
        result = CliRunner().invoke(app, ["submit", str(empty), *follow], env=variables)
        assert result.exit_code == 2, result.output
        assert "422" in result.output and "nothing to do" in result.output

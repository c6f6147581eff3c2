"""A10: a poison task (kills its own process) among good ones: dead-lettered after K
deliveries, the good ones complete, no hot loop; the DLQ lists and replays it."""

from __future__ import annotations

import json
import time

import pytest
from typer.testing import CliRunner

from orchestrator.cli import app as cli
from orchestrator.harness.audit import audit
from tests.conftest import settings_env
from tests.reliability.conftest import items, size

pytestmark = [pytest.mark.redis, pytest.mark.integration]


def _a10(scenario_factory, worker_factory, good: int, name: str) -> None:
    scenario = scenario_factory(max_deliveries=3)
    worker_factory(scenario.settings, concurrency=2)
    worker_factory(scenario.settings, concurrency=2)
    work = [*items("a10", good // 2), {"key": "poison", "poison": True}, *items("a10b", good // 2)]
    handle = scenario.submit(work)
    (job,) = scenario.wait(timeout_s=120)
    assert (job.status, job.failed_items) == ("partial", 1)  # the poison, dead-lettered
    poison_runs = scenario.executions()
    time.sleep(2)  # no hot loop: nothing runs the poison again once it is dead-lettered
    assert scenario.executions() == poison_runs
    dead = scenario.ledger.dead_letters()
    assert [entry["items"] for entry in dead] == [[{"key": "poison", "poison": True}]]
    assert dead[0]["deliveries"] == 3 and dead[0]["job_id"] == handle.job_id
    outcome = scenario.ledger.get_result(handle.job_id, dead[0]["task_id"])
    assert outcome[0]["type"] == "DeadLetteredError"
    result = audit(
        name,
        scenario.oracle,
        scenario.submitted,
        failed_by_policy={"poison"},
        extra={"good": good, "max_deliveries": 3},
    )
    result.check(max_dup_exec=2)  # the poison ran max_deliveries times, nothing else twice
    poison = [
        line
        for line in scenario.oracle.read_text().splitlines()
        if '"poison"' in line and '"kind":"start"' in line
    ]
    assert len(poison) == 3


def test_a10_poison_task_is_dead_lettered(scenario_factory, worker_factory) -> None:
    _a10(scenario_factory, worker_factory, size(200, 1000), "A10")


@pytest.mark.soak
def test_a10_full_size(scenario_factory, worker_factory) -> None:
    _a10(scenario_factory, worker_factory, size(1000, 1000, "VICTOR_SOAK_A10_GOOD"), "A10-full")


def test_dlq_list_and_replay_run_a_dead_letter_to_completion(
    scenario_factory, worker_factory, monkeypatch
) -> None:
    """A task dead-lettered without running is listed, replayed, and then completes."""
    scenario = scenario_factory(max_deliveries=1)
    handle = scenario.submit([{"key": "replayed"}])
    (task_id,) = handle.task_ids
    # Two deliveries already counted (as by two killed workers): the next one dead-letters.
    scenario.ledger.begin_task(task_id, handle.job_id)
    worker = worker_factory(scenario.settings, concurrency=1)
    (job,) = scenario.wait(timeout_s=30)
    assert scenario.ledger.get_result(job.job_id, task_id)[0]["type"] == "DeadLetteredError"
    assert scenario.executions() == 0
    for name, value in settings_env(scenario.settings).items():
        monkeypatch.setenv(name, value)
    runner = CliRunner()
    listed = runner.invoke(cli, ["dlq", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    assert [entry["task_id"] for entry in json.loads(listed.output)] == [task_id]
    missing = runner.invoke(cli, ["dlq", "replay", "no-such-task"])
    assert missing.exit_code == 1 and "no dead letter" in missing.output
    replayed = runner.invoke(cli, ["dlq", "replay", task_id])
    assert replayed.exit_code == 0, replayed.output
    scenario.wait_for(
        lambda: scenario.ledger.get_job(job.job_id).status == "succeeded", 30, "the replay"
    )
    assert scenario.ledger.get_result(job.job_id, task_id) == [{"ok": True, "value": "replayed"}]
    assert scenario.ledger.dead_letters() == []
    assert json.loads(runner.invoke(cli, ["dlq", "list", "--json"]).output) == []
    assert worker.process is not None and worker.process.poll() is None

"""A2: ``kill -9`` a busy pool child: the task re-runs within 5 s, lost 0.

The control run (``task_reject_on_worker_lost=False``) shows the loss, so the test can see one.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest

from orchestrator.harness.audit import AuditResult, audit
from tests.reliability.conftest import Scenario, size

pytestmark = [pytest.mark.redis, pytest.mark.integration]


def _kill_busy_child(scenario: Scenario, jobs: int, ms: int) -> tuple[dict[str, Any], float]:
    for index in range(jobs):
        scenario.submit([{"key": f"a2-{index}", "ms": ms}])
    # Kill once a few tasks have finished, so the baseline throughput is known.
    scenario.wait_for(
        lambda: scenario.executions() >= 5 and bool(scenario.running()), 60, "busy pool children"
    )
    victim = scenario.running()[0]
    os.kill(victim["pid"], signal.SIGKILL)
    return victim, time.time()


def _run(scenario_factory, worker_factory, jobs: int, name: str) -> AuditResult:
    scenario = scenario_factory()
    worker_factory(scenario.settings, concurrency=2)
    # kombu requeues a rejected message at the back of the queue: the re-run waits for the
    # backlog ahead of it, so the backlog here stays small (about 2 s of work).
    victim, fault_at = _kill_busy_child(scenario, jobs, ms=200)
    jobs_done = scenario.wait(timeout_s=90)
    assert all(job.status == "succeeded" for job in jobs_done)
    result = audit(
        name,
        scenario.oracle,
        scenario.submitted,
        fault_at=fault_at,
        extra={"victim": victim["task_key"]},
    )
    result.check(max_dup_exec=2)  # the killed execution (and at most one more in flight)
    assert result.requeue_s is not None and result.requeue_s < 5, result
    return result


def test_a2_killed_pool_child_reruns(scenario_factory, worker_factory) -> None:
    _run(scenario_factory, worker_factory, size(24, 24), "A2")


def test_a2_control_without_reject_on_worker_lost_loses_the_task(
    scenario_factory, worker_factory
) -> None:
    scenario = scenario_factory()
    worker_factory(scenario.settings, concurrency=2, app="tests.reliability.control_app")
    victim, fault_at = _kill_busy_child(scenario, 20, ms=300)
    others = [h for h in scenario.handles if h.job_id != victim["task_key"]]
    # Every other job finishes; the victim's never does (no reconciler runs here).
    victim_job = next(
        h
        for h, key in zip(scenario.handles, scenario.submitted, strict=True)
        if key == victim["task_key"]
    )
    scenario.wait(timeout_s=60, handles=[h for h in others if h is not victim_job])
    time.sleep(2)
    assert scenario.ledger.get_job(victim_job.job_id).status == "running"
    result = audit(
        "A2-control",
        scenario.oracle,
        scenario.submitted,
        fault_at=fault_at,
        extra={"victim": victim["task_key"]},
        write=True,
    )
    assert result.lost == 1, result

"""A1: single-task jobs, no faults: lost 0, unexpected 0, dup 0."""

from __future__ import annotations

import pytest

from orchestrator.harness.audit import audit
from tests.reliability.conftest import size

pytestmark = [pytest.mark.redis, pytest.mark.integration]


def _a1(scenario_factory, worker_factory, count: int, name: str) -> None:
    scenario = scenario_factory()
    worker_factory(scenario.settings, concurrency=2)
    worker_factory(scenario.settings, concurrency=2)
    for index in range(count):
        scenario.submit([{"key": f"a1-{index}"}])
    jobs = scenario.wait(timeout_s=120)
    assert all(job.status == "succeeded" for job in jobs)
    result = audit(name, scenario.oracle, scenario.submitted, extra={"jobs": count})
    result.check(max_dup_exec=0)
    assert result.completed == count


def test_a1_single_task_jobs_without_faults(scenario_factory, worker_factory) -> None:
    _a1(scenario_factory, worker_factory, size(300, 1000), "A1")


@pytest.mark.soak
def test_a1_full_size(scenario_factory, worker_factory) -> None:
    _a1(scenario_factory, worker_factory, size(1000, 1000, "VICTOR_SOAK_A1_JOBS"), "A1-full")

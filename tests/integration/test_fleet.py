"""Real worker processes on a real Redis: chords across the fleet, shared analysis."""

from __future__ import annotations

from collections import Counter

import pytest

from orchestrator.core.dispatcher import dispatch_plan, wait_job
from orchestrator.core.plan import GoalSpec, ReduceSpec, StepSpec
from orchestrator.core.planner import plan_goal
from orchestrator.core.session import Session

pytestmark = [pytest.mark.redis, pytest.mark.integration]


def test_chord_of_1000_tasks_runs_on_both_workers(redis_settings, worker_factory) -> None:
    settings = redis_settings(chunk_size=1)
    first = worker_factory(settings, concurrency=2)
    second = worker_factory(settings, concurrency=2)
    goal = GoalSpec(
        name="noop fan-out",
        steps=[StepSpec(skill="noop", items=[{"value": index} for index in range(1000)])],
        reduce=ReduceSpec(skill="report"),
    )
    with Session(settings) as session:
        plan = plan_goal(goal, settings, session.app.victor.registry)
        assert len(plan.chunks()) == 1000
        handle = dispatch_plan(session.app, plan)
        assert handle.fan_in == "chord"
        job = wait_job(handle, timeout_s=240)
        events = session.app.victor.ledger.events(job.job_id, 0, 2000)
    assert job.status == "succeeded", job.error
    assert job.done_tasks == 1000
    assert job.result["totals"]["items"] == 1000
    assert len({event.task_id for event in events}) == 1000
    ran_by = Counter(event.worker for event in events)
    assert set(ran_by) == {first.hostname, second.hostname}, ran_by
    assert min(ran_by.values()) >= 100, ran_by


def test_two_workers_share_a_2000_item_analysis(redis_settings, worker_factory, tmp_path) -> None:
    for index in range(2000):
        (tmp_path / f"m{index}.py").write_text(
            f"def f{index}(x):\n    return x if x else {index}\n"
        )
    settings = redis_settings(allowed_roots=[tmp_path], chunk_size=20)
    worker_factory(settings, concurrency=2)
    worker_factory(settings, concurrency=2)
    goal = GoalSpec(
        steps=[StepSpec(skill="analyze_code", paths=[str(tmp_path)])],
        reduce=ReduceSpec(skill="report"),
    )
    with Session(settings) as session:
        plan = plan_goal(goal, settings, session.app.victor.registry)
        job = wait_job(dispatch_plan(session.app, plan), timeout_s=240)
        events = session.app.victor.ledger.events(job.job_id)
    assert job.status == "succeeded", job.error
    totals = job.result["totals"]
    assert totals["files"] == 2000
    assert totals["functions"] == 2000
    assert len({event.worker for event in events}) == 2

"""On a worker, every cache a skill touches is keyed by the job's tenant, not the default."""

from __future__ import annotations

import pytest
import redis

from orchestrator.core.dispatcher import dispatch_plan, wait_job
from orchestrator.core.plan import GoalSpec, StepSpec
from orchestrator.core.planner import plan_goal
from orchestrator.core.session import Session

pytestmark = [pytest.mark.redis, pytest.mark.integration]


def test_tool_selection_entries_made_on_a_worker_belong_to_the_jobs_tenant(
    redis_settings, worker_factory
) -> None:
    settings = redis_settings(parallel_threshold=1)  # never inline: the worker must run it
    worker = worker_factory(settings, concurrency=1)
    goal = GoalSpec(steps=[StepSpec(skill="select_tools", items=[{"query": "find a pattern"}])])
    with Session(settings) as session:
        plan = plan_goal(goal, settings, session.app.victor.registry)
        job = wait_job(dispatch_plan(session.app, plan, tenant="alpha"), timeout_s=60)
        (event,) = session.app.victor.ledger.events(job.job_id)
    assert job.status == "succeeded"
    assert event.worker == worker.hostname
    client = redis.Redis.from_url(settings.redis_url)
    keys = [key.decode() for key in client.scan_iter(match=f"{settings.key_prefix}:*:cache:*")]
    client.close()
    selection = [key for key in keys if ":cache:tool_selection:" in key]
    assert selection, keys
    assert all(key.startswith(f"{settings.key_prefix}:alpha:cache:") for key in selection), keys

"""Where a job ends on the fleet: its episode is recorded there, and its delivery counts go."""

from __future__ import annotations

import time

import pytest
import redis

from orchestrator.core.dispatcher import dispatch_plan, release
from orchestrator.core.plan import GoalSpec, ReduceSpec, StepSpec
from orchestrator.core.planner import plan_goal
from orchestrator.core.session import Session
from workers.core.keys import Keys
from workers.maintenance.episodes import memories_for

pytestmark = [pytest.mark.redis, pytest.mark.integration]


def _episode_ids(settings) -> set[str]:
    episodic, _ = memories_for(settings)
    return {str(episode["job_id"]) for episode in episodic.episodes()}


@pytest.mark.parametrize("with_reduce", [False, True], ids=["group", "chord"])
def test_a_job_nobody_waits_on_is_still_remembered(
    redis_settings, worker_factory, with_reduce: bool
) -> None:
    settings = redis_settings(chunk_size=2)
    worker_factory(settings, concurrency=2)
    goal = GoalSpec(
        steps=[StepSpec(skill="noop", items=[{"value": index} for index in range(6)])],
        reduce=ReduceSpec(skill="report") if with_reduce else None,
    )
    with Session(settings) as session:
        handle = dispatch_plan(session.app, plan_goal(goal, settings, session.app.victor.registry))
        release(handle)  # submit and walk away, as an API client does
        deadline = time.monotonic() + 30
        while handle.job_id not in _episode_ids(settings) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert handle.job_id in _episode_ids(settings)
        assert session.app.victor.ledger.get_job(handle.job_id).status == "succeeded"
    client = redis.Redis.from_url(settings.redis_url)
    deliveries = client.hkeys(Keys(settings.key_prefix).ledger_deliveries())
    client.close()
    assert not [key for key in deliveries if key.decode().startswith(handle.job_id)]

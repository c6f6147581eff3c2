"""D1: drain pre-loaded no-op tasks; tasks/s beside raw Celery on the same Redis and worker
flags; lost 0. Default suite: 2,000 tasks; ``make soak``: 20,000 (VICTOR_SOAK_D1_TASKS)."""

from __future__ import annotations

import time

import pytest
import redis

from orchestrator.harness.audit import AuditResult
from tests.reliability.conftest import size
from tests.reliability.raw_app import make_app
from workers.core.keys import Keys

pytestmark = [pytest.mark.redis, pytest.mark.integration]


def _drain_s(client: redis.Redis, broker_prefix: str, start, timeout_s: float) -> float:
    """Start the worker, then time from its readiness until queue and unacked are empty."""
    worker = start()
    began = time.monotonic()
    while time.monotonic() - began < timeout_s:
        if (
            client.llen(f"{broker_prefix}victor") == 0
            and client.hlen(f"{broker_prefix}unacked") == 0
        ):
            return time.monotonic() - began
        time.sleep(0.02)
    raise AssertionError(f"not drained in {timeout_s} s:\n{worker.log()}")


def _d1(scenario_factory, worker_factory, key_prefix: str, n: int, name: str) -> None:
    scenario = scenario_factory(chunk_size=1)
    settings = scenario.settings
    client = redis.Redis.from_url(settings.redis_url or "")
    from orchestrator.core.dispatcher import dispatch_plan
    from orchestrator.core.plan import GoalSpec, StepSpec
    from orchestrator.core.planner import plan_goal

    goal = GoalSpec(
        name="d1", steps=[StepSpec(skill="noop", items=[{"value": i} for i in range(n)])]
    )
    plan = plan_goal(goal, settings, scenario.app.victor.registry)
    handle = dispatch_plan(scenario.app, plan)
    ours_s = _drain_s(
        client,
        Keys(settings.key_prefix).broker_prefix,
        lambda: worker_factory(settings, concurrency=2),
        timeout_s=n / 20 + 60,
    )
    job = scenario.ledger.get_job(handle.job_id)
    assert job.done_tasks == n and job.status == "succeeded"

    # Raw Celery: same Redis, same worker flags, its own key prefix.
    from orchestrator.harness import WorkerProcess
    from tests.conftest import settings_env

    raw_prefix = f"{key_prefix}raw"
    client_app = make_app(settings.redis_url or "", raw_prefix)
    with client_app.producer_or_acquire() as producer:
        for index in range(n):
            client_app.send_task("raw.noop", (index,), producer=producer)
    client_app.close()
    env = {**settings_env(settings), "VICTOR_KEY_PREFIX": raw_prefix}
    raw_workers: list[WorkerProcess] = []

    def start_raw() -> WorkerProcess:
        worker = WorkerProcess(env, concurrency=2, app="tests.reliability.raw_app")
        raw_workers.append(worker)
        return worker.start()

    try:
        raw_s = _drain_s(client, f"{raw_prefix}:q:", start_raw, timeout_s=n / 20 + 60)
    finally:
        for worker in raw_workers:
            worker.kill()
        for key in client.scan_iter(match=f"{raw_prefix}*", count=1000):
            client.delete(key)
    ours, raw = n / ours_s, n / raw_s
    AuditResult(
        scenario=name,
        accepted=n,
        completed=job.done_tasks,
        lost=n - job.done_tasks,
        unexpected=0,
        dup_exec=0,
        dup_effect=0,
        recovery_s=None,
        executions=job.done_tasks,
        extra={
            "ours_tasks_per_s": round(ours, 1),
            "raw_celery_tasks_per_s": round(raw, 1),
            "ratio": round(ours / raw, 3),
            "ours_s": round(ours_s, 3),
            "raw_s": round(raw_s, 3),
            "workers": "1 x prefork -c 2",
            "tasks": n,
        },
    ).write()


def test_d1_drain_preloaded_noops(scenario_factory, worker_factory, key_prefix) -> None:
    _d1(scenario_factory, worker_factory, key_prefix, size(2000, 20000), "D1")


@pytest.mark.soak
def test_d1_full_size(scenario_factory, worker_factory, key_prefix) -> None:
    _d1(
        scenario_factory,
        worker_factory,
        key_prefix,
        size(20000, 20000, "VICTOR_SOAK_D1_TASKS"),
        "D1-full",
    )

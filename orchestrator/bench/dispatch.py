"""dispatch: no-op tasks/s through the orchestrator vs raw Celery, and a big fan-out's publish rate.

End to end: the same worker and Redis serve raw ``group(...).apply_async()`` + ``get()`` and our
``dispatch_plan`` + ``wait_job`` (ledger records, one message per item, and chunked), rounds
alternating. Fan-out: publish rate of N tasks with nothing consuming, Celery's naive group
against our dispatcher (ledger first, then chunked messages).
"""

from __future__ import annotations

import time
from typing import Any

from celery import group

from orchestrator.bench.environment import bench_redis
from orchestrator.bench.stats import summary
from orchestrator.core.dispatcher import dispatch_plan, release, wait_job
from orchestrator.core.plan import GoalSpec, StepSpec
from orchestrator.core.planner import plan_goal
from orchestrator.core.session import Session
from workers.runtime import runtime_of

SIZES = {"tiny": (100, 300, 1), "default": (1000, 10_000, 3), "full": (3000, 10_000, 5)}


def _noop_goal(count: int, chunk_size: int) -> GoalSpec:
    return GoalSpec(
        name="bench noop",
        steps=[StepSpec(skill="noop", items=[{"value": index} for index in range(count)])],
        chunk_size=chunk_size,
    )


def _ours(session: Session, count: int, chunk_size: int) -> float:
    registry = runtime_of(session.app).registry
    plan = plan_goal(_noop_goal(count, chunk_size), session.settings, registry)
    started = time.perf_counter()
    job = wait_job(dispatch_plan(session.app, plan), timeout_s=600)
    elapsed = time.perf_counter() - started
    if job.status != "succeeded" or job.done_tasks != job.total_tasks:
        raise RuntimeError(f"bench job ended {job.status}: {job.error}")
    return count / elapsed


def _raw(session: Session, count: int) -> float:
    app = session.app
    started = time.perf_counter()
    result = group(
        app.signature("victor.skill.noop", kwargs={"value": index}) for index in range(count)
    ).apply_async()
    values = result.get(timeout=600, disable_sync_subtasks=False)
    elapsed = time.perf_counter() - started
    if len(values) != count:
        raise RuntimeError("raw Celery lost results")
    result.forget()
    return count / elapsed


def _publish_ours(session: Session, count: int, chunk_size: int) -> float:
    registry = runtime_of(session.app).registry
    plan = plan_goal(_noop_goal(count, chunk_size), session.settings, registry)
    started = time.perf_counter()
    handle = dispatch_plan(session.app, plan)
    elapsed = time.perf_counter() - started
    release(handle)
    return count / elapsed


def _publish_raw(session: Session, count: int) -> float:
    app = session.app
    signatures = [
        app.signature("victor.skill.noop", kwargs={"value": index}) for index in range(count)
    ]
    started = time.perf_counter()
    result = group(signatures).apply_async()
    elapsed = time.perf_counter() - started
    del result
    return count / elapsed


def run(size: str) -> dict[str, Any]:
    count, fan_out, rounds = SIZES[size]
    raw: list[float] = []
    ours_one: list[float] = []
    ours_chunked: list[float] = []
    with bench_redis() as env:
        settings = env.settings()
        env.worker(concurrency=2)
        with Session(settings) as session:
            _raw(session, min(count, 100))  # warm both paths, unmeasured
            _ours(session, min(count, 100), 1)
            for _ in range(rounds):
                raw.append(_raw(session, count))
                ours_one.append(_ours(session, count, 1))
                ours_chunked.append(_ours(session, count, settings.chunk_size))
        # Fan-out: a prefix no worker consumes, so only publishing is timed.
        idle = env.settings(key_prefix=f"{env.prefix}idle")
        with Session(idle) as session:
            publish_raw = _publish_raw(session, fan_out)
            publish_ours = _publish_ours(session, fan_out, idle.chunk_size)
            publish_ours_one = _publish_ours(session, min(fan_out, 2000), 1)
    raw_s, one_s, chunked_s = summary(raw), summary(ours_one), summary(ours_chunked)
    return {
        "unit": "tasks/s",
        "ratio": one_s["median"] / raw_s["median"],
        "ratio_chunked": chunked_s["median"] / raw_s["median"],
        "ours": {"one_message_per_item": one_s, "chunked": chunked_s},
        "peer": {"celery_group": raw_s},
        "fan_out": {
            "tasks": fan_out,
            "ours_chunked_tasks_per_s": publish_ours,
            "ours_one_per_item_tasks_per_s": publish_ours_one,
            "celery_group_tasks_per_s": publish_raw,
            "ratio": publish_ours / publish_raw,
            "ratio_one_per_item": publish_ours_one / publish_raw,
        },
        "tasks": count,
        "rounds": rounds,
        "chunk_size": settings.chunk_size,
        "target": "end to end >= 0.9 of raw Celery; fan-out publish >= 10x Celery's group",
    }

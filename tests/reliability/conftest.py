"""Fixtures for the fault scenarios: short delivery timeouts, an oracle file, job helpers."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from orchestrator.core.dispatcher import JobHandle, dispatch_plan, release
from orchestrator.core.plan import GoalSpec, ReduceSpec, StepSpec
from orchestrator.core.planner import plan_goal
from tests.orchestrator.api.conftest import live_api  # noqa: F401 - API scenarios' servers
from workers.celery_app.factory import create_app
from workers.core.settings import Settings
from workers.ledger import TERMINAL, JobRecord

SOAK = bool(os.environ.get("VICTOR_SOAK"))

# Recovery in seconds, not the default hour: time limit < visibility < stale-after.
FAULT_TIMEOUTS: dict[str, Any] = {
    "task_time_limit_s": 4,
    "task_soft_time_limit_s": 3,
    "visibility_timeout_s": 6,
    "reconciler_stale_after_s": 10,
    "unacked_restore_interval_s": 1,
    "chunk_size": 1,
    "parallel_threshold": 1,
}


def size(reduced: int, full: int, env: str | None = None) -> int:
    """The scenario size: reduced in the default suite, full (or ``$env``) under soak."""
    if env and os.environ.get(env):
        return int(os.environ[env])
    return full if SOAK else reduced


@dataclass
class Scenario:
    """One scenario's app (client side), oracle file and submitted task keys."""

    app: Celery
    settings: Settings
    oracle: Path
    submitted: list[str] = field(default_factory=list)
    handles: list[JobHandle] = field(default_factory=list)

    @property
    def ledger(self) -> Any:
        return self.app.victor.ledger  # type: ignore[attr-defined]

    def submit(
        self,
        items: list[dict[str, Any]],
        reduce: dict[str, Any] | None = None,
        name: str = "effects",
    ) -> JobHandle:
        """Dispatch one job of ``effect`` items (optionally with an ``effect`` reduce)."""
        goal = GoalSpec(
            name=name,
            steps=[StepSpec(skill="effect", items=items)],
            reduce=None if reduce is None else ReduceSpec(skill="effect", params=reduce),
        )
        plan = plan_goal(goal, self.settings, self.app.victor.registry)  # type: ignore[attr-defined]
        handle = dispatch_plan(self.app, plan)
        self.submitted.extend(item["key"] for item in items)
        if reduce is not None:
            self.submitted.append(reduce["key"])
        self.handles.append(handle)
        return handle

    def wait(self, timeout_s: float, handles: list[JobHandle] | None = None) -> list[JobRecord]:
        """Wait until every job is terminal (polling the ledger); fail with the stragglers."""
        handles = self.handles if handles is None else handles
        deadline = time.monotonic() + timeout_s
        pending = {handle.job_id: handle for handle in handles}
        done: dict[str, JobRecord] = {}
        while pending and time.monotonic() < deadline:
            for job_id in list(pending):
                job = self.ledger.get_job(job_id)
                if job.status in TERMINAL:
                    done[job_id] = job
                    release(pending.pop(job_id))
            if pending:
                time.sleep(0.1)
        if pending:
            stuck = [self.ledger.get_job(job_id) for job_id in list(pending)[:3]]
            detail = ", ".join(
                f"{j.job_id} {j.status} {j.done_tasks}/{j.total_tasks}" for j in stuck
            )
            raise AssertionError(f"{len(pending)} job(s) unfinished after {timeout_s} s: {detail}")
        return [done[handle.job_id] for handle in handles]

    def executions(self) -> int:
        if not self.oracle.exists():
            return 0
        return sum(1 for line in self.oracle.read_text().splitlines() if '"kind":"start"' in line)

    def running(self) -> list[dict[str, Any]]:
        """Executions started but not ended (from the oracle)."""
        import json

        starts: dict[tuple[str, int, float], dict[str, Any]] = {}
        if self.oracle.exists():
            for line in self.oracle.read_text().splitlines():
                record = json.loads(line)
                ident = (record["task_key"], record["pid"], record["start"])
                if record["kind"] == "start":
                    starts[ident] = record
                else:
                    starts.pop(ident, None)
        return list(starts.values())

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float, what: str) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            if predicate():
                return time.monotonic() - started
            time.sleep(0.02)
        raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


@pytest.fixture
def scenario_factory(
    redis_settings: Callable[..., Settings], tmp_path: Path
) -> Iterator[Callable[..., Scenario]]:
    """Build a Scenario on the test Redis (or the given ``redis_url``) with fault timeouts."""
    apps: list[Celery] = []

    def build(**overrides: Any) -> Scenario:
        oracle = tmp_path / f"oracle-{len(apps)}.jsonl"
        settings = redis_settings(**{**FAULT_TIMEOUTS, "audit_path": oracle, **overrides})
        app = create_app(settings)
        apps.append(app)
        return Scenario(app=app, settings=settings, oracle=oracle)

    yield build
    for app in apps:
        app.close()


def items(prefix: str, count: int, **extra: Any) -> list[dict[str, Any]]:
    return [{"key": f"{prefix}-{index}", **extra} for index in range(count)]

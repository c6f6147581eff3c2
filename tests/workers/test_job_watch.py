"""A follower wakes when the ledger changes (a result, a status), not at its next poll."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from orchestrator.core.dispatcher import dispatch_plan, wait_job
from orchestrator.core.plan import GoalSpec, ReduceSpec, StepSpec
from orchestrator.core.planner import plan_goal
from orchestrator.core.session import Session
from orchestrator.harness.redis_server import free_port
from workers.core.keys import Keys
from workers.core.redis_client import redis_client
from workers.core.settings import Settings
from workers.ledger import JobRecord, RedisLedger
from workers.ledger.redis_ledger import RedisJobWatch

LONG_POLL_S = 60.0  # a follower that only polled would sleep this long


@pytest.fixture
def ledger(redis_url: str, key_prefix: str) -> Iterator[RedisLedger]:
    ledger = RedisLedger(redis_url, Keys(key_prefix))
    now = time.time()
    job = JobRecord("j1", "default", "watched", "running", now, now, total_tasks=2)
    ledger.create_job(job, {"j1.0": {"skill": "noop"}, "j1.1": {"skill": "noop"}}, ttl_s=600)
    yield ledger


def _after(delay_s: float, action: Callable[[], object]) -> threading.Thread:
    thread = threading.Thread(target=lambda: (time.sleep(delay_s), action()), daemon=True)
    thread.start()
    return thread


def _waited(watch: RedisJobWatch, timeout_s: float = LONG_POLL_S) -> float:
    started = time.monotonic()
    watch.wait(timeout_s)
    return time.monotonic() - started


@pytest.mark.redis
def test_a_watch_wakes_on_a_recorded_result_and_on_a_new_status(ledger: RedisLedger) -> None:
    watch = ledger.watch("j1")
    try:
        watch.wait(0.2)  # the subscription's confirmation
        _after(0.3, lambda: ledger.record_result("j1", "j1.0", [{"ok": True, "value": 1}]))
        assert _waited(watch) < 10
        _after(0.3, lambda: ledger.set_status("j1", "failed", error="stopped by the test"))
        assert _waited(watch) < 10
        # Nothing changes: the watch times out as a poll would.
        assert 0.2 <= _waited(watch, 0.3) < 10
    finally:
        watch.close()


@pytest.mark.redis
def test_another_jobs_changes_do_not_wake_the_watch(ledger: RedisLedger) -> None:
    watch = ledger.watch("j2")
    try:
        watch.wait(0.2)
        _after(0.1, lambda: ledger.record_result("j1", "j1.0", [{"ok": True, "value": 1}]))
        assert _waited(watch, 1.0) >= 0.9
    finally:
        watch.close()


def test_a_watch_on_a_redis_that_does_not_answer_sleeps_out_its_timeouts() -> None:
    client = redis_client(f"redis://127.0.0.1:{free_port()}/0")
    watch = RedisJobWatch(client, "nowhere:changes")
    assert 0.2 <= _waited(watch, 0.25) < 5  # no error: the follower's own reads report Redis
    watch.close()


@pytest.mark.redis
@pytest.mark.integration
def test_a_follower_with_a_long_poll_returns_as_soon_as_the_job_ends(
    redis_settings: Callable[..., Settings], worker_factory: Callable[..., object]
) -> None:
    settings = redis_settings()
    worker_factory(settings, concurrency=1)
    goal = GoalSpec(
        steps=[StepSpec(skill="noop", items=[{"value": index} for index in range(4)])],
        reduce=ReduceSpec(skill="report"),
    )
    with Session(settings) as session:
        plan = plan_goal(goal, settings, session.app.victor.registry)
        started = time.monotonic()
        job = wait_job(dispatch_plan(session.app, plan), timeout_s=120, poll_s=LONG_POLL_S)
        elapsed = time.monotonic() - started
    assert job.status == "succeeded", job.error
    assert elapsed < LONG_POLL_S / 2, elapsed  # woken by the job's end, not by the poll

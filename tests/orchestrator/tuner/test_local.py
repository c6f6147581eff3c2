"""The embedded worker is tuned in place: its resizable threads pool grows under I/O-bound work."""

from __future__ import annotations

from collections.abc import Callable

from orchestrator.core.dispatcher import dispatch_plan, wait_job
from orchestrator.core.plan import GoalSpec, StepSpec
from orchestrator.core.planner import plan_goal
from orchestrator.core.session import Session
from workers.core.settings import Settings


def _sleeps(settings: Settings, session: Session, count: int) -> str:
    goal = GoalSpec(steps=[StepSpec(skill="sleep", items=[{"ms": 50}] * count)])
    plan = plan_goal(goal, settings, session.app.victor.registry)
    return wait_job(dispatch_plan(session.app, plan), timeout_s=120).status


def test_the_embedded_pool_grows_while_throughput_rises(
    embedded_settings: Callable[..., Settings],
) -> None:
    settings = embedded_settings(
        worker_concurrency=1,
        tuner_interval_s=1.0,
        metrics_flush_interval_s=0.5,
        parallel_threshold=1,
        chunk_size=1,
    )
    with Session(settings) as session:
        assert session.tuner is not None and session.worker.pool.num_processes == 1
        assert _sleeps(settings, session, 300) == "succeeded"
        size = session.worker.pool.num_processes
        journal = session.tuner.journal
    # Read the journal once the tuner thread has finished its tick: a resize it applied at the
    # end of the job is journalled in the same tick, just after the pool changed.
    decisions = journal.decisions()
    grown = [d for d in decisions if d["action"] == "grow"]
    reasons = [d["reason"] for d in decisions]
    assert size > 1, reasons
    assert grown and all(d["applied"] == "applied" for d in grown), reasons
    assert "did" in grown[-1]["reason"]  # every decision says why, from what it measured


def test_with_the_tuner_off_the_embedded_worker_keeps_celerys_threads_pool(
    embedded_settings: Callable[..., Settings],
) -> None:
    settings = embedded_settings(tuner_enabled=False, worker_concurrency=2)
    with Session(settings) as session:
        assert session.tuner is None
        assert type(session.worker.pool).__module__ == "celery.concurrency.thread"
        assert _sleeps(settings, session, 4) == "succeeded"

"""Embedded mode end to end: a real in-process worker on the memory transport, no Redis."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.core.dispatcher import dispatch_plan, wait_job
from orchestrator.core.plan import GoalSpec, ReduceSpec, StepSpec
from orchestrator.core.planner import analyze_goal, plan_goal
from orchestrator.core.session import Session
from tasks.analyze import analyze_text
from workers.core.errors import GoalInputError
from workers.core.settings import Mode, Settings
from workers.ledger import JobRecord
from workers.runtime import runtime_of

NO_BROKER = {"redis_url": None, "broker_url": None, "result_backend_url": None, "cache_url": None}


@pytest.fixture
def session_for() -> Iterator[Callable[..., Session]]:
    """Start embedded sessions; each is closed afterwards."""
    sessions: list[Session] = []

    def start(**values: Any) -> Session:
        settings = Settings(**{**NO_BROKER, **values})
        assert settings.mode is Mode.EMBEDDED
        session = Session(settings).start()
        sessions.append(session)
        return session

    yield start
    for session in sessions:
        session.close()


def run(session: Session, goal: GoalSpec) -> tuple[JobRecord, Any]:
    registry = session.app.victor.registry  # type: ignore[attr-defined]
    plan = plan_goal(goal, session.settings, registry)
    handle = dispatch_plan(session.app, plan)
    job = wait_job(handle, timeout_s=60)
    return job, handle


def write_tree(root: Path, count: int) -> None:
    for index in range(count):
        package = root / f"pkg{index % 3}"
        package.mkdir(parents=True, exist_ok=True)
        (package / f"m{index}.py").write_text(
            f'"""Module {index}."""\n\n\n'
            f"def f{index}(x):\n"
            f"    # TODO: check {index}\n"
            f"    if x and x > {index}:\n"
            f"        return [y for y in range(x) if y]\n"
            f"    return None\n"
        )
    (root / "notes.md").write_text("# Notes\n\nFIXME: later\n")


def test_analyze_runs_on_the_embedded_worker(
    session_for: Callable[..., Session], tmp_path: Path
) -> None:
    write_tree(tmp_path, 24)
    session = session_for(allowed_roots=[tmp_path], chunk_size=5)
    assert session.embedded
    job, handle = run(session, analyze_goal(str(tmp_path), top=3))
    assert job.status == "succeeded", job.error
    assert handle.fan_in == "collect"
    assert job.total_tasks == 5  # 25 files in chunks of 5

    expected = [
        analyze_text(path.read_text(), path.name, str(path))
        for path in sorted(tmp_path.rglob("*"))
        if path.is_file()
    ]
    totals = job.result["totals"]
    assert totals["files"] == 25
    for key in ("lines", "code", "comment", "docstring", "blank", "todos"):
        assert totals[key] == sum(item[key] for item in expected), key
    assert totals["functions"] == 24
    assert job.result["languages"] == {"python": 24, "markdown": 1}
    assert len(job.result["largest_files"]) == 3
    assert job.result["most_complex"][0]["complexity"] == 5
    assert job.result["error_count"] == 0

    events = session.app.victor.ledger.events(job.job_id)  # type: ignore[attr-defined]
    assert len(events) == 5
    assert all(event.worker for event in events)  # recorded by the worker's tasks


def test_group_without_reduce_records_every_outcome(
    session_for: Callable[..., Session],
) -> None:
    session = session_for(chunk_size=7)
    goal = GoalSpec(steps=[StepSpec(skill="noop", items=[{"value": i} for i in range(50)])])
    job, handle = run(session, goal)
    assert job.status == "succeeded", job.error
    assert handle.fan_in == "none"
    assert (job.done_tasks, job.total_tasks) == (8, 8)
    assert job.result is None
    results = session.app.victor.ledger.results(job.job_id)  # type: ignore[attr-defined]
    values = sorted(o["value"] for outcomes in results.values() for o in outcomes)
    assert values == list(range(50))


def test_failed_items_are_reported_not_lost(
    session_for: Callable[..., Session], tmp_path: Path
) -> None:
    (tmp_path / "ok.py").write_text("x = 1\n")
    session = session_for(allowed_roots=[tmp_path])
    goal = GoalSpec(
        steps=[StepSpec(skill="read_file", items=[{"path": "ok.py"}, {"path": "missing.py"}])],
        reduce=ReduceSpec(skill="report"),
    )
    job, _ = run(session, goal)
    assert job.status == "partial", job.error
    assert (job.failed_items, job.error) == (1, "1 of 2 items failed")
    assert job.result["error_count"] == 1
    assert job.result["totals"]["items"] == 1


def test_a_job_whose_every_item_failed_is_failed_not_succeeded(
    session_for: Callable[..., Session], tmp_path: Path
) -> None:
    session = session_for(allowed_roots=[tmp_path])
    goal = GoalSpec(steps=[StepSpec(skill="read_file", items=[{"path": "gone.py"}] * 3)])
    job, _ = run(session, goal)
    assert (job.status, job.failed_items, job.error) == ("failed", 3, "3 of 3 items failed")


def test_an_item_outside_the_roots_is_refused_before_anything_runs(
    session_for: Callable[..., Session], tmp_path: Path
) -> None:
    session = session_for(allowed_roots=[tmp_path])
    goal = GoalSpec(steps=[StepSpec(skill="read_file", items=[{"path": "../escape"}])])
    with pytest.raises(GoalInputError, match="outside the allowed roots"):
        run(session, goal)
    assert runtime_of(session.app).ledger.list_jobs(session.settings.tenant) == []


def test_sequential_chain_runs_the_second_step_after_the_first(
    session_for: Callable[..., Session],
) -> None:
    session = session_for(chunk_size=1, max_parallel_workers=4)
    goal = GoalSpec(
        strategy="sequential",
        steps=[
            # Slow first step: in parallel, the quick second step would finish first.
            StepSpec(skill="sleep", items=[{"ms": 150, "value": i} for i in range(3)]),
            StepSpec(skill="noop", items=[{"value": "after"}]),
        ],
    )
    job, _ = run(session, goal)
    assert job.status == "succeeded", job.error
    events = session.app.victor.ledger.events(job.job_id)  # type: ignore[attr-defined]
    order = [event.task_id.rsplit(".", 1)[1] for event in events]
    assert sorted(order[:3]) == ["0", "1", "2"]
    assert order[3] == "3"


def test_sequential_chain_with_a_reduce(session_for: Callable[..., Session]) -> None:
    session = session_for(chunk_size=2)
    goal = GoalSpec(
        strategy="sequential",
        steps=[
            StepSpec(skill="noop", items=[{"value": i} for i in range(4)]),
            StepSpec(skill="noop", items=[{"value": i} for i in range(4, 6)]),
        ],
        reduce=ReduceSpec(skill="report"),
    )
    job, _ = run(session, goal)
    assert job.status == "succeeded", job.error
    assert job.result["totals"]["items"] == 6


def test_parallel_group_overlaps_its_tasks(session_for: Callable[..., Session]) -> None:
    session = session_for(chunk_size=1, max_parallel_workers=4)
    goal = GoalSpec(steps=[StepSpec(skill="sleep", items=[{"ms": 300}] * 4)])
    started = time.monotonic()
    job, _ = run(session, goal)
    elapsed = time.monotonic() - started
    assert job.status == "succeeded", job.error
    assert elapsed < 1.0, f"4 x 300 ms on 4 threads took {elapsed:.2f} s"


def test_below_the_threshold_the_job_runs_inline(session_for: Callable[..., Session]) -> None:
    session = session_for(parallel_threshold=10)
    goal = GoalSpec(steps=[StepSpec(skill="noop", items=[{"value": 1}, {"value": 2}])])
    job, handle = run(session, goal)
    assert job.status == "succeeded"
    assert handle.plan.inline
    assert handle.result is None
    events = session.app.victor.ledger.events(job.job_id)  # type: ignore[attr-defined]
    assert [event.worker for event in events] == [""]  # recorded by the caller, not a worker


def test_two_sessions_one_after_the_other(session_for: Callable[..., Session]) -> None:
    for _ in range(2):
        session = session_for()
        goal = GoalSpec(steps=[StepSpec(skill="noop", items=[{"value": i} for i in range(5)])])
        job, _ = run(session, goal)
        assert job.status == "succeeded", job.error
        session.close()


def test_failures_group_by_reason_whatever_the_path() -> None:
    from orchestrator.core.outcomes import summarize_failures

    outcomes = [
        [
            {
                "ok": False,
                "error": f"path '{name}' is not a regular file",
                "type": "E",
                "item": name,
            }
            for name in ("a.txt", "b/c.txt", "d.txt")
        ]
    ]
    [group] = summarize_failures(outcomes, limit=2)["by_reason"]
    assert (group["reason"], group["count"]) == ("path '...' is not a regular file", 3)
    assert [example["item"] for example in group["examples"]] == ["a.txt", "b/c.txt"]

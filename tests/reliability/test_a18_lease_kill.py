"""A18: ``kill -9`` a pool child that holds a single-flight cache lock.

The killed child was computing an ``analyze_code`` result through the response cache, so its
lock stays behind. The redelivered copy must not wait that lock out: the lock is a lease its
owner renewed, so it lapses within ``cache_single_flight_lease_s`` of the death, and the copy
computes. The control sets the lease to the old fixed lock TTL (30 s): the copy then waits
about 30 s, which is what lost an item under a 15 s soft time limit.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from orchestrator.core.dispatcher import dispatch_plan
from orchestrator.core.plan import GoalSpec, StepSpec
from orchestrator.core.planner import plan_goal
from orchestrator.harness import WorkerProcess
from orchestrator.harness.audit import AuditResult
from tasks.analyze import analyze_text
from tests.reliability.conftest import Scenario

pytestmark = [pytest.mark.redis, pytest.mark.integration]

# Delivery times long enough for the default 30 s single-flight timeout (it must stay under
# the soft time limit); a killed pool child's message comes back at once anyway.
LIMITS: dict[str, Any] = {
    "task_time_limit_s": 65,
    "task_soft_time_limit_s": 60,
    "visibility_timeout_s": 80,
    "reconciler_stale_after_s": 120,
}
FUNCTIONS = 5000  # analyze_code takes about 3 s over this file on an idle box


def _sources(directory: Path) -> tuple[Path, list[Path]]:
    big = directory / "big.py"
    body = (
        "    if x > y and x < 2 * y:\n        for k in range(x):\n"
        "            if k % 3 == 0 or k % 5 == 0:\n                y += k\n    return x + y\n\n"
    )
    big.write_text("".join(f"def f{index}(x, y):\n{body}" for index in range(FUNCTIONS)))
    small = [directory / f"small{index}.py" for index in range(3)]
    for index, path in enumerate(small):
        path.write_text(f"def g{index}(x):\n    return x\n")
    return big, small


def _kill_the_lock_holder(
    scenario_factory: Callable[..., Scenario],
    worker_factory: Callable[..., WorkerProcess],
    tmp_path: Path,
    **overrides: Any,
) -> dict[str, Any]:
    scenario: Scenario = scenario_factory(**LIMITS, allowed_roots=[tmp_path], **overrides)
    settings = scenario.settings
    worker = worker_factory(settings, concurrency=1)
    big, small = _sources(tmp_path)
    paths = [big, *small]
    goal = GoalSpec(
        name="a18",
        steps=[StepSpec(skill="analyze_code", items=[{"path": str(path)} for path in paths])],
    )
    handle = dispatch_plan(scenario.app, plan_goal(goal, settings, scenario.app.victor.registry))
    scenario.handles.append(handle)
    store = redis.Redis.from_url(settings.redis_url or "")
    try:
        pattern = f"{settings.key_prefix}:*:cache:response:analyze_code:*:lock"
        locks: list[bytes] = []

        def lock_taken() -> bool:
            locks[:] = list(store.scan_iter(match=pattern))
            return bool(locks)

        scenario.wait_for(lock_taken, 60, "the analyze_code lock")
        time.sleep(1.2)  # mid-computation (and, at the default 3 s lease, renewed once)
        (child,) = worker.children()
        worker.kill_child(child.pid)
        killed_at = time.monotonic()
        orphaned = bool(store.exists(locks[0]))  # what the redelivered copy finds
        lapsed_s = scenario.wait_for(lambda: not store.exists(locks[0]), 60, "the lock to lapse")
        (job,) = scenario.wait(timeout_s=90)
        recovery_s = time.monotonic() - killed_at
    finally:
        store.close()
    outcomes = [
        item for outcome in scenario.ledger.results(job.job_id).values() for item in outcome
    ]
    return {
        "settings": settings,
        "job": job,
        "outcomes": outcomes,
        "paths": paths,
        "orphaned": orphaned,
        "lapsed_s": lapsed_s,
        "recovery_s": recovery_s,
    }


def _report(name: str, run: dict[str, Any], compute_s: float | None = None) -> AuditResult:
    settings, outcomes = run["settings"], run["outcomes"]
    done = {Path(item["value"]["path"]).name for item in outcomes if item.get("ok")}
    submitted = {path.name for path in run["paths"]}
    result = AuditResult(
        scenario=name,
        accepted=len(submitted),
        completed=len(done),
        lost=len(submitted - done),
        unexpected=len(done - submitted),
        dup_exec=1,  # the killed execution
        dup_effect=0,
        recovery_s=round(run["recovery_s"], 2),
        executions=len(outcomes) + 1,
        extra={
            "lease_s": settings.cache_single_flight_lease_s,
            "single_flight_timeout_s": settings.cache_single_flight_timeout_s,
            "soft_time_limit_s": settings.task_soft_time_limit_s,
            "lock_orphaned_by_the_kill": run["orphaned"],
            "lock_lapsed_after_kill_s": round(run["lapsed_s"], 2),
            "analyze_big_file_here_s": None if compute_s is None else round(compute_s, 2),
        },
    )
    result.write()
    return result


def test_a18_redelivered_copy_does_not_wait_out_a_dead_childs_lock(
    scenario_factory: Callable[..., Scenario],
    worker_factory: Callable[..., WorkerProcess],
    tmp_path: Path,
) -> None:
    run = _kill_the_lock_holder(scenario_factory, worker_factory, tmp_path)
    started = time.perf_counter()  # the copy's own work, timed on this box as loaded now
    analyze_text((tmp_path / "big.py").read_text(), "big.py", "big.py")
    compute_s = time.perf_counter() - started
    result = _report("A18", run, compute_s)
    settings = run["settings"]
    assert (settings.cache_single_flight_lease_s, settings.cache_single_flight_timeout_s) == (
        3.0,
        30.0,
    )  # the defaults
    assert run["orphaned"], "the kill did not leave the child's lock behind"
    assert run["job"].status == "succeeded", run["job"]
    assert (result.lost, result.unexpected, result.completed) == (0, 0, 4), result
    (big,) = [
        item["value"] for item in run["outcomes"] if item["value"]["path"].endswith("/big.py")
    ]
    assert len(big["functions"]) == FUNCTIONS
    assert run["lapsed_s"] < 3.0 + 0.5, result  # within the lease of the death
    # Then the copy computes: the lease, its own work and a few seconds (requeue, a new pool
    # child, the small items); never the 30 s timeout (the control's lock alone lasts ~29 s).
    assert run["recovery_s"] < min(3.0 + 2 * compute_s + 4.0, 30.0), result


@pytest.mark.soak  # the control waits out a 30 s lock by design: make soak runs it
def test_a18_control_with_the_old_30_s_lock_waits_it_out(
    scenario_factory: Callable[..., Scenario],
    worker_factory: Callable[..., WorkerProcess],
    tmp_path: Path,
) -> None:
    run = _kill_the_lock_holder(
        scenario_factory,
        worker_factory,
        tmp_path,
        cache_single_flight_lease_s=30,
        cache_single_flight_timeout_s=31,
    )
    result = _report("A18-control", run)
    assert run["orphaned"] and run["job"].status == "succeeded", result
    assert result.lost == 0, result
    assert run["lapsed_s"] > 20 and run["recovery_s"] > 20, result

"""A6: SIGTERM (warm shutdown) with reserved tasks: the reserved tasks are restored at once,
not after the visibility timeout; the active one finishes and is not run twice."""

from __future__ import annotations

import json
import threading
import time

import pytest

from orchestrator.harness.audit import audit
from tests.reliability.conftest import FAULT_TIMEOUTS

pytestmark = [pytest.mark.redis, pytest.mark.integration]


def test_a6_warm_shutdown_restores_reserved_tasks(scenario_factory, worker_factory) -> None:
    # A long visibility timeout: a task back within seconds was restored, not swept.
    timeouts = {**FAULT_TIMEOUTS, "visibility_timeout_s": 60, "reconciler_stale_after_s": 90}
    scenario = scenario_factory(**timeouts, worker_prefetch_multiplier=4)
    first = worker_factory(scenario.settings, concurrency=1)
    for index in range(6):
        scenario.submit([{"key": f"a6-{index}", "ms": 1500}])
    scenario.wait_for(lambda: scenario.executions() >= 1, 30, "the first task")
    time.sleep(0.3)  # the worker has reserved its prefetch by now
    stopper = threading.Thread(target=first.terminate, kwargs={"timeout_s": 20})
    stopper.start()
    fault_at = time.time()
    second = worker_factory(scenario.settings, concurrency=4)
    scenario.wait(timeout_s=40)
    stopper.join(30)
    records = [json.loads(line) for line in scenario.oracle.read_text().splitlines()]
    starts = {r["task_key"]: r for r in records if r["kind"] == "start"}
    on_second = [r for r in starts.values() if r["worker"] == second.hostname]
    assert len(on_second) >= 4, starts
    latest = max(r["start"] for r in on_second) - fault_at
    assert latest < 10, f"reserved tasks restarted {latest:.1f} s after SIGTERM"
    result = audit(
        "A6",
        scenario.oracle,
        scenario.submitted,
        fault_at=fault_at,
        extra={"restarted_within_s": round(latest, 3), "moved": len(on_second)},
    )
    result.check(max_dup_exec=0)
    assert first.process is not None and first.process.returncode == 0

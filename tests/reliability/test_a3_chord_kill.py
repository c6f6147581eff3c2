"""A3/A4: ``kill -9`` a whole worker mid-chord (3 workers): the reduce runs exactly once with
every distinct result; lost 0, dup_effect 0; done within visibility timeout + 30 s.

A4 adds header tasks with non-deterministic values and re-dispatches every unfinished header
task mid-run (what a reconciler pass does), so each has two copies in flight: the reduce must
neither fire early nor twice.
"""

from __future__ import annotations

import time

import pytest

from orchestrator.harness.audit import audit
from tests.reliability.conftest import items, size
from workers.maintenance.reconciler import reconcile_once

pytestmark = [pytest.mark.redis, pytest.mark.integration]


def _chord_kill(
    scenario_factory,
    worker_factory,
    n: int,
    name: str,
    *,
    nondeterministic: bool = False,
    duplicate: bool = False,
) -> None:
    scenario = scenario_factory()
    workers = [worker_factory(scenario.settings, concurrency=2) for _ in range(3)]
    reduce_key = f"{name}-reduce"
    handle = scenario.submit(
        items(name, n, ms=20, nondeterministic=nondeterministic), reduce={"key": reduce_key}
    )
    assert handle.fan_in == "chord"
    scenario.wait_for(lambda: scenario.executions() >= n // 3, 120, "a third of the header")
    busy = {record["worker"] for record in scenario.running()}
    victim = next((w for w in workers if w.hostname in busy), workers[0])
    victim.kill()
    fault_at = time.time()
    redispatched = 0
    if duplicate:
        redispatched = len(reconcile_once(scenario.app, stale_after_s=0).redispatched)
        assert redispatched > 0
    started = time.monotonic()
    (job,) = scenario.wait(timeout_s=scenario.settings.visibility_timeout_s + 30 + n / 20)
    finished_s = time.monotonic() - started
    assert job.status == "succeeded", job.error
    assert job.result == {"key": reduce_key, "results": n}
    reduce_runs = [
        line
        for line in scenario.oracle.read_text().splitlines()
        if f'"{reduce_key}"' in line and '"kind":"start"' in line
    ]
    assert len(reduce_runs) == 1, reduce_runs
    assert job.done_tasks == n
    result = audit(
        name,
        scenario.oracle,
        scenario.submitted,
        fault_at=fault_at,
        extra={
            "header": n,
            "workers": 3,
            "finished_after_fault_s": round(finished_s, 3),
            "redispatched": redispatched,
            "reduce_runs": len(reduce_runs),
        },
    )
    result.check(max_dup_exec=n // 10 if duplicate else 4)
    assert finished_s < scenario.settings.visibility_timeout_s + 30


def test_a3_worker_killed_mid_chord(scenario_factory, worker_factory) -> None:
    _chord_kill(scenario_factory, worker_factory, size(300, 1000), "A3")


def test_a4_nondeterministic_header_with_duplicates(scenario_factory, worker_factory) -> None:
    _chord_kill(
        scenario_factory,
        worker_factory,
        size(300, 1000),
        "A4",
        nondeterministic=True,
        duplicate=True,
    )


@pytest.mark.soak
def test_a3_full_size(scenario_factory, worker_factory) -> None:
    _chord_kill(scenario_factory, worker_factory, size(1000, 1000, "VICTOR_SOAK_A3_N"), "A3-full")


@pytest.mark.soak
def test_a4_full_size(scenario_factory, worker_factory) -> None:
    _chord_kill(
        scenario_factory,
        worker_factory,
        size(1000, 1000, "VICTOR_SOAK_A3_N"),
        "A4-full",
        nondeterministic=True,
        duplicate=True,
    )

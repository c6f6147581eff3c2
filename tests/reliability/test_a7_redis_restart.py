"""A7 (worker part): restart Redis (AOF on) mid-run: workers reconnect within 10 s without a
restart and every accepted job completes. (The API's 503-during-outage part is pending.)"""

from __future__ import annotations

import time

import pytest

from orchestrator.harness import RedisServer
from orchestrator.harness.audit import assert_reconnected, audit
from workers.core.errors import BackendUnavailableError

pytestmark = [pytest.mark.redis, pytest.mark.integration]


def test_a7_workers_reconnect_after_a_redis_restart(scenario_factory, worker_factory) -> None:
    with RedisServer(appendonly=True) as server:
        scenario = scenario_factory(redis_url=server.url)
        workers = [worker_factory(scenario.settings, concurrency=2) for _ in range(2)]
        pids = [w.pid for w in workers]
        for index in range(60):
            scenario.submit([{"key": f"a7-{index}", "ms": 100}])
        scenario.wait_for(lambda: scenario.executions() >= 10, 30, "work in progress")
        server.restart(down_s=1.0)
        back_at = time.time()
        refused = 0
        for index in range(60, 100):
            while True:
                try:
                    scenario.submit([{"key": f"a7-{index}", "ms": 100}])
                    break
                except BackendUnavailableError:
                    refused += 1  # not accepted, so not counted; try again
                    time.sleep(0.2)
        scenario.wait(timeout_s=90)
        reconnect_s = assert_reconnected(scenario.oracle, workers, pids, back_at)
        result = audit(
            "A7",
            scenario.oracle,
            scenario.submitted,
            fault_at=back_at,
            extra={"reconnect_s": reconnect_s, "refused_submissions": refused},
        )
        result.check(max_dup_exec=8)

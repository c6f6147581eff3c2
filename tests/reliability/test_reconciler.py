"""The reconciler: a task whose message vanished is re-dispatched by the beat task and
finishes; a chord whose body never fired gets its reduce from the ledger, exactly once."""

from __future__ import annotations

import pytest
import redis

from orchestrator.harness.audit import audit
from tests.reliability.conftest import items
from workers.core.keys import Keys
from workers.maintenance.reconciler import reconcile_once

pytestmark = [pytest.mark.redis, pytest.mark.integration]


def _drop_queue(settings) -> int:
    client = redis.Redis.from_url(settings.redis_url)
    queue = f"{Keys(settings.key_prefix).broker_prefix}victor"
    dropped = client.llen(queue)
    client.delete(queue)
    return dropped


def test_beat_reconciler_redispatches_lost_messages(
    scenario_factory, worker_factory, tmp_path
) -> None:
    scenario = scenario_factory()
    # Published while no worker runs, then lost with the broker's queue (a message loss).
    scenario.submit(items("rc", 5), reduce={"key": "rc-reduce"})
    assert _drop_queue(scenario.settings) == 5
    worker_factory(
        scenario.settings, concurrency=2, extra_args=["-B", "-s", str(tmp_path / "beat")]
    )
    (job,) = scenario.wait(timeout_s=scenario.settings.reconciler_stale_after_s * 3 + 20)
    assert job.status == "succeeded"
    assert job.result == {"key": "rc-reduce", "results": 5}
    result = audit("reconciler-beat", scenario.oracle, scenario.submitted)
    result.check(max_dup_exec=0)
    assert scenario.ledger.stale_tasks(0) == []


def test_reconcile_once_fires_a_missing_reduce_once(scenario_factory, worker_factory) -> None:
    scenario = scenario_factory()
    handle = scenario.submit(items("rr", 4), reduce={"key": "rr-reduce"})
    worker_factory(scenario.settings, concurrency=2)
    (job,) = scenario.wait(timeout_s=30)
    assert job.status == "succeeded"
    # Forget that the reduce ran: the ledger says all 4 results are in, the job is running.
    scenario.ledger.replay_task(handle.job_id, "not-a-task")
    first = reconcile_once(scenario.app, stale_after_s=0)
    assert first.reduces == [f"{handle.job_id}.reduce"]
    scenario.wait_for(
        lambda: scenario.ledger.get_job(handle.job_id).status == "succeeded", 30, "the reduce"
    )
    second = reconcile_once(scenario.app, stale_after_s=0)
    assert second.reduces == [] and second.redispatched == []

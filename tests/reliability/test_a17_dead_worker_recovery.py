"""A17: at default delivery settings (visibility timeout 600 s), ``kill -9`` a worker's main
process mid-job: the tasks it held are back in the queue within seconds of its heartbeat
lapsing, the job (a chord) completes within 30 s of the kill, every item exactly once, and a
copy that kombu restores later finds its recorded outcome (no second effect).

Also: a killed pool child at default settings re-runs promptly (A2's default variant), and the
recovery step as a table: the claim is atomic, a recorded task is left alone, a live worker is
left alone, a message the broker lost is re-published from the ledger.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psutil
import pytest
import redis

from orchestrator.harness import WorkerProcess
from orchestrator.harness.audit import audit
from tests.reliability.conftest import Scenario, items
from workers.core.keys import Keys
from workers.core.settings import Settings
from workers.maintenance.holdings import claim_holdings, held_value
from workers.maintenance.reconciler import recover_dead_workers

pytestmark = [pytest.mark.redis, pytest.mark.integration]

# The defaults, whatever the fault scenarios' fixture shortens.
DEFAULT_DELIVERY: dict[str, Any] = {
    name: Settings.model_fields[name].default
    for name in (
        "task_time_limit_s",
        "task_soft_time_limit_s",
        "visibility_timeout_s",
        "reconciler_stale_after_s",
        "unacked_restore_interval_s",
        "worker_heartbeat_interval_s",
        "worker_heartbeat_ttl_s",
    )
}


@contextmanager
def broker(scenario: Scenario) -> Iterator[tuple[Any, Any]]:
    """kombu's view of the broker: (channel, client with the broker key prefix)."""
    with scenario.app.connection_for_write() as connection:
        channel = connection.default_channel
        with channel.conn_or_acquire() as client:
            yield channel, client


def unacked_tags(scenario: Scenario) -> list[str]:
    with broker(scenario) as (channel, client):
        return [tag.decode() for tag in client.zrange(channel.qos.unacked_index_key, 0, -1)]


def restore_like_kombu(scenario: Scenario) -> int:
    """What kombu's sweep does once the visibility timeout has passed: restore every unacked
    message (run when the fleet is idle, so only a dead worker's are left)."""
    tags = unacked_tags(scenario)
    with broker(scenario) as (channel, client):
        for tag in tags:
            channel.qos.restore_by_tag(tag, client=client)
    return len(tags)


def queue_length(scenario: Scenario) -> int:
    with broker(scenario) as (_, client):
        return int(client.llen("victor"))


def kill_main_process(worker: WorkerProcess) -> tuple[float, list[int]]:
    """SIGKILL the worker's main process, then each of its pool children, by pid."""
    children = [child.pid for child in worker.children()]
    os.kill(worker.pid, signal.SIGKILL)
    killed_at = time.time()
    for pid in children:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert worker.process is not None
    worker.process.wait(10)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(alive(pid) for pid in children):
        time.sleep(0.02)
    return killed_at, children


def alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie waiting for its reaper does not)."""
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def test_a17_dead_workers_tasks_return_within_seconds(
    scenario_factory: Callable[..., Scenario], worker_factory: Callable[..., WorkerProcess]
) -> None:
    scenario = scenario_factory(**DEFAULT_DELIVERY)
    settings = scenario.settings
    assert settings.visibility_timeout_s == 600 and settings.worker_heartbeat_ttl_s == 6
    workers = [worker_factory(settings, concurrency=2) for _ in range(2)]
    n = 80
    reduce_key = "A17-reduce"
    handle = scenario.submit(items("A17", n, ms=150), reduce={"key": reduce_key})
    assert handle.fan_in == "chord"
    scenario.wait_for(
        lambda: (
            scenario.executions() >= n // 4
            and len({record["worker"] for record in scenario.running()}) == 2
        ),
        60,
        "both workers busy a quarter into the job",
    )
    busy = scenario.running()[0]["worker"]
    victim = next(worker for worker in workers if worker.hostname == busy)
    survivor = next(worker for worker in workers if worker is not victim)
    held = [r["task_key"] for r in scenario.running() if r["worker"] == victim.hostname]
    fault_at, children = kill_main_process(victim)
    assert not any(alive(pid) for pid in children), "a pool child survived"
    (job,) = scenario.wait(timeout_s=30)
    finished_s = time.time() - fault_at
    assert job.status == "succeeded", job.error
    assert job.result == {"key": reduce_key, "results": n}
    recovered = [line for line in survivor.log().splitlines() if "recovered" in line]
    assert recovered, f"no recovery by the survivor:\n{survivor.log()}"

    # Later, kombu restores whatever the dead worker left unacked: no copy runs a skill again.
    executions = scenario.executions()
    restored_late = restore_like_kombu(scenario)
    scenario.wait_for(
        lambda: queue_length(scenario) == 0 and not unacked_tags(scenario), 30, "the late copies"
    )
    time.sleep(0.5)
    assert scenario.executions() == executions
    reduce_runs = [
        line
        for line in scenario.oracle.read_text().splitlines()
        if f'"{reduce_key}"' in line and '"kind":"start"' in line
    ]
    assert len(reduce_runs) == 1, reduce_runs
    result = audit(
        "A17",
        scenario.oracle,
        scenario.submitted,
        fault_at=fault_at,
        extra={
            "tasks": n,
            "workers": 2,
            "visibility_timeout_s": settings.visibility_timeout_s,
            "heartbeat_ttl_s": settings.worker_heartbeat_ttl_s,
            "held_at_kill": held,
            "finished_after_fault_s": round(finished_s, 3),
            "restored_late_by_kombu": restored_late,
            "recovery_log": recovered[-1][-200:],
        },
    )
    result.check(max_dup_exec=4)
    assert finished_s < 30, result


def test_a17_killed_pool_child_reruns_at_default_settings(
    scenario_factory: Callable[..., Scenario], worker_factory: Callable[..., WorkerProcess]
) -> None:
    scenario = scenario_factory(**DEFAULT_DELIVERY)
    worker_factory(scenario.settings, concurrency=2)
    # A rejected message goes to the back of the queue: keep the backlog ahead of it small.
    for index in range(12):
        scenario.submit([{"key": f"a17c-{index}", "ms": 200}])
    scenario.wait_for(
        lambda: scenario.executions() >= 5 and bool(scenario.running()), 60, "busy pool children"
    )
    victim = scenario.running()[0]
    os.kill(victim["pid"], signal.SIGKILL)
    fault_at = time.time()
    jobs = scenario.wait(timeout_s=60)
    assert all(job.status == "succeeded" for job in jobs)
    result = audit(
        "A17-child",
        scenario.oracle,
        scenario.submitted,
        fault_at=fault_at,
        extra={"victim": victim["task_key"], "visibility_timeout_s": 600},
    )
    result.check(max_dup_exec=2)
    # billiard notices a killed child at once, or at its next maintain_pool tick (every 5 s):
    # the re-run ends within that tick and the task's own 0.2 s, not the 600 s visibility timeout.
    assert result.requeue_s is not None and result.requeue_s < 6.5, result


# --- the recovery step, as a table ------------------------------------------------------------


def hold(
    client: redis.Redis, keys: Keys, hostname: str, incarnation: str, held: dict[str, str]
) -> None:
    """Record a worker incarnation and its holdings the way its presence thread does."""
    client.hset(keys.worker_index(), incarnation, hostname)
    if held:
        client.hset(keys.worker_holdings(hostname, incarnation), mapping=held)  # type: ignore[arg-type]


def beat(client: redis.Redis, keys: Keys, hostname: str, incarnation: str) -> None:
    value = {"hostname": hostname, "pid": 1, "incarnation": incarnation, "roots": [], "at": 0}
    client.set(keys.worker_ready(hostname), json.dumps(value), ex=60)


def test_recovery_step_restores_only_what_dead_workers_held_open(
    scenario_factory: Callable[..., Scenario], worker_factory: Callable[..., WorkerProcess]
) -> None:
    scenario = scenario_factory(**DEFAULT_DELIVERY)
    settings = scenario.settings
    keys = Keys(settings.key_prefix)
    client = redis.Redis.from_url(settings.redis_url or "")
    handle = scenario.submit(items("rs", 5))
    job_id, task_ids = handle.job_id, handle.task_ids
    # Five messages received and not acked (as a worker holds them): tag by task id.
    tags: dict[str, str] = {}
    with broker(scenario) as (channel, _):
        channel.qos.restore_at_shutdown = False  # it "dies": its messages stay unacked
        for _ in task_ids:
            message = channel.basic_get("victor", no_ack=False)
            tags[message.headers["id"]] = message.delivery_tag
    assert queue_length(scenario) == 0 and len(unacked_tags(scenario)) == 5
    t_open, t_recorded, t_live, t_lost, t_reborn = task_ids
    scenario.ledger.record_result(job_id, t_recorded, [{"ok": True, "value": "rs-1"}])
    with broker(scenario) as (channel, broker_client):
        broker_client.hdel(channel.qos.unacked_key, tags[t_lost])  # lost with the broker
        broker_client.zrem(channel.qos.unacked_index_key, tags[t_lost])

    def entries(*task_ids: str) -> dict[str, str]:
        return {tags[task_id]: held_value(job_id, task_id) for task_id in task_ids}

    # (hostname, incarnation, heartbeat, held)
    table = [
        ("dead@h", "inc-dead", None, entries(t_open, t_recorded)),
        ("live@h", "inc-live", "inc-live", entries(t_live)),
        ("gone@h", "inc-gone", None, entries(t_lost)),
        ("reborn@h", "inc-old", "inc-new", entries(t_reborn)),  # restarted, same hostname
        ("idle@h", "inc-idle", None, {}),
    ]
    for hostname, incarnation, heartbeat, held in table:
        hold(client, keys, hostname, incarnation, held)
        if heartbeat:
            beat(client, keys, hostname, heartbeat)

    reports = []
    racers = [
        threading.Thread(target=lambda: reports.append(recover_dead_workers(scenario.app)))
        for _ in range(4)
    ]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join(30)
    recovered = [t for report in reports for t in report.restored + report.redispatched]
    assert sorted(recovered) == sorted([t_open, t_lost, t_reborn])  # each once, by one racer
    assert sorted(t for report in reports for t in report.restored) == sorted([t_open, t_reborn])
    assert [t for report in reports for t in report.redispatched] == [t_lost]  # from its spec
    assert [t for report in reports for t in report.recorded] == [t_recorded]
    assert sorted(unacked_tags(scenario)) == sorted([tags[t_recorded], tags[t_live]])
    assert queue_length(scenario) == 3
    assert client.hgetall(keys.worker_index()) == {b"inc-live": b"live@h"}
    assert client.exists(keys.worker_holdings("live@h", "inc-live"))
    # A claim is taken once: a second claimer of the same incarnation gets nothing.
    hold(client, keys, "dead@h", "inc-twice", entries(t_open))
    assert [task.task_id for task in claim_holdings(client, keys, "dead@h", "inc-twice") or []] == [
        t_open
    ]
    assert claim_holdings(client, keys, "dead@h", "inc-twice") == []
    assert claim_holdings(client, keys, "live@h", "inc-live") is None

    # The live holder dies too; later kombu restores the recorded task's message: its copy
    # returns the recorded outcome and runs nothing.
    client.delete(keys.worker_ready("live@h"))
    assert recover_dead_workers(scenario.app).restored == [t_live]
    assert restore_like_kombu(scenario) == 1
    worker_factory(settings, concurrency=2)
    (job,) = scenario.wait(timeout_s=30)
    assert job.status == "succeeded" and job.done_tasks == 5
    scenario.wait_for(lambda: not unacked_tags(scenario), 10, "every copy acked")
    runs = [json.loads(line) for line in scenario.oracle.read_text().splitlines()]
    started = sorted(run["task_key"] for run in runs if run["kind"] == "start")
    assert started == ["rs-0", "rs-2", "rs-3", "rs-4"]  # rs-1 was recorded: never run again
    client.close()

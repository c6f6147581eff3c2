"""The cache across processes: invalidation reaches every L1, single-flight, Redis outages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from orchestrator.core.dispatcher import dispatch_plan, wait_job
from orchestrator.core.plan import GoalSpec, StepSpec
from orchestrator.core.planner import plan_goal
from orchestrator.core.session import Session
from orchestrator.harness import RedisServer
from tests.conftest import ROOT, settings_env
from workers.cache import CacheManager, get_cache_stats, invalidate_cache
from workers.core.settings import Settings

pytestmark = [pytest.mark.redis]


class Child:
    """One ``tests.workers.cache_child`` process; stopped by pid."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.workers.cache_child", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={**os.environ, **env},
        )

    def read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line, f"child {self.process.pid} exited with {self.process.poll()}"
        return json.loads(line)  # type: ignore[no-any-return]

    def ask(self, **request: Any) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return self.read()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)


@pytest.fixture
def children() -> Iterator[Callable[..., Child]]:
    started: list[Child] = []

    def start(env: dict[str, str], *args: str) -> Child:
        child = Child(env, *args)
        started.append(child)
        return child

    yield start
    for child in started:
        child.stop()


def test_invalidation_in_one_process_empties_the_l1_of_another(
    redis_settings: Callable[..., Settings], children: Callable[..., Child]
) -> None:
    settings = redis_settings()
    env = settings_env(settings)
    first, second = children(env, "serve"), children(env, "serve")
    assert first.read()["ready"] and second.read()["ready"]
    for child in (first, second):
        child.ask(op="fill", skill="check_auth", material="a")
        child.ask(op="fill", skill="read_file", material="b")
    assert second.ask(op="peek", skill="check_auth", material="a")["in_l1"]
    assert first.ask(op="fill", skill="check_auth", material="a")["computed"] == 2  # a, b

    result = invalidate_cache("response", "*auth*", settings=settings)
    assert result["l2_removed"] == 1
    assert result["processes_acknowledged"] >= 2, result  # both children (and us) applied it

    assert not second.ask(op="peek", skill="check_auth", material="a")["in_l1"]
    assert second.ask(op="peek", skill="read_file", material="b")["in_l1"]
    assert first.ask(op="fill", skill="check_auth", material="a")["computed"] == 3


def test_single_flight_computes_once_across_processes(
    redis_settings: Callable[..., Settings], children: Callable[..., Child], redis_url: str
) -> None:
    settings = redis_settings()
    counter = f"{settings.key_prefix}:test:computations"
    start_at = time.time() + 3.0
    flock = [children(settings_env(settings), "flight", str(start_at), counter) for _ in range(4)]
    replies = [child.read() for child in flock]
    assert {json.dumps(reply["value"]) for reply in replies} == {'{"answer": 42}'}
    client = redis.Redis.from_url(redis_url)
    assert int(client.get(counter) or 0) == 1
    client.close()
    assert sum(reply["stats"]["computations"] for reply in replies) == 1
    assert sum(reply["stats"]["waits"] for reply in replies) == 3
    fleet = get_cache_stats(settings)
    assert fleet["scope"] == "fleet" and fleet["caches"]["response"]["computations"] == 1
    assert fleet["processes"] >= 4


def test_fleet_stats_sum_every_process(
    redis_settings: Callable[..., Settings], children: Callable[..., Child]
) -> None:
    settings = redis_settings()
    env = settings_env(settings)
    flock = [children(env, "serve") for _ in range(2)]
    for child in flock:
        assert child.read()["ready"]
        child.ask(op="fill", skill="s", material="x")
        child.ask(op="fill", skill="s", material="x")
        child.ask(op="stats")
    fleet = get_cache_stats(settings)
    response = fleet["caches"]["response"]
    assert fleet["processes"] >= 2
    assert (response["computations"], response["l2_hits"], response["l1_hits"]) == (1, 1, 2)
    assert response["current_size"] == 2


@pytest.mark.integration
def test_tasks_succeed_while_the_cache_redis_is_down_and_caching_recovers(
    redis_settings: Callable[..., Settings], worker_factory: Callable[..., Any], tmp_path: Path
) -> None:
    for index in range(6):
        (tmp_path / f"m{index}.py").write_text(f"def f{index}(x):\n    return x + {index}\n")
    cache_server = RedisServer().start()
    try:
        settings = redis_settings(
            cache_url=cache_server.url,
            allowed_roots=[tmp_path],
            parallel_threshold=1,
            chunk_size=2,
        )
        worker_factory(settings, concurrency=2)
        goal = GoalSpec(steps=[StepSpec(skill="analyze_code", paths=[str(tmp_path)])])

        def run_job() -> Any:
            with Session(settings) as session:
                plan = plan_goal(goal, settings, session.app.victor.registry)
                return wait_job(dispatch_plan(session.app, plan), timeout_s=60)

        cache_client = redis.Redis.from_url(cache_server.url)
        assert run_job().status == "succeeded"
        stored = list(cache_client.scan_iter(match=f"{settings.key_prefix}:*:cache:response:*"))
        assert len(stored) == 6

        cache_server.stop()
        for round_index in range(2):
            for path in tmp_path.glob("*.py"):  # edits: L1 misses, so L2 is tried and fails
                path.write_text(path.read_text() + f"\n# outage {round_index}\n")
            job = run_job()
            assert job.status == "succeeded", job.error
            assert job.done_tasks == job.total_tasks

        cache_server.start()
        for path in tmp_path.glob("*.py"):
            path.write_text(path.read_text() + "\n# edited\n")
        time.sleep(1.2)  # the back-off after the last error
        assert run_job().status == "succeeded"
        deadline = time.monotonic() + 10
        stored = []
        while time.monotonic() < deadline and len(stored) < 6:
            stored = list(cache_client.scan_iter(match=f"{settings.key_prefix}:*:cache:response:*"))
            time.sleep(0.2)
        assert len(stored) == 6  # the edited files were cached in L2 again
        deadline = time.monotonic() + 10
        fleet = get_cache_stats(settings)
        while time.monotonic() < deadline and (
            fleet["errors"] == 0 or fleet["caches"]["response"]["computations"] < 24
        ):
            time.sleep(0.2)  # workers publish their stats about once a second
            fleet = get_cache_stats(settings)
        assert fleet["errors"] >= 1 and fleet["l2"] == "up", json.dumps(fleet)
        assert fleet["caches"]["response"]["computations"] == 24  # 6 files x 4 versions
        assert fleet["caches"]["response"]["degraded"] >= 1
        cache_client.close()
    finally:
        cache_server.close()


def test_a_manager_recovers_when_redis_returns() -> None:
    server = RedisServer().start()
    try:
        settings = Settings(redis_url=server.url, key_prefix="vrecover")
        manager = CacheManager(settings).start()
        assert manager.l2 is not None
        manager.l2.retry_after_s = 0.2
        cache = manager.response
        cache.get_or_compute(cache.key("s", "1", 1), lambda: 1)
        server.stop()
        assert cache.get_or_compute(cache.key("s", "1", 2), lambda: 2) == 2
        assert manager.stats()["errors"] >= 1
        server.start()
        time.sleep(0.3)
        assert cache.get_or_compute(cache.key("s", "1", 3), lambda: 3) == 3
        client = redis.Redis.from_url(server.url)
        assert client.exists(cache.key("s", "1", 3)) == 1
        deadline = time.monotonic() + 5
        while manager._subscription is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert manager._subscription is not None  # the listener re-subscribed by itself
        client.close()
        manager.close()
    finally:
        server.close()


@pytest.mark.integration
def test_two_tenants_jobs_on_a_worker_do_not_share_response_entries(
    redis_settings: Callable[..., Settings],
    worker_factory: Callable[..., Any],
    tmp_path: Path,
    redis_url: str,
) -> None:
    for index in range(4):
        (tmp_path / f"m{index}.py").write_text(f"def f{index}(x):\n    return x + {index}\n")
    settings = redis_settings(allowed_roots=[tmp_path], parallel_threshold=1, chunk_size=2)
    worker_factory(settings, concurrency=2)
    goal = GoalSpec(steps=[StepSpec(skill="analyze_code", paths=[str(tmp_path)])])
    client = redis.Redis.from_url(redis_url)

    def stored(tenant: str) -> set[bytes]:
        pattern = f"{settings.key_prefix}:{tenant}:cache:response:*"
        return set(client.scan_iter(match=pattern))

    with Session(settings) as session:
        for tenant in ("alpha", "beta", "alpha"):
            plan = plan_goal(goal, settings, session.app.victor.registry)
            job = wait_job(dispatch_plan(session.app, plan, tenant=tenant), timeout_s=60)
            assert job.status == "succeeded", job.error
    alpha, beta = stored("alpha"), stored("beta")
    assert len(alpha) == len(beta) == 4 and not stored(settings.tenant)
    # Same files, same inputs: only the tenant part of the key differs.
    assert {key.split(b":", 2)[2] for key in alpha} == {key.split(b":", 2)[2] for key in beta}
    deadline = time.monotonic() + 10
    fleet = get_cache_stats(settings)
    # Each pool child publishes its own stats about once a second: wait for both children's.
    while time.monotonic() < deadline and (
        fleet["caches"]["response"]["hits"] < 4 or fleet["caches"]["response"]["computations"] < 8
    ):
        time.sleep(0.2)
        fleet = get_cache_stats(settings)
    response = fleet["caches"]["response"]
    assert (response["computations"], response["hits"]) == (8, 4), response  # alpha's rerun hit
    client.close()


def test_an_idle_process_keeps_its_figures_in_the_fleets_view(
    redis_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stats expire after a TTL; an idle process that once had figures re-publishes them."""
    from workers.cache import coherence
    from workers.cache import manager as manager_module

    monkeypatch.setattr(manager_module, "STATS_TTL_S", 2)
    monkeypatch.setattr(coherence, "STATS_REFRESH_S", 0.5)
    settings = redis_settings()
    manager = CacheManager(settings).start()
    try:
        cache = manager.response
        cache.get_or_compute(cache.key("s", "1", "x"), lambda: 1)
        time.sleep(4)  # twice the TTL with no activity at all
        mine = [
            json.loads(raw)
            for raw in manager.l2.values_matching(manager.keys.cache_stats_pattern())
        ]
        assert [report["process_id"] for report in mine] == [manager.process_id]
        assert mine[0]["caches"]["response"]["computations"] == 1
    finally:
        manager.close()


def test_a_process_that_never_used_the_cache_is_not_counted_in_the_fleet(
    redis_settings: Callable[..., Settings],
) -> None:
    """`victor cache stats` itself (a manager only read) must not show up in the next run."""
    settings = redis_settings()
    idle = CacheManager(settings).start()
    idle.close()
    cold = get_cache_stats(settings)
    assert cold["processes"] == 0
    # No process has figures yet: the bounds are this process's, not 0 (the guide compares
    # current_size with max_size).
    bound = settings.tool_selection_cache_size
    assert cold["caches"]["tool_selection"]["max_size"] == bound and cold["current_size"] == 0
    used = CacheManager(settings).start()
    used.response.get_or_compute(used.response.key("s", "1", "x"), lambda: 1)
    used.close()
    assert get_cache_stats(settings)["processes"] == 1

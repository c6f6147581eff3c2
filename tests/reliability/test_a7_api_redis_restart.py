"""A7 (API part): Redis (AOF on) restarts while clients POST jobs through a real API server.

During the outage every POST answers 503 within 2 s (never a hang, never a 202 the ledger does
not hold); afterwards every accepted job completes and the workers, never restarted, reconnect
within 10 s. Clients behave as the API asks: on 503 or 409 they retry the same body with the
same Idempotency-Key, so a job recorded just before a failed answer is not submitted twice.
A beat runs beside the workers (as in production) so the reconciler re-sends any recorded job
whose publish the outage interrupted.
"""

from __future__ import annotations

import threading
import time

import pytest

from orchestrator.harness import RedisServer
from orchestrator.harness.audit import assert_reconnected, audit
from tests.reliability.api_support import (
    API_OVERRIDES,
    Answer,
    effect_goal,
    latency_summary,
    post,
    status_counts,
    wait_jobs,
)
from tests.reliability.conftest import size

pytestmark = [pytest.mark.redis, pytest.mark.integration]


def _a7_api(scenario_factory, worker_factory, live_api, tmp_path, outage_s: float, name: str):
    with RedisServer(appendonly=True) as server:
        scenario = scenario_factory(redis_url=server.url, **API_OVERRIDES)
        workers = [
            worker_factory(scenario.settings, concurrency=2),
            worker_factory(
                scenario.settings, concurrency=2, extra_args=["-B", "-s", str(tmp_path / "beat")]
            ),
        ]
        pids = [worker.pid for worker in workers]
        api = live_api(scenario.settings)
        token = api.key(tenant="a7")
        answers: list[Answer] = []
        accepted: dict[str, str] = {}  # task key -> job id
        retry_s: list[float] = []
        lock = threading.Lock()
        stop = threading.Event()

        def client_loop(client_id: int) -> None:
            client = api.client(token, timeout=10)
            n = 0
            while not stop.is_set():
                key = f"a7api-{client_id}-{n}"
                n += 1
                goal = effect_goal([key], ms=20)
                headers = {"Idempotency-Key": key}
                first = time.monotonic()
                while time.monotonic() - first < 90:
                    answer = post(client, goal, headers=headers)
                    with lock:
                        answers.append(answer)
                    if answer.status == 202:
                        with lock:
                            accepted[key] = str(answer.job_id)
                            retry_s.append(time.monotonic() - first)
                        break
                    time.sleep(0.2)
                time.sleep(0.02)

        threads = [threading.Thread(target=client_loop, args=(i,), daemon=True) for i in range(4)]
        for thread in threads:
            thread.start()
        scenario.wait_for(lambda: scenario.executions() >= 20, 30, "work in progress")
        server.stop()
        down_at = time.time()
        time.sleep(outage_s)
        up_from = time.time()
        server.start()
        back_at = time.time()
        time.sleep(5)
        stop.set()
        for thread in threads:
            thread.join(120)
        assert not any(thread.is_alive() for thread in threads)
        # Inside the outage (request sent after the stop, answered before the restart began).
        during = [a for a in answers if a.started >= down_at and a.started + a.latency_s < up_from]
        assert during, "no request fell inside the outage"
        assert {a.status for a in during} == {503}, status_counts(during)
        assert max(a.latency_s for a in during) < 2.0, latency_summary(during)
        assert not [a for a in answers if a.status == 0], "a request failed without an answer"
        assert {a.status for a in answers} <= {202, 409, 503}, status_counts(answers)
        # Every 202 is a job the ledger holds (AOF kept it across the restart), and it finishes.
        statuses = wait_jobs(scenario.ledger, set(accepted.values()), timeout_s=120)
        assert set(statuses.values()) == {"succeeded"}, statuses
        reconnect_s = assert_reconnected(scenario.oracle, workers, pids, back_at)
        result = audit(
            name,
            scenario.oracle,
            list(accepted),
            fault_at=back_at,
            extra={
                "outage_s": round(up_from - down_at, 3),
                "requests": len(answers),
                "statuses": status_counts(answers),
                "during_outage": {**status_counts(during), **latency_summary(during)},
                "submit_latency": latency_summary(a for a in answers if a.status == 202),
                "max_retry_until_202_s": round(max(retry_s), 3),
                "reconnect_s": reconnect_s,
            },
        )
        result.check(max_dup_exec=10)
        return result


def test_a7_api_answers_503_fast_during_a_redis_restart(
    scenario_factory, worker_factory, live_api, tmp_path
) -> None:
    _a7_api(scenario_factory, worker_factory, live_api, tmp_path, size(3, 15), "A7-api")


@pytest.mark.soak
def test_a7_api_full_size(scenario_factory, worker_factory, live_api, tmp_path) -> None:
    outage = size(15, 15, "VICTOR_SOAK_A7_OUTAGE_S")
    _a7_api(scenario_factory, worker_factory, live_api, tmp_path, outage, "A7-api-full")


def test_a_channel_closed_after_its_transport_was_released_raises_a_connection_error() -> None:
    """The kombu guard (workers/celery_app/kombu_patches.py) that keeps a worker up in A7."""
    from types import SimpleNamespace

    from kombu.transport import redis as transport
    from redis.exceptions import ConnectionError as RedisConnectionError

    from workers.celery_app import kombu_patches

    kombu_patches.install()
    assert getattr(transport.Channel._connparams, "victor_guard", False)
    released = SimpleNamespace(connection=SimpleNamespace(client=None))
    with pytest.raises(RedisConnectionError, match="already released"):
        transport.Channel._connparams(released)

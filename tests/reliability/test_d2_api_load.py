"""D2: API load: concurrent clients POST single-task jobs to a real ``victor api`` process with
real workers behind it: fail ratio < 1%, zero 5xx, every accepted job completes; p95/p99
submit latency reported (audit-results/D2.json).

The server runs in its own process (as deployed), so the clients' threads do not share its GIL.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from orchestrator.api.keystore import KeyStore, parse_scopes
from orchestrator.harness import free_port
from orchestrator.harness.audit import audit
from tests.conftest import ROOT, settings_env
from tests.reliability.api_support import (
    API_OVERRIDES,
    Answer,
    Load,
    effect_goal,
    latency_summary,
    post,
    status_counts,
    wait_jobs,
)
from tests.reliability.conftest import size
from workers.core.keys import Keys
from workers.core.redis_client import redis_client
from workers.core.settings import Settings

pytestmark = [pytest.mark.redis, pytest.mark.integration]

VICTOR = str(Path(sys.executable).parent / "victor")


@pytest.fixture
def api_process() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def start_api(settings: Settings, started: list[subprocess.Popen[bytes]]) -> str:
    """``victor api`` on a free loopback port; returns its URL once /healthz answers."""
    port = free_port()
    env = {**os.environ, **settings_env(settings)}
    process = subprocess.Popen(
        [VICTOR, "api", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    started.append(process)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, process.stderr.read().decode()[-2000:]  # type: ignore[union-attr]
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return url
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "victor api did not answer in 60 s"
        time.sleep(0.2)


def _d2(scenario_factory, worker_factory, api_process, clients: int, seconds: float, name: str):
    scenario = scenario_factory(**API_OVERRIDES)
    settings = scenario.settings
    for _ in range(2):
        worker_factory(settings, concurrency=2)
    url = start_api(settings, api_process)
    store = KeyStore(Keys(settings.key_prefix), redis_client(settings.redis_url or ""), None)
    token = store.create("d2", parse_scopes("submit,read"), name="d2")
    local = threading.local()
    http: list[httpx.Client] = []
    lock = threading.Lock()

    def one(client_id: int, n: int) -> Answer:
        if not hasattr(local, "client"):
            local.client = httpx.Client(
                base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30
            )
            with lock:
                http.append(local.client)
        key = f"d2-{client_id}-{n}"
        return post(local.client, effect_goal([key]), tag=key)

    load = Load().start(clients, one)
    time.sleep(seconds)
    answers = load.stop()
    for client in http:
        client.close()
    accepted = [answer for answer in answers if answer.status == 202]
    failed = [answer for answer in answers if answer.status != 202]
    server_errors = [answer for answer in answers if answer.status >= 500]
    started = time.monotonic()
    statuses = wait_jobs(scenario.ledger, {str(a.job_id) for a in accepted}, timeout_s=240)
    drain_s = time.monotonic() - started
    assert set(statuses.values()) == {"succeeded"}
    submitted = [answer.tag for answer in accepted]
    result = audit(
        name,
        scenario.oracle,
        submitted,
        extra={
            "clients": clients,
            "seconds": seconds,
            "requests": len(answers),
            "statuses": status_counts(answers),
            "fail_ratio": round(len(failed) / max(1, len(answers)), 5),
            "server_errors": len(server_errors),
            "submits_per_s": round(len(accepted) / seconds, 1),
            "submit_latency": latency_summary(accepted),
            "drain_after_load_s": round(drain_s, 2),
        },
    )
    assert len(failed) / max(1, len(answers)) < 0.01, status_counts(answers)
    assert not server_errors, status_counts(answers)
    assert len(accepted) >= clients, "the load produced almost nothing"
    result.check(max_dup_exec=0)
    assert result.completed == len(accepted)
    return result


def test_d2_api_load(scenario_factory, worker_factory, api_process) -> None:
    _d2(scenario_factory, worker_factory, api_process, 50, size(10, 60), "D2")


@pytest.mark.soak
def test_d2_full_size(scenario_factory, worker_factory, api_process) -> None:
    seconds = size(60, 60, "VICTOR_SOAK_D2_SECONDS")
    _d2(scenario_factory, worker_factory, api_process, 50, seconds, "D2-full")

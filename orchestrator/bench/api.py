"""API submissions: jobs/s and p50/p99 latency at 50 concurrent clients against a real uvicorn.

Peer: raw Celery ``send_task`` of the same job (one ``victor.batch`` task of one noop item)
from the same number of threads, on the same Redis, in the same run. Ours does more per job:
authenticates the key, counts the rate, plans, records the job in the ledger, then publishes.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from orchestrator.bench.environment import BenchRedis, bench_redis
from orchestrator.bench.stats import percentile
from orchestrator.harness import free_port
from workers.celery_app.factory import create_app
from workers.core.names import BATCH_TASK

SIZES = {
    "tiny": {"jobs": 200, "clients": 20},
    "default": {"jobs": 2000, "clients": 50},
    "full": {"jobs": 10000, "clients": 50},
}
GOAL = {"name": "bench", "steps": [{"skill": "noop", "items": [{"value": 1}]}]}


@contextmanager
def api_process(env: BenchRedis, **settings: str) -> Iterator[tuple[str, str]]:
    """``victor api`` in a subprocess on a free loopback port; yields ``(url, api key)``."""
    from orchestrator.api.keystore import KeyStore, parse_scopes
    from workers.core.keys import Keys

    directory = Path(tempfile.mkdtemp(prefix="victor-bench-api-"))
    keys_file = directory / "keys.json"
    store = KeyStore(Keys(env.prefix), None, keys_file)
    key = store.create("bench", parse_scopes("submit,read"))
    port = free_port()
    variables = {
        **os.environ,
        **env.env(),
        "VICTOR_API_KEYS_FILE": str(keys_file),
        # A load generator, not a tenant: lift the per-key limits a shared fleet keeps on.
        "VICTOR_API_RATE_LIMIT": "10000000",
        "VICTOR_API_MAX_JOBS_IN_FLIGHT": "100000",
        "VICTOR_API_PROBE_SKILLS_ENABLED": "true",
        **settings,
    }
    command = [str(Path(sys.executable).parent / "victor"), "api", "--port", str(port)]
    process = subprocess.Popen(
        command,
        env=variables,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("victor api did not start")
            time.sleep(0.1)
        yield url, key
    finally:
        process.kill()
        process.wait(10)


def submit_all(url: str, key: str, jobs: int, clients: int) -> tuple[float, list[float], int]:
    """POST ``jobs`` jobs from ``clients`` threads; ``(elapsed s, latencies s, failures)``.

    Each thread keeps one HTTP/1.1 connection (the standard library's client: the load
    generator shares the machine with the server, so it should cost as little as it can).
    """
    local = threading.local()
    failures = 0
    lock = threading.Lock()
    host, port = url.removeprefix("http://").rsplit(":", 1)
    body = json.dumps(GOAL).encode()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def post(_: int) -> float:
        nonlocal failures
        connection = getattr(local, "connection", None)
        if connection is None:
            connection = local.connection = http.client.HTTPConnection(host, int(port), timeout=30)
        started = time.perf_counter()
        try:
            connection.request("POST", "/v1/jobs", body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            ok = response.status == 202
        except (OSError, http.client.HTTPException):
            connection.close()
            local.connection = None
            ok = False
        elapsed = time.perf_counter() - started
        if not ok:
            with lock:
                failures += 1
        return elapsed

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = list(pool.map(post, range(jobs)))
    return time.perf_counter() - started, latencies, failures


def send_all(env: BenchRedis, jobs: int, clients: int) -> tuple[float, list[float]]:
    """The peer: raw Celery send_task of the same task from ``clients`` threads."""
    app = create_app(env.settings())

    def send(index: int) -> float:
        started = time.perf_counter()
        app.send_task(
            BATCH_TASK, args=("noop", [{"value": 1}]), kwargs={"job_id": None}, ignore_result=True
        )
        return time.perf_counter() - started

    send(0)  # connect outside the measurement, as the API server has
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = list(pool.map(send, range(jobs)))
    return time.perf_counter() - started, latencies


def figures(elapsed: float, latencies: list[float], jobs: int) -> dict[str, Any]:
    return {
        "per_s": round(jobs / elapsed, 1),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
        "p95_ms": round(percentile(latencies, 0.95) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
    }


def run(size: str) -> dict[str, Any]:
    jobs, clients = SIZES[size]["jobs"], SIZES[size]["clients"]
    with bench_redis() as env, api_process(env) as (url, key):
        submit_all(url, key, min(100, jobs), clients)  # warm the server and its pools
        elapsed, latencies, failures = submit_all(url, key, jobs, clients)
        ours = figures(elapsed, latencies, jobs)
        peer_elapsed, peer_latencies = send_all(env, jobs, clients)
        peer = figures(peer_elapsed, peer_latencies, jobs)
    return {
        "ratio": round(ours["per_s"] / peer["per_s"], 3),
        "ours": ours["per_s"],
        "peer": peer["per_s"],
        "unit": "jobs submitted per second (ratio = ours / raw Celery send_task)",
        "clients": clients,
        "jobs": jobs,
        "failures": failures,
        "api": ours,
        "raw_celery_send_task": peer,
        "peer_is": "Celery send_task of the same victor.batch task, same thread count, no auth, "
        "no ledger record, no planning",
    }

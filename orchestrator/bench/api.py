"""API submissions: jobs/s and p50/p99 latency at 50 concurrent clients against a real uvicorn.

Peer: raw Celery ``send_task`` of the same job (one ``victor.batch`` task of one noop item)
from the same number of threads, on the same Redis, in the same run. Ours does more per job:
authenticates the key, counts the rate, plans, records the job in the ledger, then publishes.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
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
from orchestrator.bench.stats import percentile, summary
from orchestrator.harness import free_port
from workers.celery_app.factory import create_app
from workers.core.names import BATCH_TASK

SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"jobs": 150, "clients": (1, 4, 50), "api_workers": (1, 2), "repeats": 1},
    "default": {"jobs": 2000, "clients": (1, 4, 50), "api_workers": (1, 2), "repeats": 3},
    "full": {"jobs": 10000, "clients": (1, 4, 50), "api_workers": (1, 2), "repeats": 5},
}
HEADLINE_CLIENTS = 50
GOAL = {"name": "bench", "steps": [{"skill": "noop", "items": [{"value": 1}]}]}


@contextmanager
def api_process(env: BenchRedis, workers: int = 1, **settings: str) -> Iterator[tuple[str, str]]:
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
    command += ["--workers", str(workers)]
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
        # The whole session: with --workers, uvicorn's worker processes are its children.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
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


def cell(
    env: BenchRedis, url: str, key: str, jobs: int, clients: int, repeats: int
) -> dict[str, Any]:
    """Ours and the peer at one client count, alternated ``repeats`` times; medians."""
    ours_runs, peer_runs, failures = [], [], 0
    for _ in range(repeats):
        elapsed, latencies, failed = submit_all(url, key, jobs, clients)
        ours_runs.append(figures(elapsed, latencies, jobs))
        failures += failed
        peer_elapsed, peer_latencies = send_all(env, jobs, clients)
        peer_runs.append(figures(peer_elapsed, peer_latencies, jobs))
    ours = {name: median_of(ours_runs, name) for name in ours_runs[0]}
    peer = {name: median_of(peer_runs, name) for name in peer_runs[0]}
    spread = summary([run["per_s"] for run in ours_runs])["spread"]
    return {
        "clients": clients,
        "ratio": round(ours["per_s"] / peer["per_s"], 3),
        "ours": ours,
        "peer": peer,
        "ours_spread": round(spread, 3),
        "failures": failures,
    }


def median_of(runs: list[dict[str, float]], name: str) -> float:
    return float(summary([run[name] for run in runs])["median"])


def run(size: str) -> dict[str, Any]:
    config = SIZES[size]
    jobs, repeats = config["jobs"], config["repeats"]
    matrix = []
    with bench_redis() as env:
        for workers in config["api_workers"]:
            with api_process(env, workers=workers) as (url, key):
                # Warm every uvicorn process and its pools (connections are spread over them).
                submit_all(url, key, 200 * workers, HEADLINE_CLIENTS)
                for clients in config["clients"]:
                    row = cell(env, url, key, jobs, clients, repeats)
                    matrix.append({"api_workers": workers, **row})
    headline = max(
        (row for row in matrix if row["clients"] == HEADLINE_CLIENTS),
        key=lambda row: row["ratio"],
    )
    return {
        "ratio": headline["ratio"],
        "ours": headline["ours"]["per_s"],
        "peer": headline["peer"]["per_s"],
        "unit": "jobs submitted per second (ratio = ours / raw Celery send_task)",
        "clients": HEADLINE_CLIENTS,
        "api_workers": headline["api_workers"],
        "jobs": jobs,
        "repeats": repeats,
        "failures": sum(row["failures"] for row in matrix),
        "api": headline["ours"],
        "raw_celery_send_task": headline["peer"],
        "matrix": matrix,
        "peer_is": "Celery send_task of the same victor.batch task from the same number of "
        "threads, no auth, no ledger record, no planning",
        "headline_is": f"the best uvicorn worker count at {HEADLINE_CLIENTS} clients; every "
        "cell is in matrix (medians over repeats, ours and the peer alternated)",
    }

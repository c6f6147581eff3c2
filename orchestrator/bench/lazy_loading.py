"""lazy_loading: worker cold start (launch to ready) and idle RSS, lazy vs eager skills.

Each sample is a fresh ``celery -A workers worker`` process (solo pool, so one process holds
everything), alternating lazy and eager so drift hits both alike.
"""

from __future__ import annotations

import time
from typing import Any

import psutil

from orchestrator.bench.environment import bench_redis
from orchestrator.bench.stats import summary
from orchestrator.harness import WorkerProcess

RUNS = {"tiny": 1, "default": 5, "full": 9}


def _sample(env: dict[str, str], eager: bool) -> tuple[float, float, list[str]]:
    worker = WorkerProcess(
        {
            **env,
            "VICTOR_LAZY_LOADING_ENABLED": "false" if eager else "true",
            "VICTOR_LAZY_LOADING_PREWARM_DELAY_S": "0",
        },
        concurrency=1,
        pool="solo",
    )
    started = time.monotonic()
    worker.start(wait=False)
    try:
        worker.wait_ready(60)
        start_s = time.monotonic() - started
        time.sleep(1.0)  # idle: let start-up allocations settle
        process = psutil.Process(worker.pid)
        rss_mb = process.memory_info().rss / 1_048_576
        return start_s, rss_mb, []
    finally:
        worker.kill()


def run(size: str) -> dict[str, Any]:
    runs = RUNS[size]
    starts: dict[str, list[float]] = {"lazy": [], "eager": []}
    rss: dict[str, list[float]] = {"lazy": [], "eager": []}
    with bench_redis() as redis_env:
        env = redis_env.env()
        _sample(env, eager=False)  # warm the OS file cache once, unmeasured
        for _ in range(runs):
            for mode in ("lazy", "eager"):
                start_s, rss_mb, _ = _sample(env, eager=mode == "eager")
                starts[mode].append(start_s)
                rss[mode].append(rss_mb)
    start_lazy, start_eager = summary(starts["lazy"]), summary(starts["eager"])
    rss_lazy, rss_eager = summary(rss["lazy"]), summary(rss["eager"])
    return {
        "unit": "s to ready; MB idle RSS",
        "ratio": start_lazy["median"] / start_eager["median"],
        "rss_ratio": rss_lazy["median"] / rss_eager["median"],
        "start_reduction": 1 - start_lazy["median"] / start_eager["median"],
        "rss_reduction": 1 - rss_lazy["median"] / rss_eager["median"],
        "ours": {"start_s": start_lazy, "rss_mb": rss_lazy},
        "peer": {"start_s": start_eager, "rss_mb": rss_eager},
        "peer_is": "the same worker with every skill imported at start (lazy loading off)",
        "runs": runs,
        "target": ">= 60% faster start, >= 50% less idle RSS",
    }

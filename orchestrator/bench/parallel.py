"""parallel: 32 independent 100 ms I/O tasks through execute_tools_parallel, window 8 vs 1.

Both run through the same facade, embedded worker and skill; only ``max_workers`` differs.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from orchestrator.bench.stats import summary
from orchestrator.facade import Orchestrator
from workers.core.settings import Settings

SIZES = {"tiny": (8, 50, 1), "default": (32, 100, 3), "full": (32, 100, 7)}
WINDOW = 8


async def _measure(count: int, ms: int, rounds: int) -> tuple[list[float], list[float]]:
    parallel: list[float] = []
    sequential: list[float] = []
    tools = ["sleep"] * count
    params = [{"ms": ms, "value": index} for index in range(count)]
    # Embedded mode on purpose (even when VICTOR_REDIS_URL is set): both sides share one
    # in-process worker, so the ratio isolates the window.
    settings = Settings(
        max_parallel_workers=WINDOW,
        redis_url=None,
        broker_url=None,
        result_backend_url=None,
        cache_url=None,
    )
    async with Orchestrator(settings) as orchestrator:
        await orchestrator.execute_tools_parallel(tools[:2], params[:2], max_workers=2)
        for _ in range(rounds):
            for window, samples in ((WINDOW, parallel), (1, sequential)):
                started = time.perf_counter()
                results = await orchestrator.execute_tools_parallel(tools, params, window)
                samples.append(time.perf_counter() - started)
                if [result["value"] for result in results] != list(range(count)):
                    raise RuntimeError("results out of order or missing")
    return parallel, sequential


def run(size: str) -> dict[str, Any]:
    count, ms, rounds = SIZES[size]
    parallel, sequential = asyncio.run(_measure(count, ms, rounds))
    ours, peer = summary(parallel), summary(sequential)
    return {
        "unit": "s per batch",
        "ratio": peer["median"] / ours["median"],
        "ratio_is": "speedup: sequential time / parallel time",
        "ours": ours,
        "peer": peer,
        "tasks": count,
        "task_ms": ms,
        "window": WINDOW,
        "ideal_speedup": min(WINDOW, count),
        "target": ">= 7x",
    }

"""Time to the first streamed result vs time to all results, for a 100-task job over the API.

``ratio`` = first / all (lower is better; the target is <= 0.2). Both figures come from one
Server-Sent Events stream per job: ``first`` when the first ``result`` event arrives, ``all``
when the final ``end`` event does, each measured from the POST. ``all`` is what a client that
waits for the whole job (a chord's ``get()``) would see, so it is the peer's figure.
"""

from __future__ import annotations

import json
import statistics
import time
from typing import Any

import httpx

from orchestrator.bench.api import api_process
from orchestrator.bench.environment import bench_redis
from orchestrator.bench.stats import summary

SIZES = {
    "tiny": {"tasks": 20, "runs": 1},
    "default": {"tasks": 100, "runs": 3},
    "full": {"tasks": 100, "runs": 7},
}
TASK_MS = 50  # each task sleeps this long (simulated I/O)
CONCURRENCY = 4


def goal(tasks: int) -> dict[str, Any]:
    return {
        "name": "streaming bench",
        "chunk_size": 1,
        "steps": [
            {"skill": "sleep", "items": [{"ms": TASK_MS, "value": index} for index in range(tasks)]}
        ],
    }


def measure(client: httpx.Client, tasks: int) -> tuple[float, float, int]:
    """``(seconds to first result, seconds to end, results seen)`` for one job."""
    started = time.perf_counter()
    accepted = client.post("/v1/jobs", json=goal(tasks)).json()
    first: float | None = None
    results = 0
    event = ""
    with client.stream(
        "GET", accepted["links"]["events"], timeout=httpx.Timeout(30.0, read=120.0)
    ) as response:
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                if event == "result":
                    results += 1
                    if first is None:
                        first = time.perf_counter() - started
                elif event == "end":
                    status = json.loads(line[6:])["status"]
                    if status != "succeeded":
                        raise RuntimeError(f"bench job ended {status}")
                    return first or 0.0, time.perf_counter() - started, results
    raise RuntimeError("the event stream ended without an end event")


def run(size: str) -> dict[str, Any]:
    tasks, runs = SIZES[size]["tasks"], SIZES[size]["runs"]
    with bench_redis() as env:
        env.worker(concurrency=CONCURRENCY, pool="threads")
        with (
            api_process(env) as (url, key),
            httpx.Client(
                base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30
            ) as client,
        ):
            measure(client, 4)  # warm the worker's skill import and the server
            samples = [measure(client, tasks) for _ in range(runs)]
    firsts = [sample[0] for sample in samples]
    totals = [sample[1] for sample in samples]
    ratios = [first / total for first, total, _ in samples]
    first_s, all_s = summary(firsts), summary(totals)
    for figures in (first_s, all_s):
        figures.pop("samples")
    return {
        "ratio": round(statistics.median(ratios), 4),
        "ours": round(first_s["median"], 4),
        "peer": round(all_s["median"], 4),
        "unit": "seconds from POST (ours: first result over SSE; peer: all results)",
        "tasks": tasks,
        "task_ms": TASK_MS,
        "worker_concurrency": CONCURRENCY,
        "results_streamed": [sample[2] for sample in samples],
        "first_result_s": first_s,
        "all_results_s": all_s,
        "ratios": [round(ratio, 4) for ratio in ratios],
        "target": 0.2,
    }

"""Metrics costs: hot-path ns per counter increment / timer block, and reporting overhead per task.

Two measurements in one run:
- in this process: MetricsRegistry counter, timer and histogram against prometheus-client's
  own Counter.inc (the peer), and the reporter's per-task signal work (start + finish);
- end to end: no-op jobs through the dispatcher on two identical prefork workers (own key
  prefixes, so their own queues), one with ``metrics_enabled`` off and one with it on, rounds
  alternated. ``ratio`` = throughput with reporting / without (1.0 = free).
"""

from __future__ import annotations

import time
import timeit
from collections.abc import Callable
from typing import Any

from orchestrator.bench.environment import bench_redis
from orchestrator.bench.stats import summary
from workers.runtime import runtime_of

SIZES: dict[str, dict[str, int]] = {
    "tiny": {"tasks": 100, "rounds": 1, "loops": 20_000},
    "default": {"tasks": 600, "rounds": 3, "loops": 200_000},
    "full": {"tasks": 2000, "rounds": 5, "loops": 1_000_000},
}


def _ns_per_call(statement: Callable[[], Any], loops: int, repeat: int = 5) -> dict[str, Any]:
    samples = [
        timer / loops * 1e9 for timer in timeit.repeat(statement, number=loops, repeat=repeat)
    ]
    return summary(samples)


def hot_path(loops: int) -> dict[str, Any]:
    """ns per operation, medians of 5 runs, with the empty-call baseline subtracted."""
    from prometheus_client import CollectorRegistry
    from prometheus_client import Counter as PromCounter

    from workers.telemetry.registry import MetricsRegistry

    registry = MetricsRegistry()
    counter = registry.create_counter("bench_hits", "hits")
    timer = registry.create_timer("bench_block", "blocks")
    histogram = registry.create_histogram("bench_values", "values")
    peer = PromCounter("bench_hits", "hits", registry=CollectorRegistry())

    def timed_block() -> None:
        with timer.time():
            pass

    baseline = _ns_per_call(lambda: None, loops)["median"]
    figures = {
        "counter_increment": _ns_per_call(counter.increment, loops),
        "timer_block": _ns_per_call(timed_block, loops),
        "histogram_observe": _ns_per_call(lambda: histogram.observe(0.01), loops),
        "prometheus_client_counter_inc": _ns_per_call(peer.inc, loops),
    }
    out: dict[str, Any] = {"baseline_call_ns": round(baseline, 1)}
    for name, figure in figures.items():
        out[f"{name}_ns"] = round(figure["median"] - baseline, 1)
        out[f"{name}_spread"] = round(figure["spread"], 3)
    return out


def reporter_cost(loops: int) -> dict[str, Any]:
    """The reporter's work per task (prerun + postrun handlers' bodies), in microseconds."""
    from workers.core.settings import Settings
    from workers.telemetry.reporter import Reporter
    from workers.telemetry.store import MemoryMetricsStore

    reporter = Reporter(
        Settings(key_prefix="vbenchrep", metrics_flush_interval_s=60), MemoryMetricsStore()
    )
    count = max(1000, loops // 20)
    kwargs = {"skill": "noop", "items": [{}], "job_id": "j"}
    retval = [{"ok": True, "value": None}]
    try:
        samples = []
        for _ in range(5):
            started = time.perf_counter()
            for index in range(count):
                task_id = f"t{index}"
                reporter.task_started(task_id, time.time())
                reporter.task_finished(
                    task_id, "victor.batch", ("noop", [{}]), kwargs, retval, "SUCCESS"
                )
            samples.append((time.perf_counter() - started) / count * 1e6)
            reporter.flush()
    finally:
        reporter.stop()
    figure = summary(samples)
    return {
        "reporter_per_task_us": round(figure["median"], 2),
        "reporter_per_task_spread": round(figure["spread"], 3),
    }


def _throughput(settings: Any, tasks: int) -> float:
    from orchestrator.core.dispatcher import dispatch_plan, wait_job
    from orchestrator.core.plan import GoalSpec, StepSpec
    from orchestrator.core.planner import plan_goal
    from orchestrator.core.session import Session

    goal = GoalSpec(steps=[StepSpec(skill="noop", items=[{"value": i} for i in range(tasks)])])
    with Session(settings) as session:
        plan = plan_goal(goal, settings, runtime_of(session.app).registry)
        started = time.perf_counter()
        job = wait_job(dispatch_plan(session.app, plan), timeout_s=600)
        elapsed = time.perf_counter() - started
    if job.status != "succeeded":
        raise RuntimeError(f"benchmark job {job.job_id} {job.status}: {job.error}")
    return tasks / elapsed


def end_to_end(tasks: int, rounds: int) -> dict[str, Any]:
    """No-op tasks/s through the dispatcher with reporting off and on (alternating rounds)."""
    off: list[float] = []
    on: list[float] = []
    with bench_redis() as quiet, bench_redis() as reported:
        quiet.worker(concurrency=2, VICTOR_METRICS_ENABLED="false")
        reported.worker(concurrency=2, VICTOR_METRICS_ENABLED="true")
        quiet_settings = quiet.settings(chunk_size=1, metrics_enabled=False)
        reported_settings = reported.settings(chunk_size=1)
        _throughput(quiet_settings, 20)  # warm both: skills loaded, connections open
        _throughput(reported_settings, 20)
        for round_index in range(rounds):
            pair = [(quiet_settings, off), (reported_settings, on)]
            for settings, samples in pair if round_index % 2 == 0 else reversed(pair):
                samples.append(_throughput(settings, tasks))
    return {"off": summary(off), "on": summary(on)}


def run(size: str) -> dict[str, Any]:
    plan = SIZES[size]
    hot = hot_path(plan["loops"])
    reporter = reporter_cost(plan["loops"])
    flows = end_to_end(plan["tasks"], plan["rounds"])
    with_reporting = flows["on"]["median"]
    without = flows["off"]["median"]
    return {
        "ratio": round(with_reporting / without, 3),
        "ours": round(with_reporting, 1),
        "peer": round(without, 1),
        "unit": "no-op tasks/s with reporting (ours) vs metrics_enabled=false (peer)",
        "overhead_per_task_us": round((1 / with_reporting - 1 / without) * 1e6, 1),
        **hot,
        **reporter,
        "tasks_per_round": plan["tasks"],
        "rounds": plan["rounds"],
        "throughput_off": flows["off"],
        "throughput_on": flows["on"],
    }

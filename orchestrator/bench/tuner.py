"""tuner: our tuner against the best fixed concurrency and Celery's ``--autoscale``, on a
workload with a hidden optimum.

One run, on one Redis, against one peaked backend (``orchestrator.harness.backend``, in its
own process on loopback; its optimum is picked at random each run, or set with
``VICTOR_BENCH_TUNER_OPTIMUM``), with a worker running the ``fetch`` skill under a backlog:

1. the sweep: one resizable-threads worker, tuner off, resized with ``pool_grow`` /
   ``pool_shrink`` to 1, 2, 4, ... up to the maximum, then a bisection toward the peak (the
   middle of the gap between the best size and its better neighbour); each size's throughput
   is the median of back-to-back windows after a settling pause. The best is "best fixed".
2. Celery's own autoscaler: ``--autoscale=max,min`` over the same range, on **prefork** (Celery's
   threads pool cannot autoscale: ``--autoscale -P threads`` crashes on its first task); its
   throughput over the second half of the run.
3. our tuner (``TunerRunner`` in this process, acting through Celery's remote control) on a
   fresh resizable-threads worker started at the minimum, then one started at the maximum: the
   throughput timeline, seconds until the throughput over the last few seconds first reaches
   90% of best fixed, and over the last third of the run (the steady part) its throughput and
   the spread of the pool size; the peak RSS of the worker's process tree.

``ratio`` = the lower of the two tuner runs' steady throughput / best fixed; ``vs_celery_autoscale``
= the same / Celery's autoscaler's throughput.
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

from orchestrator.bench.environment import BenchRedis, bench_redis
from orchestrator.bench.tuner_load import (
    Backlog,
    Point,
    live_slots,
    next_refinement,
    record,
    seconds_to,
    steady,
    timeline,
    windows,
)
from orchestrator.harness import WorkerProcess
from orchestrator.harness.backend import BackendProcess, PeakedModel
from orchestrator.tuner.actuation import ControlActuator
from orchestrator.tuner.journal import TunerJournal
from orchestrator.tuner.lease import Lease
from orchestrator.tuner.runner import TunerRunner, lease_ttl_ms
from orchestrator.tuner.sample import POOL
from workers.celery_app.factory import create_app
from workers.core.settings import Settings
from workers.telemetry.fleet import get_metrics

RESIZABLE = "workers.pools.threads:ResizableThreadPool"


@dataclass(frozen=True)
class Plan:
    """How big one run is."""

    low: int  # the range every contender works in
    high: int
    optimum: tuple[int, int]  # the range the hidden optimum is drawn from
    peak_per_s: float  # the backend's throughput at its optimum
    settle_s: float  # sweep: pause after a resize before measuring
    window_s: float  # sweep: one window
    windows: int  # sweep: windows per size (their median counts)
    refine: int  # sweep: at most this many sizes measured around the best power of two
    autoscale_s: float  # Celery's autoscaler: length of the run (its second half counts)
    tuner_s: float  # our tuner: length of each run (its last third counts)
    rate_window_s: float  # the timeline's throughput is over this many seconds
    # The tuner's timing: None keeps the settings' value (its default, or VICTOR_TUNER_*).
    interval_s: float | None = None
    cooldown_s: float | None = None
    flush_s: float | None = None
    exponent: float = 2.0  # how fast the backend degrades past its optimum


SIZES = {
    "tiny": Plan(1, 4, (2, 3), 40, 1.0, 1.5, 1, 1, 6, 10, 2, 1.0, 2.0, 0.25),
    "default": Plan(1, 16, (3, 12), 50, 3.0, 2.0, 3, 8, 45, 60, 4),
    "full": Plan(1, 16, (3, 12), 50, 4.0, 3.0, 5, 16, 90, 120, 4),
}
TARGET = 0.9


@dataclass
class Phase:
    """One contender's worker, its app and its backlog, under a key prefix of its own."""

    settings: Settings
    worker: WorkerProcess
    app: Any
    backlog: Backlog


def _say(text: str) -> None:
    sys.stderr.write(f"bench tuner: {text}\n")
    sys.stderr.flush()


def _pick_optimum(plan: Plan) -> int:
    forced = os.environ.get("VICTOR_BENCH_TUNER_OPTIMUM")
    if forced:
        return min(max(int(forced), plan.low), plan.high)
    return random.SystemRandom().randint(*plan.optimum)


@contextmanager
def _phase(
    env: BenchRedis,
    backend: BackendProcess,
    plan: Plan,
    label: str,
    concurrency: int,
    pool: str,
    extra_args: list[str] | None = None,
    tuner_enabled: bool = True,
) -> Iterator[Phase]:
    """Start a worker on a prefix of its own with a backlog; stop both afterwards."""
    prefix = f"{env.prefix}{label}"
    settings = _settings(env, plan, key_prefix=prefix)
    variables = env.env(
        VICTOR_KEY_PREFIX=prefix,
        VICTOR_METRICS_FLUSH_INTERVAL_S=str(settings.metrics_flush_interval_s),
        VICTOR_TUNER_MIN_CONCURRENCY=str(plan.low),
        VICTOR_TUNER_MAX_CONCURRENCY=str(plan.high),
        VICTOR_TUNER_ENABLED="true" if tuner_enabled else "false",
        VICTOR_FETCH_ALLOWED_HOSTS="127.0.0.1",  # loopback is allowed only by address
    )
    if pool == "threads":
        variables["CELERY_CUSTOM_WORKER_POOL"] = RESIZABLE
    worker = WorkerProcess(
        variables,
        concurrency=concurrency,
        pool="custom" if pool == "threads" else pool,
        extra_args=extra_args,
    )
    env.workers.append(worker)
    app = create_app(settings)
    backlog = Backlog(app, settings, f"{backend.url}/work", *_backlog_bounds(plan))
    try:
        worker.start()
        backlog.start()
        time.sleep(min(2.0, plan.settle_s))  # the first tasks reach the worker
        yield Phase(settings, worker, app, backlog)
    finally:
        backlog.stop()
        worker.kill()
        _drain(backend)


def _settings(env: BenchRedis, plan: Plan, **overrides: object) -> Settings:
    timing = {
        "tuner_interval_s": plan.interval_s,
        "tuner_cooldown_s": plan.cooldown_s,
        "metrics_flush_interval_s": plan.flush_s,
    }
    return env.settings(
        tuner_min_concurrency=plan.low,
        tuner_max_concurrency=plan.high,
        fetch_allowed_hosts=["127.0.0.1"],
        **{name: value for name, value in timing.items() if value is not None},
        **overrides,
    )


def _backlog_bounds(plan: Plan) -> tuple[int, int]:
    low = max(50, int(plan.peak_per_s * 3))
    return low, 2 * low


def _drain(backend: BackendProcess, timeout_s: float = 15.0) -> None:
    """Wait until a killed worker's requests have left the backend."""
    deadline = time.monotonic() + timeout_s
    while backend.stats()["inflight"] and time.monotonic() < deadline:
        time.sleep(0.1)


def _sweep(
    env: BenchRedis, backend: BackendProcess, plan: Plan
) -> tuple[dict[int, list[float]], dict[int, float]]:
    """Fixed sizes on one worker (tuner off): powers of two, then around the best of them;
    each size's rates and its mean requests in flight at the backend."""
    measured: dict[int, list[float]] = {}
    inflight: dict[int, float] = {}
    with _phase(env, backend, plan, "sweep", plan.low, "threads", tuner_enabled=False) as phase:
        actuator = ControlActuator(phase.app)
        current = plan.low

        def measure(size: int) -> None:
            nonlocal current
            result = actuator.resize(phase.worker.hostname, POOL, current, size, 1)
            if not result.ok:
                raise RuntimeError(f"sweep: resizing {current}->{size} failed: {result.detail}")
            current = size
            time.sleep(plan.settle_s)
            measured[size], inflight[size] = windows(backend, plan.window_s, plan.windows)
            rate = statistics.median(measured[size])
            _say(f"fixed {size}: {rate:.1f}/s, {inflight[size]:.1f} in flight at the backend")

        size = plan.low
        while size < plan.high:
            measure(size)
            size *= 2
        measure(plan.high)
        for _ in range(plan.refine):
            nearest = next_refinement(measured)
            if nearest is None:
                break
            measure(nearest)
    return measured, inflight


def _autoscale(env: BenchRedis, backend: BackendProcess, plan: Plan) -> dict[str, Any]:
    """Celery's own autoscaler over the range (prefork: the threads pool cannot autoscale)."""
    bounds = f"--autoscale={plan.high},{plan.low}"
    with _phase(env, backend, plan, "autoscale", plan.low, "prefork", [bounds]) as phase:
        worker = phase.worker
        points = record(backend, plan.autoscale_s, lambda: len(worker.children()), worker.pid)
    figures = steady(points, plan.autoscale_s / 2)
    _say(f"celery --autoscale: {figures['per_s']:.1f}/s at {figures['pool_spread']}")
    return {
        "pool": "prefork",
        "args": bounds,
        **figures,
        "peak_rss_mb": max(point.rss_mb for point in points),
        "timeline": timeline(points, plan.rate_window_s),
    }


def _tuned(
    env: BenchRedis, backend: BackendProcess, plan: Plan, start: int, label: str, best: float
) -> dict[str, Any]:
    """Our tuner on a fresh worker started at ``start`` slots."""
    with _phase(env, backend, plan, label, start, "threads") as phase:
        settings, hostname = phase.settings, phase.worker.hostname
        journal = TunerJournal(settings)
        lease = Lease(journal.client, journal.keys.tuner_lease(), lease_ttl_ms(settings))
        said: list[str] = []
        runner = TunerRunner(
            settings,
            figures=lambda: get_metrics(settings),
            journal=journal,
            actuator=ControlActuator(phase.app),
            lease=lease,
            say=said.append,
        )
        stop = threading.Event()
        thread = threading.Thread(target=runner.run, args=(stop,), name="bench-tuner", daemon=True)
        thread.start()
        try:
            points = record(backend, plan.tuner_s, live_slots(settings, hostname), phase.worker.pid)
        finally:
            stop.set()
            thread.join(15)
        decisions = [d for d in journal.decisions(count=5000) if d["worker"] == hostname]
    return _tuned_figures(points, plan, start, best, list(reversed(decisions)))


def _tuned_figures(
    points: list[Point], plan: Plan, start: int, best: float, decisions: list[dict[str, Any]]
) -> dict[str, Any]:
    figures = steady(points, plan.tuner_s * 2 / 3)
    reached = seconds_to(points, plan.rate_window_s, TARGET * best)
    moves = [d for d in decisions if d["action"] != "hold"]
    _say(
        f"tuner from {start}: {figures['per_s']:.1f}/s steady, 90% of best after {reached} s, "
        f"pool {figures['pool_spread']}"
    )
    return {
        "start": start,
        "seconds_to_90": reached,
        **figures,
        "ratio": round(figures["per_s"] / best, 3) if best else 0.0,
        "peak_rss_mb": max(point.rss_mb for point in points),
        "decisions": dict(Counter(f"{d['action']}:{d['rule']}" for d in decisions)),
        "moves": [f"{d['at'] - decisions[0]['at']:.0f}s {d['reason']}" for d in moves],
        "last_hold": next(
            (d["reason"] for d in reversed(decisions) if d["action"] == "hold"), None
        ),
        "timeline": timeline(points, plan.rate_window_s),
    }


def run(size: str) -> dict[str, Any]:
    plan = SIZES[size]
    optimum = _pick_optimum(plan)
    model = PeakedModel.with_peak(optimum, plan.peak_per_s, plan.exponent)
    load_before = os.getloadavg()
    _say(f"backend optimum {optimum} (hidden from every contender), range {plan.low}-{plan.high}")
    with bench_redis() as env, BackendProcess(model) as backend:
        measured, inflight = _sweep(env, backend, plan)
        best_size = max(measured, key=lambda size: statistics.median(measured[size]))
        best = statistics.median(measured[best_size])
        autoscale = _autoscale(env, backend, plan)
        from_min = _tuned(env, backend, plan, plan.low, "min", best)
        from_max = _tuned(env, backend, plan, plan.high, "max", best)
        settings = _settings(env, plan)
    runs = {"from_min": from_min, "from_max": from_max}
    tuned = min(from_min["per_s"], from_max["per_s"])
    peak_rss = max(from_min["peak_rss_mb"], from_max["peak_rss_mb"])
    memory_limit_mb = settings.memory_limit_mb
    ratio = tuned / best if best else 0.0
    versus = tuned / autoscale["per_s"] if autoscale["per_s"] else 0.0
    reached = [run_["seconds_to_90"] for run_ in runs.values()]
    return {
        "unit": "tasks/s",
        "ratio": round(ratio, 3),
        "ratio_is": "tuner steady throughput / best fixed (the lower of from min and from max)",
        "vs_celery_autoscale": round(versus, 3),
        "seconds_to_90": {name: run_["seconds_to_90"] for name, run_ in runs.items()},
        "pool_spread": {name: run_["pool_spread"] for name, run_ in runs.items()},
        "peak_rss_mb": peak_rss,
        "memory_limit_mb": memory_limit_mb,
        "targets_met": {
            "ratio_at_least_0.9": ratio >= TARGET,
            "within_60_s_from_both_ends": all(r is not None and r <= 60 for r in reached),
            "ahead_of_celery_autoscale": versus > 1.0,
            "rss_under_limit": peak_rss <= memory_limit_mb,
        },
        "ours": runs,
        "peer": {
            "best_fixed": {"size": best_size, "per_s": round(best, 2)},
            "celery_autoscale": autoscale,
        },
        "sweep": {
            str(size): {**_rates(measured[size]), "inflight": round(inflight[size], 2)}
            for size in sorted(measured)
        },
        "tuner_settings": {
            "interval_s": settings.tuner_interval_s,
            "cooldown_s": settings.tuner_cooldown_s,
            "max_step": settings.tuner_max_step,
            "metrics_flush_interval_s": settings.metrics_flush_interval_s,
            "min": settings.tuner_min_concurrency,
            "max": settings.tuner_max_concurrency,
        },
        "backend": {**asdict(model), "peak_per_s": plan.peak_per_s, "best_size": optimum},
        "plan": asdict(plan),
        "load_avg": {"before": load_before, "after": os.getloadavg()},
        "notes": _notes(plan, inflight),
        "target": ">= 0.9 of best fixed within 60 s from min and from max, ahead of Celery's "
        "--autoscale, RSS never above memory_limit_mb, no oscillation at steady state",
    }


def _notes(plan: Plan, inflight: dict[int, float]) -> list[str]:
    notes = [
        "Celery's autoscaler runs on prefork: Celery's threads pool cannot autoscale "
        "(--autoscale -P threads crashes); ours runs on the resizable threads pool "
        "(workers.pools.threads), as does the sweep. Throughput is counted at the backend.",
    ]
    most = max(inflight.values())
    if most < 0.8 * plan.high:
        notes.append(
            f"with up to {plan.high} slots the backend never saw more than {most:.1f} requests "
            "in flight on average: something in the worker caps concurrency below its pool "
            "size (the fetch skill's pooled client), so sizes past that cap only add waiting"
        )
    return notes


def _rates(samples: list[float]) -> dict[str, Any]:
    return {
        "per_s": round(statistics.median(samples), 2),
        "samples": [round(s, 2) for s in samples],
    }

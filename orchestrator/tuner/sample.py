"""From one worker's figures (``get_metrics()["workers"][name]``) to a tuner sample: pure.

Throughput and latency over an interval come from the worker's running totals (tasks, run
time) read at two moments: the difference is what finished in between, whatever the metrics
window is. A counter that went back (the worker restarted, its totals expired) gives no sample.
The providers' fleet-wide slots (``workers.providers.slot_usage``) go into every sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orchestrator.tuner.policy import ProviderSlots, TunerBounds, TunerSample
from workers.core.settings import Settings
from workers.providers.limits import SlotUsage

AUTOSCALE = "autoscale"  # resized through the worker's autoscaler bounds (--autoscale)
POOL = "pool"  # resized with pool_grow/pool_shrink (prefork, the resizable threads pool)
FIXED = "fixed"  # cannot be resized (solo, Celery's own threads pool)


@dataclass(frozen=True)
class Reading:
    """A worker's running totals at one moment: ``at`` on the runner's clock (which readings
    count after a change), ``reported_at`` on the worker's (when it wrote those totals)."""

    at: float
    tasks: int
    run_us: int
    reported_at: float | None = None

    @classmethod
    def of(cls, worker: dict[str, Any], at: float) -> Reading:
        totals = worker.get("totals") or {}
        reported = worker.get("at")
        return cls(
            at=at,
            tasks=int(totals.get("tasks", 0)),
            run_us=int(totals.get("run_us", 0)),
            reported_at=float(reported) if reported is not None else None,
        )


def control_mode(worker: dict[str, Any]) -> str:
    """How a worker's pool can be resized: autoscale bounds, grow/shrink, or not at all."""
    if worker.get("autoscale"):
        return AUTOSCALE
    return POOL if worker.get("resizable") else FIXED


def reported_size(worker: dict[str, Any]) -> int:
    """The size the tuner controls: the autoscaler's upper bound, else the pool's size."""
    autoscale = worker.get("autoscale")
    if autoscale:
        return int(autoscale.get("limit") or autoscale.get("max") or 0)
    return int(worker.get("pool_size") or 0)


def provider_slots(usage: list[SlotUsage]) -> tuple[ProviderSlots, ...]:
    """The policy's view of the providers' slots."""
    return tuple(ProviderSlots(u.provider, u.in_use, u.limit, u.waiting) for u in usage)


def build_sample(
    worker: dict[str, Any],
    previous: Reading,
    now: Reading,
    queued: int,
    pool_size: int,
    providers: tuple[ProviderSlots, ...] = (),
) -> TunerSample | None:
    """What the worker did between two readings; None when the interval or counters are off.

    The rate is over the worker's own timestamps when it wrote both: the runner reads totals a
    flush late by a varying amount, so its own clock adds jitter of up to a flush to the
    interval. A worker that wrote nothing new since (the same timestamp) falls back to it.
    """
    interval_s = now.at - previous.at
    if now.reported_at is not None and previous.reported_at is not None:
        reported_s = now.reported_at - previous.reported_at
        interval_s = reported_s if reported_s > 0 else interval_s
    completed = now.tasks - previous.tasks
    run_us = now.run_us - previous.run_us
    if interval_s <= 0 or completed < 0 or run_us < 0:
        return None
    return TunerSample(
        at=now.at,
        interval_s=interval_s,
        pool_size=pool_size,
        completed=completed,
        latency_ms=run_us / completed / 1000 if completed else None,
        active=int(worker.get("active") or 0),
        reserved=int(worker.get("reserved") or 0),
        queued=max(0, queued),
        rss_mb=float(worker.get("rss_mb") or 0.0),
        cpu_percent=float(worker.get("cpu_percent") or 0.0),
        providers=providers,
    )


def bounds_for(settings: Settings, worker: dict[str, Any]) -> TunerBounds:
    """The tuner's bounds for one worker: its own settings and --autoscale range also apply.

    The tuner's ``tuner_min/max_concurrency`` meet the worker's (it reports its own) and, for
    an autoscaling worker, the range it was started with; when they do not overlap the lower
    maximum wins (the safe side).
    """
    lows = [settings.tuner_min_concurrency]
    highs = [settings.tuner_max_concurrency]
    own = worker.get("tuner") or {}
    if own.get("min"):
        lows.append(int(own["min"]))
    if own.get("max"):
        highs.append(int(own["max"]))
    autoscale = worker.get("autoscale")
    if autoscale:
        lows.append(max(1, int(autoscale.get("min") or 1)))
        highs.append(max(1, int(autoscale["max"])))
    high = min(highs)
    return TunerBounds(
        min_concurrency=min(max(lows), high),
        max_concurrency=high,
        memory_limit_mb=float(settings.memory_limit_mb),
        memory_warning_threshold=settings.memory_warning_threshold,
        max_step=settings.tuner_max_step,
        cooldown_s=settings.tuner_cooldown_s,
    )

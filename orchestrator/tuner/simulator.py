"""A small deterministic model of one worker, producing tuner samples for tests and benchmarks.

A ``Workload`` is the hidden truth: how many tasks a second ``c`` busy slots complete, how much
memory a busy slot costs, how fast tasks arrive, how noisy a measurement is. A
``SimulatedWorker`` serves it one interval at a time; ``run`` drives a policy against it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from orchestrator.tuner.policy import Decision, TunerBounds, TunerSample, TunerState, new_state

Policy = Callable[[TunerState, TunerSample, TunerBounds], tuple[Decision, TunerState]]
"""The shape of ``next_concurrency``, so a benchmark can race other policies against it."""


@dataclass(frozen=True)
class Workload:
    """The hidden truth a simulated worker runs on: capacity, memory, demand and noise."""

    slot_rate: float = 10.0  # tasks a second one uncontended slot completes
    optimum: int | None = None  # a backend that degrades past this many concurrent calls
    degrade_exponent: float = 1.0
    cores: int | None = None  # CPU-bound: no more throughput past this many slots
    arrival_rate: float | None = None  # tasks a second arriving; None means an endless backlog
    base_rss_mb: float = 100.0
    rss_per_slot_mb: float = 20.0
    noise: float = 0.0  # relative standard deviation of one interval's capacity

    def capacity(self, size: int) -> float:
        """Noise-free tasks a second with ``size`` slots all busy."""
        slots = max(size, 0)
        usable = min(slots, self.cores) if self.cores is not None else slots
        rate = self.slot_rate * usable
        if self.optimum is not None and slots > self.optimum:
            peak = self.capacity(self.optimum)
            rate = min(rate, peak * (self.optimum / slots) ** self.degrade_exponent)
        return rate

    def rss_mb(self, active: int) -> float:
        """Worker RSS with ``active`` busy slots."""
        return self.base_rss_mb + self.rss_per_slot_mb * active

    def best_size(self, bounds: TunerBounds) -> int:
        """The fixed pool size with the most throughput within the bounds and memory line."""
        sizes = [
            size
            for size in range(bounds.min_concurrency, bounds.max_concurrency + 1)
            if self.rss_mb(size) <= bounds.memory_line_mb or size == bounds.min_concurrency
        ]
        return max(sizes, key=lambda size: (self.capacity(size), -size))


def saturating_backend(optimum: int, degrade_exponent: float = 1.0, **extra: Any) -> Workload:
    """Throughput rises linearly up to ``optimum`` slots, then falls as ``(optimum/c)**k``."""
    return replace(Workload(optimum=optimum, degrade_exponent=degrade_exponent), **extra)


def cpu_bound(cores: int, **extra: Any) -> Workload:
    """Throughput flat past ``cores`` slots, so latency grows linearly with the pool."""
    return replace(Workload(cores=cores), **extra)


def application_limited(arrival_rate: float, **extra: Any) -> Workload:
    """Tasks arrive at a fixed rate; with capacity to spare the pool is never full."""
    return replace(Workload(arrival_rate=arrival_rate), **extra)


@dataclass
class SimulatedWorker:
    """A worker serving a workload; each ``sample`` call advances its clock by one interval."""

    workload: Workload
    seed: int = 0
    backlog: float = 1_000_000.0  # tasks waiting at the start when no arrival rate is set
    clock: float = 0.0
    _random: random.Random = field(init=False, repr=False)
    _carry: float = field(default=0.0, init=False, repr=False)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        if self.workload.arrival_rate is not None:
            self.backlog = 0.0

    def sample(self, pool_size: int, interval_s: float) -> TunerSample:
        """Serve one interval at ``pool_size`` and report it as the tuner's runner would."""
        workload = self.workload
        factor = max(0.05, 1.0 + workload.noise * self._random.gauss(0.0, 1.0))
        capacity = workload.capacity(pool_size) * factor * interval_s
        available = self.backlog + (workload.arrival_rate or 0.0) * interval_s
        done = min(capacity, available)
        self.backlog = available - done
        busy = done / capacity if capacity > 0 else 0.0
        active = min(pool_size, math.floor(pool_size * busy + 0.5))
        completed = math.floor(done + self._carry)
        self._carry += done - completed
        effective = max(active, 1)
        rate = workload.capacity(effective) * factor
        latency_ms = 1000.0 * effective / rate if completed > 0 and rate > 0 else None
        waiting = math.floor(self.backlog)
        reserved = min(waiting, pool_size)
        self.clock += interval_s
        return TunerSample(
            at=self.clock,
            interval_s=interval_s,
            pool_size=pool_size,
            completed=completed,
            latency_ms=latency_ms,
            active=active,
            reserved=reserved,
            queued=waiting - reserved,
            rss_mb=workload.rss_mb(active),
            cpu_percent=100.0 * min(active, workload.cores) if workload.cores else 0.0,
        )


@dataclass
class Trajectory:
    """What a simulated run did, one entry per sample."""

    sizes: list[int] = field(default_factory=list)
    throughputs: list[float] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    samples: list[TunerSample] = field(default_factory=list)
    state: TunerState = field(default_factory=new_state)

    @property
    def final_size(self) -> int:
        """The pool size the last decision asked for."""
        return self.decisions[-1].target


def run(
    policy_fn: Policy,
    start_size: int,
    bounds: TunerBounds,
    seconds: float,
    interval_s: float,
    *,
    worker: SimulatedWorker,
    state: TunerState | None = None,
    report_delay_s: float = 0.0,
) -> Trajectory:
    """Drive ``policy_fn`` against ``worker`` for ``seconds``: sample, decide, apply the target.

    ``report_delay_s`` dates each change that much later, as the runner does for a worker whose
    figures reach Redis one metrics flush late: the interval after a change is then not a full
    sample of the new size, so each change costs two intervals, as it does on a real fleet.
    """
    trajectory = Trajectory(state=state if state is not None else new_state())
    size = start_size
    for _ in range(round(seconds / interval_s)):
        sample = worker.sample(size, interval_s)
        decision, trajectory.state = policy_fn(trajectory.state, sample, bounds)
        trajectory.sizes.append(size)
        trajectory.throughputs.append(sample.completed / interval_s)
        trajectory.decisions.append(decision)
        trajectory.samples.append(sample)
        if decision.target != size and report_delay_s:
            trajectory.state.changed_at = sample.at + report_delay_s
        size = decision.target
    return trajectory

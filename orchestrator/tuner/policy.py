"""Pick the next pool size of one worker from its latest sample: pure policy, no I/O.

After guards on memory, bounds and demand, a bracketing search on throughput against pool size:
from the best size measured so far, move away with a step that doubles while each move improves
(1, 2, 4, 8 slots: a few moves cross the whole range), then probe the middle of the wider gap
between the best size and its measured neighbours until both are one slot away, and hold there.
The smallest size within the tolerance of the top throughput counts as the best, so flat
throughput with rising latency (CPU-bound work past the cores) settles on the smaller pool.
A size is judged once a full interval after the change was seen there with enough completed
tasks (``min_completions``), not after a fixed wait: a clear signal moves on sooner.
A saturated model provider (every fleet-wide slot in use and calls waiting for one) turns the
search's grows into holds: more worker slots would only add calls waiting for the provider.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

_EPSILON = 1e-9
_SMOOTHING = 0.3  # floor of the weight a new sample gets in a size's running average
_RSS_POINTS = 8  # how many (pool size, rss with every slot busy) points the estimate keeps
_MOST_SAMPLES = 2  # a size is judged after this many full samples, however few tasks they saw
_REVISITS = 3  # samples of a neighbour within the noise of the best before settling anyway
_CONFIDENCE = 1.0  # standard errors a difference must exceed to count as a real one
_NOISE_WEIGHT = 0.2  # weight of a new deviation in the running estimate of measurement noise


@dataclass(frozen=True)
class TunerBounds:
    """Limits and settings of one worker's tuner."""

    min_concurrency: int
    max_concurrency: int
    memory_limit_mb: float
    memory_warning_threshold: float
    max_step: int = 8  # the largest move; the search's step doubles up to it
    cooldown_s: float = 2.0  # the least time between a change and judging the new size
    min_completions: int = 10  # tasks seen at a size before its throughput is trusted
    tolerance: float = 0.05  # a relative throughput gain above this counts as a rise
    reprobe_after_s: float = 120.0  # other sizes' measurements expire, so they get re-probed
    shift_tolerance: float = 0.3  # the current size's throughput moving this much: workload changed
    app_limited_ratio: float = 0.5  # in flight under this share of the pool, nothing waiting
    drift_after_s: float = 30.0  # application-limited this long: drift down one slot a cooldown
    default_rss_per_slot_mb: float | None = None  # until two sizes were seen with every slot busy

    def __post_init__(self) -> None:
        if not 1 <= self.min_concurrency <= self.max_concurrency or self.max_step < 1:
            raise ValueError(f"{self}: need 1 <= min_concurrency <= max_concurrency, max_step >= 1")

    @property
    def memory_line_mb(self) -> float:
        """The projected RSS the pool never grows past (limit times warning threshold)."""
        return self.memory_limit_mb * self.memory_warning_threshold


@dataclass(frozen=True)
class ProviderSlots:
    """A model provider's fleet-wide slots when the sample was taken."""

    provider: str
    in_use: int
    limit: int
    waiting: int = 0

    @property
    def saturated(self) -> bool:
        """Every slot in use and calls waiting for one."""
        return self.in_use >= self.limit and self.waiting > 0


@dataclass(frozen=True)
class TunerSample:
    """What one worker did over one interval, as the runner measured it."""

    at: float
    interval_s: float
    pool_size: int
    completed: int
    latency_ms: float | None
    active: int
    reserved: int
    queued: int
    rss_mb: float
    cpu_percent: float = 0.0
    providers: tuple[ProviderSlots, ...] = ()


@dataclass
class SizeRecord:
    """What one pool size did: smoothed throughput and latency, and when it was last measured."""

    throughput: float
    latency_ms: float | None
    samples: int
    at: float
    reference: float  # throughput when first measured, to notice a changed workload
    completed: int = 0  # tasks counted over the full samples averaged in


@dataclass
class TunerState:
    """One worker's tuner memory between decisions; plain data, JSON-able via ``asdict``."""

    target: int | None = None
    changed_at: float | None = None
    changed_from: int | None = None
    records: dict[str, SizeRecord] = field(default_factory=dict)
    rss_by_size: dict[str, float] = field(default_factory=dict)
    app_limited_since: float | None = None
    best_size: int | None = None
    best_throughput: float = 0.0
    noise: float | None = None  # relative deviation of one sample from its size's average

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TunerState:
        """Rebuild a state from ``asdict`` output, also after a JSON round trip."""
        records = {str(key): SizeRecord(**value) for key, value in data["records"].items()}
        return cls(**{**data, "records": records, "rss_by_size": dict(data["rss_by_size"])})


@dataclass(frozen=True)
class Decision:
    """The pool size to apply next, and one line saying why."""

    current: int
    target: int
    action: str  # "grow" | "shrink" | "hold"
    reason: str
    rule: str = "climb"  # clamp, memory, pool, cooldown, demand, provider or climb


def new_state() -> TunerState:
    """A tuner state for a worker nothing is known about yet."""
    return TunerState()


def next_concurrency(
    state: TunerState, sample: TunerSample, bounds: TunerBounds
) -> tuple[Decision, TunerState]:
    """Decide the pool size after ``sample``; return the decision and the new state."""
    state = TunerState.from_dict(asdict(state))
    size = min(max(sample.pool_size, bounds.min_concurrency), bounds.max_concurrency)
    if sample.active >= sample.pool_size > 0:  # a slot costs its process and a task's memory
        state.rss_by_size.pop(str(sample.pool_size), None)
        state.rss_by_size[str(sample.pool_size)] = sample.rss_mb
        for key in list(state.rss_by_size)[:-_RSS_POINTS]:
            del state.rss_by_size[key]
    urgent = _guard(state, sample, size, bounds)
    if urgent is not None:
        return urgent
    waiting = sample.reserved + sample.queued
    demand_bound = waiting == 0 and sample.active < size
    app_limited = waiting == 0 and sample.active < bounds.app_limited_ratio * size
    full = state.changed_at is None or sample.at - sample.interval_s >= state.changed_at - _EPSILON
    # Throughput with nothing waiting measures demand, not what this size can do.
    note = _record(state, size, sample, bounds) if full and not demand_bound else ""
    _forget(state, size, sample.at, bounds)
    since = state.app_limited_since if state.app_limited_since is not None else sample.at
    state.app_limited_since = since if app_limited else None
    elapsed = sample.at - state.changed_at if state.changed_at is not None else math.inf
    if not full or elapsed < bounds.cooldown_s - _EPSILON:
        since_change = f"since {state.changed_from}->{size}"
        detail = f"cooling down, {elapsed:.1f} of {bounds.cooldown_s:.1f} s {since_change}"
        return _decide(state, sample, size, size, "cooldown", detail)
    if demand_bound:
        floor = max(bounds.min_concurrency, math.ceil(sample.active / bounds.app_limited_ratio))
        limited_for = sample.at - since
        how = f"{sample.active} in flight of {size}, nothing reserved or queued"
        if app_limited and limited_for >= bounds.drift_after_s - _EPSILON and size - 1 >= floor:
            detail = f"application-limited for {limited_for:.0f} s ({how}), drifting to {floor}"
            return _decide(state, sample, size, size - 1, "demand", detail)
        kind = "application-limited" if app_limited else "nothing waiting"
        return _decide(state, sample, size, size, "demand", f"{kind} ({how}), not growing")
    saturated = next((slots for slots in sample.providers if slots.saturated), None)
    decided, searched = _search(TunerState.from_dict(asdict(state)), sample, size, bounds, note)
    if saturated is None or decided.action != "grow":
        return decided, searched
    detail = (
        f"provider {saturated.provider} saturated ({saturated.in_use}/{saturated.limit} slots), "
        f"{saturated.waiting} calls waiting; growing to {decided.target} would only add waiters"
    )
    return _decide(state, sample, size, size, "provider", detail)


def _guard(
    state: TunerState, sample: TunerSample, size: int, bounds: TunerBounds
) -> tuple[Decision, TunerState] | None:
    """The rules that act at once, cooldown or not: memory over the line, bounds, a moved pool."""
    reported, line = sample.pool_size, bounds.memory_line_mb
    per_slot = _rss_per_slot(state, sample, bounds)
    share, limit = bounds.memory_warning_threshold, bounds.memory_limit_mb
    over = f"rss {sample.rss_mb:.0f} MB over {line:.0f} MB ({share:.0%} of {limit:.0f} MB)"
    if sample.rss_mb > line and size > bounds.min_concurrency:
        needed = max(1, math.ceil((sample.rss_mb - line) / per_slot - _EPSILON))
        target = max(bounds.min_concurrency, size - needed)
        detail = f"{over}, ~{per_slot:.0f} MB a busy slot"
        return _decide(state, sample, reported, target, "memory", detail)
    if size != reported:
        detail = f"pool outside [{bounds.min_concurrency}, {bounds.max_concurrency}]"
        return _decide(state, sample, reported, size, "clamp", detail)
    if sample.rss_mb > line:
        return _decide(state, sample, size, size, "memory", f"{over}, already at the minimum")
    if state.target is not None and reported != state.target:
        expected, state.changed_from, state.changed_at = state.target, state.target, sample.at
        state.records.pop(str(size), None)
        detail = f"pool is at {size}, not the {expected} asked for"
        return _decide(state, sample, size, size, "pool", detail)
    return None


def _search(
    state: TunerState, sample: TunerSample, size: int, bounds: TunerBounds, note: str
) -> tuple[Decision, TunerState]:
    """A bracketing search over measured sizes: double the step away from the best size while
    each move keeps improving, then halve the gaps around it, then hold there."""
    here = state.records.get(str(size))
    if here is None:
        return _decide(state, sample, size, size, "climb", f"{note}no full sample at {size} yet")
    if here.completed < bounds.min_completions and here.samples < _MOST_SAMPLES:
        detail = f"measuring {size}: {here.completed} of {bounds.min_completions} tasks seen"
        return _decide(state, sample, size, size, "cooldown", note + detail)
    line, floor = bounds.memory_line_mb, bounds.min_concurrency
    per_slot = _rss_per_slot(state, sample, bounds)
    fits = sample.active + math.floor((line - sample.rss_mb) / per_slot + _EPSILON)
    ceiling = max(floor, min(bounds.max_concurrency, fits))
    limit = max(ceiling, size)
    records = {int(k): r for k, r in state.records.items() if int(k) <= limit}
    rates = {n: record.throughput for n, record in records.items()}
    noise = state.noise if state.noise is not None else bounds.tolerance

    def clearly(better: int, than: int) -> bool:
        """Better by more than the tolerance and by more than the measurements' noise."""
        counts = (min(records[n].samples, _MOST_SAMPLES * 2) for n in (better, than))
        error = _CONFIDENCE * noise * math.sqrt(sum(1.0 / count for count in counts))
        return rates[better] > rates[than] * (1.0 + max(bounds.tolerance, error))

    gain = 1.0 + bounds.tolerance
    best = _best(rates, size, gain, records[size].samples > 1, clearly)
    lower = max((n for n in rates if n < best), default=None)
    upper = min((n for n in rates if n > best), default=None)
    rose = lower is None or clearly(best, lower)
    # Each move doubles the distance from the size below (or above) the best: 1, 2, 4, 8, ...
    if upper is None and best < ceiling and rose:
        probe = min(best + (2 * (best - lower) if lower is not None else 1), ceiling)
        why = f"{_seen(rates, best)}, nothing measured above; probing {probe}"
    elif lower is None and best > floor:
        probe = max(best - (2 * (upper - best) if upper is not None else 1), floor)
        capped = f", memory caps it at {ceiling}" if upper is None and best >= ceiling else ""
        why = f"{_seen(rates, best)}{capped}, nothing measured below; probing {probe}"
    else:
        high = upper - best - 1 if upper is not None else 0
        low = best - lower - 1 if lower is not None else 0
        better_above = upper is not None and (lower is None or rates[upper] > rates[lower])
        # A neighbour apart by more than the tolerance but not by more than the noise: measure
        # it again (a few times at most) before settling on one side of it, the better first.
        unsure = sorted(
            (
                n
                for n in (lower, upper)
                if n is not None
                and records[n].samples < _REVISITS
                and max(rates[n], rates[best]) > min(rates[n], rates[best]) * gain
                and not clearly(best, n)
                and not clearly(n, best)
            ),
            key=lambda n: -rates[n],
        )
        if high == low == 0 and unsure and size == best:
            probe = unsure[0]
            why = f"{_seen(rates, best)}, {_seen(rates, probe)} within the noise; measuring again"
        elif high == low == 0:
            probe, why = best, _held(rates, best, lower, upper, ceiling, bounds)
        elif upper is not None and (high > low or (high == low and better_above)):
            probe = best + (upper - best) // 2
            why = f"{_seen(rates, best)}, {_seen(rates, upper)}; probing {probe} between"
        else:
            assert lower is not None  # low > 0 here
            probe = best - (best - lower) // 2
            why = f"{_seen(rates, best)}, {_seen(rates, lower)}; probing {probe} between"
    target = min(max(probe, size - bounds.max_step), size + bounds.max_step)
    if target > size:
        rss = sample.rss_mb + per_slot * max(0, target - sample.active)
        why += f"; rss {rss:.0f} MB projected at {target} (line {line:.0f} MB)"
    elif target < size and best < size and size in rates:
        why += f", {_latency(here.latency_ms, state.records[str(best)].latency_ms)} at {size}"
    return _decide(state, sample, size, target, "climb", note + why)


def _best(
    rates: dict[int, float],
    size: int,
    gain: float,
    settled: bool,
    clearly: Callable[[int, int], bool],
) -> int:
    """The smallest size within the tolerance of the top throughput. A size held for more than
    one sample gives way to a larger one only when that one is clearly better: no flapping on
    noise between sizes that do the same."""
    top = max(rates.values())
    plain = min(n for n, rate in rates.items() if rate * gain >= top)
    if settled and plain > size and not clearly(plain, size):
        return size
    return plain


def _seen(rates: dict[int, float], size: int) -> str:
    return f"{size} did {rates[size]:.1f}/s"


def _held(
    rates: dict[int, float],
    best: int,
    lower: int | None,
    upper: int | None,
    ceiling: int,
    bounds: TunerBounds,
) -> str:
    """Why the best size is where the search ends: its neighbours, or a bound."""
    if upper is not None:
        above = f"{_seen(rates, upper)}"
    elif best >= bounds.max_concurrency:
        above = f"at the maximum {bounds.max_concurrency}"
    elif best >= ceiling:
        above = f"memory caps it at {ceiling}"
    else:
        above = f"too little gain over {lower} to probe above"
    below = _seen(rates, lower) if lower is not None else f"at the minimum {best}"
    return f"best {_seen(rates, best)}, {above}, {below}"


def _record(state: TunerState, size: int, sample: TunerSample, bounds: TunerBounds) -> str:
    """Fold the sample into the size's running average; say so when the workload moved."""
    throughput = sample.completed / sample.interval_s if sample.interval_s > 0 else 0.0
    fresh = SizeRecord(throughput, sample.latency_ms, 0, sample.at, throughput)
    record = state.records.setdefault(str(size), fresh)
    if record.samples and record.throughput > 0:
        deviation = (throughput - record.throughput) ** 2 / record.throughput**2
        variance = (state.noise if state.noise is not None else bounds.tolerance) ** 2
        state.noise = math.sqrt(variance + _NOISE_WEIGHT * (deviation - variance))
    record.samples += 1
    record.completed += sample.completed
    weight = max(1.0 / record.samples, _SMOOTHING)
    record.throughput += weight * (throughput - record.throughput)
    if sample.latency_ms is not None:
        previous = sample.latency_ms if record.latency_ms is None else record.latency_ms
        record.latency_ms = previous + weight * (sample.latency_ms - previous)
    record.at = sample.at
    if abs(record.throughput - record.reference) <= bounds.shift_tolerance * record.reference:
        return ""
    moved = f"{record.reference:.1f}/s -> {record.throughput:.1f}/s"
    record.reference = record.throughput
    state.records = {str(size): record}
    return f"throughput at {size} moved {moved}, re-probing; "


def _forget(state: TunerState, size: int, now: float, bounds: TunerBounds) -> None:
    """Drop other sizes measured too long ago, and name the best size still remembered."""
    since = now - bounds.reprobe_after_s
    state.records = {k: r for k, r in state.records.items() if k == str(size) or r.at >= since}
    if state.records:  # the best: the smallest size within the tolerance of the top throughput
        top = max(record.throughput for record in state.records.values()) / (1 + bounds.tolerance)
        state.best_size = min(int(k) for k, r in state.records.items() if r.throughput >= top)
        state.best_throughput = state.records[str(state.best_size)].throughput


def _rss_per_slot(state: TunerState, sample: TunerSample, bounds: TunerBounds) -> float:
    """RSS one more busy slot adds: the slope over pool sizes seen all busy, else a safe guess."""
    if len(state.rss_by_size) >= 2:
        sizes = [float(key) for key in state.rss_by_size]
        slope = statistics.linear_regression(sizes, list(state.rss_by_size.values())).slope
        if slope > _EPSILON:
            return slope
    if bounds.default_rss_per_slot_mb:
        return bounds.default_rss_per_slot_mb
    # All of the RSS counted against the busy slots over-estimates a slot: the safe side.
    return max(sample.rss_mb / max(sample.active, 1), 1.0)


def _decide(
    state: TunerState, sample: TunerSample, current: int, target: int, rule: str, detail: str
) -> tuple[Decision, TunerState]:
    if target == current:
        state.target = target
        return Decision(current, target, "hold", f"hold {current}: {detail}", rule), state
    action = "grow" if target > current else "shrink"
    state.changed_from, state.changed_at, state.target = current, sample.at, target
    return Decision(current, target, action, f"{action} {current}->{target}: {detail}", rule), state


def _latency(here: float | None, below: float | None) -> str:
    if here is None or below is None or below <= 0:
        return "latency unknown"
    if abs(here / below - 1.0) < 0.05:
        return f"latency flat ({here:.0f} ms)"
    return f"latency {here / below - 1.0:+.0%} ({below:.0f} -> {here:.0f} ms)"

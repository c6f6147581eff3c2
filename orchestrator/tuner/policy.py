"""Pick the next pool size of one worker from its latest sample: pure policy, no I/O.

Hill climbing on throughput against pool size (each size against its nearest measured
neighbours within a step, and one-slot probes between two sizes a step apart when the peak may
lie between them), after guards on memory, bounds and demand.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

_EPSILON = 1e-9
_SMOOTHING = 0.3  # floor of the weight a new sample gets in a size's running average
_RSS_POINTS = 8  # how many (pool size, rss with every slot busy) points the estimate keeps


@dataclass(frozen=True)
class TunerBounds:
    """Limits and settings of one worker's tuner."""

    min_concurrency: int
    max_concurrency: int
    memory_limit_mb: float
    memory_warning_threshold: float
    max_step: int = 2
    cooldown_s: float = 6.0
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


@dataclass
class SizeRecord:
    """What one pool size did: smoothed throughput and latency, and when it was last measured."""

    throughput: float
    latency_ms: float | None
    samples: int
    at: float
    reference: float  # throughput when first measured, to notice a changed workload


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
    rule: str = "climb"  # "clamp" | "memory" | "pool" | "cooldown" | "demand" | "climb"


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
    return _climb(state, sample, size, bounds, note)


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


def _climb(
    state: TunerState, sample: TunerSample, size: int, bounds: TunerBounds, note: str
) -> tuple[Decision, TunerState]:
    """Hill climbing: move to a clearly better neighbour, step back, probe, or hold."""
    here = state.records.get(str(size))
    if here is None:
        return _decide(state, sample, size, size, "climb", f"{note}no full sample at {size} yet")
    line, rate, gain = bounds.memory_line_mb, here.throughput, 1.0 + bounds.tolerance
    per_slot = _rss_per_slot(state, sample, bounds)
    fits = sample.active + math.floor((line - sample.rss_mb) / per_slot + _EPSILON)
    ceiling = min(bounds.max_concurrency, fits)
    # A neighbour is the nearest size measured within a step, else a full step away.
    up = _neighbour(state, size, min(size + bounds.max_step, ceiling)) if ceiling > size else None
    down = _neighbour(state, size, max(size - bounds.max_step, bounds.min_concurrency))
    above = state.records.get(str(up)) if up is not None else None
    below = state.records.get(str(down)) if down < size else None
    below_latency = below.latency_ms if below is not None else None
    latency = _latency(here.latency_ms, below_latency)
    rose = (here.latency_ms or 0.0) > (below_latency or math.inf) * gain

    def projected(slots: int) -> str:
        rss = sample.rss_mb + per_slot * max(0, slots - sample.active)
        return f"rss {rss:.0f} MB projected at {slots} (line {line:.0f} MB)"

    if up is not None and above is not None and above.throughput > rate * gain:
        change = _percent(above.throughput, rate)
        detail = f"{up} did {above.throughput:.1f}/s, {change} on {rate:.1f}/s at {size}"
        return _decide(state, sample, size, up, "climb", f"{note}{detail}; {projected(up)}")
    # Stepping back needs less than half the tolerance, so a gain inside the band is kept.
    if (
        below is not None
        and rate <= below.throughput * (1.0 + bounds.tolerance / 2)
        and (rate < below.throughput or rose)
    ):
        detail = f"{rate:.1f}/s at {size} is no gain on {below.throughput:.1f}/s at {down}"
        return _decide(state, sample, size, down, "climb", f"{note}{detail}, {latency}")
    if up is not None and above is None and (below is None or rate > below.throughput * gain):
        if below is None:
            detail = f"{rate:.1f}/s at {size}, nothing measured at {up}"
        else:
            change = _percent(rate, below.throughput)
            detail = f"throughput {change} at {size} ({rate:.1f}/s) over {down}, {latency}"
        return _decide(state, sample, size, up, "climb", f"{note}{detail}; {projected(up)}")
    if up is not None:
        blocked = (
            f"{up} did {above.throughput:.1f}/s" if above else f"too little gain to probe {up}"
        )
    elif size >= bounds.max_concurrency:
        blocked = f"at the maximum {bounds.max_concurrency}"
    else:
        blocked = f"memory: {projected(size + 1)}"
    if down < size and below is None:
        detail = f"{rate:.1f}/s at {size}, {blocked}; probing {down}"
        return _decide(state, sample, size, down, "climb", note + detail)
    between = _between(state, sample, size, bounds, (up, above), (down, below))
    if between is not None and (up is None or above is not None):
        return _decide(state, sample, size, between[0], "climb", note + between[1])
    lower = f"{down} did {below.throughput:.1f}/s" if below is not None else "at the minimum"
    best = f"best seen {state.best_size} ({state.best_throughput:.1f}/s)"
    detail = f"{note}{rate:.1f}/s here, {blocked}, {lower}; {best}"
    return _decide(state, sample, size, size, "climb", detail)


def _between(
    state: TunerState,
    sample: TunerSample,
    size: int,
    bounds: TunerBounds,
    *sides: tuple[int | None, SizeRecord | None],
) -> tuple[int, str] | None:
    """A size one slot toward a measured neighbour several slots away when the peak may lie
    between: both neighbours clearly worse, or (after holding two cooldowns) this size and that
    one level after a rise in proportion to the pool below them. Only once this size's latest
    figure agrees with its average."""
    rate, gain = state.records[str(size)].throughput, 1.0 + bounds.tolerance
    latest = sample.completed / sample.interval_s if sample.interval_s > 0 else 0.0
    measured = [(record.throughput, n) for n, record in sides if n is not None and record]
    if abs(latest - rate) > bounds.tolerance * rate:
        return None
    far = [(throughput, n) for throughput, n in measured if abs(n - size) > 1]
    if far and all(rate > throughput * gain for throughput, _ in measured):
        throughput, toward = max(far)
        finer = size + (1 if toward > size else -1)
        return finer, f"{rate:.1f}/s at {size}, {toward} did {throughput:.1f}/s; probing {finer}"
    held = sample.at - state.changed_at if state.changed_at is not None else math.inf
    for throughput, n in far if held >= 2 * bounds.cooldown_s - _EPSILON else []:
        if not rate / gain <= throughput <= rate * gain:
            continue
        low = min(n, size)
        lower = _neighbour(state, low, max(low - bounds.max_step, bounds.min_concurrency))
        base = state.records.get(str(lower)) if lower < low else None
        level = state.records[str(low)].throughput
        if base is not None and level >= base.throughput * (1 + 0.75 * (low - lower) / lower):
            finer = size + (1 if n > size else -1)
            detail = (
                f"{rate:.1f}/s at {size}, {n} level ({throughput:.1f}/s) after rising in "
                f"proportion from {lower}; probing {finer}"
            )
            return finer, detail
    return None


def _neighbour(state: TunerState, size: int, far: int) -> int:
    """The measured size nearest to ``size`` on the way to ``far`` (inclusive), else ``far``."""
    step = 1 if far > size else -1
    for candidate in range(size + step, far + step, step):
        if str(candidate) in state.records:
            return candidate
    return far


def _record(state: TunerState, size: int, sample: TunerSample, bounds: TunerBounds) -> str:
    """Fold the sample into the size's running average; say so when the workload moved."""
    throughput = sample.completed / sample.interval_s if sample.interval_s > 0 else 0.0
    fresh = SizeRecord(throughput, sample.latency_ms, 0, sample.at, throughput)
    record = state.records.setdefault(str(size), fresh)
    record.samples += 1
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
    state.records.pop(str(target), None)
    return Decision(current, target, action, f"{action} {current}->{target}: {detail}", rule), state


def _latency(here: float | None, below: float | None) -> str:
    if here is None or below is None or below <= 0:
        return "latency unknown"
    if abs(here / below - 1.0) < 0.05:
        return f"latency flat ({here:.0f} ms)"
    return f"latency {here / below - 1.0:+.0%} ({below:.0f} -> {here:.0f} ms)"


def _percent(new: float, old: float) -> str:
    return f"{new / old - 1.0:+.0%}" if old > 0 else "up from nothing"

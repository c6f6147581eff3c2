"""The tuner benchmark's workload and measurements: a backlog of ``fetch`` tasks kept topped up,
a timeline of the backend's throughput, the worker's pool size and its tree's RSS, and the
figures read from a timeline (seconds to a threshold, steady throughput, pool spread).

Throughput is counted where it happens, at the backend (requests served), not from the
worker's metrics: one worker runs at a time, every task is one request.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psutil
import redis

from orchestrator.harness.backend import BackendProcess
from workers.core.keys import Keys
from workers.core.names import DEFAULT_QUEUE, skill_task_name
from workers.core.settings import Settings

FETCH_TASK = skill_task_name("fetch")


class Backlog:
    """Keeps between ``low`` and ``high`` fetch tasks queued for a worker, from a thread."""

    def __init__(self, app: Any, settings: Settings, url: str, low: int, high: int) -> None:
        self.app = app
        self.url = url
        self.low, self.high = low, high
        self.client = redis.Redis.from_url(settings.effective_broker_url)
        self.queue = Keys(settings.key_prefix).broker_queue(DEFAULT_QUEUE)
        self.published = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-backlog", daemon=True)

    def start(self) -> Backlog:
        self.top_up()
        self._thread.start()
        return self

    def top_up(self) -> None:
        queued = int(self.client.llen(self.queue))
        if queued >= self.low:
            return
        with self.app.producer_or_acquire() as producer:
            for _ in range(self.high - queued):
                self.app.send_task(
                    FETCH_TASK, kwargs={"url": self.url}, ignore_result=True, producer=producer
                )
        self.published += self.high - queued

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            self.top_up()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        self.client.close()


def tree_rss_mb(pid: int) -> float:
    """RSS of a process and all its descendants, in MB (0 when it is gone)."""
    try:
        main = psutil.Process(pid)
        members = [main, *main.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0
    for process in members:
        try:
            total += process.memory_info().rss
        except psutil.Error:
            continue
    return total / 1_048_576


def live_slots(settings: Settings, hostname: str) -> Callable[[], int | None]:
    """A probe of the slots a worker runs now, from the row its main process writes."""
    client = redis.Redis.from_url(settings.state_url)
    key = Keys(settings.key_prefix).metrics_worker(hostname)

    def probe() -> int | None:
        raw = client.hget(key, "live_slots")
        return None if raw is None else int(raw)

    return probe


@dataclass(frozen=True)
class Point:
    """One moment of a run: seconds since its start, requests served so far, slots, RSS."""

    t: float
    served: int
    slots: int | None
    rss_mb: float


def record(
    backend: BackendProcess,
    seconds: float,
    slots: Callable[[], int | None],
    pid: int,
    every_s: float = 1.0,
    until: Callable[[list[Point]], bool] | None = None,
) -> list[Point]:
    """Sample the run every ``every_s`` for ``seconds`` (or until ``until(points)`` is true);
    the first point is its start."""
    points: list[Point] = []
    started = time.monotonic()
    while True:
        served = int(backend.stats()["served"])
        elapsed = time.monotonic() - started
        points.append(Point(round(elapsed, 3), served, slots(), round(tree_rss_mb(pid), 1)))
        if elapsed >= seconds or (until is not None and until(points)):
            return points
        time.sleep(max(0.0, every_s * len(points) - (time.monotonic() - started)))


def windows(backend: BackendProcess, window_s: float, count: int) -> tuple[list[float], float]:
    """Throughput (requests a second) over ``count`` back-to-back windows of ``window_s``, and
    the mean number of requests in flight at the backend over all of them."""
    rates: list[float] = []
    first = before = backend.stats()
    for _ in range(count):
        time.sleep(window_s)
        after = backend.stats()
        rates.append((after["served"] - before["served"]) / (after["at"] - before["at"]))
        before = after
    arrivals = before["arrivals"] - first["arrivals"]
    inflight = (before["inflight_sum"] - first["inflight_sum"]) / arrivals if arrivals else 0.0
    return rates, inflight


def next_refinement(measured: dict[int, list[float]]) -> int | None:
    """Bisect toward the peak: the middle of the gap between the best size and its better
    measured neighbour (None once both neighbours are one slot away)."""

    def rate(size: int) -> float:
        return statistics.median(measured[size])

    sizes = sorted(measured)
    best = max(sizes, key=rate)
    at = sizes.index(best)
    gaps = [
        (rate(other), (other + best) // 2)
        for other in sizes[max(0, at - 1) : at + 2]
        if abs(other - best) > 1
    ]
    return max(gaps)[1] if gaps else None


def rate_between(points: list[Point], start_s: float, end_s: float) -> float:
    """Requests a second from the first point at or after ``start_s`` to the last before
    ``end_s``."""
    inside = [point for point in points if start_s - 1e-6 <= point.t <= end_s + 1e-6]
    if len(inside) < 2 or inside[-1].t <= inside[0].t:
        return 0.0
    return (inside[-1].served - inside[0].served) / (inside[-1].t - inside[0].t)


def rolling(points: list[Point], window_s: float) -> list[tuple[float, float]]:
    """(t, requests a second over the ``window_s`` before t) for every point past the first
    window."""
    return [
        (point.t, round(rate_between(points, point.t - window_s, point.t), 2))
        for point in points
        if point.t >= window_s - 1e-6
    ]


def seconds_to(points: list[Point], window_s: float, threshold: float) -> float | None:
    """When the rolling throughput first reached ``threshold`` (None: never)."""
    for t, rate in rolling(points, window_s):
        if rate >= threshold:
            return t
    return None


def steady(points: list[Point], from_s: float) -> dict[str, Any]:
    """Throughput, slots and RSS over the steady part of a run (from ``from_s`` to its end)."""
    end = points[-1].t
    part = [point for point in points if point.t >= from_s - 1e-6]
    slots = [point.slots for point in part if point.slots is not None]
    return {
        "from_s": from_s,
        "to_s": end,
        "per_s": round(rate_between(points, from_s, end), 2),
        "pool_spread": {
            "min": min(slots) if slots else None,
            "max": max(slots) if slots else None,
            "stdev": round(statistics.pstdev(slots), 3) if slots else None,
            "median": statistics.median(slots) if slots else None,
        },
    }


def timeline(points: list[Point], window_s: float) -> list[list[float | int | None]]:
    """[t, requests a second over the window before t, slots, tree RSS MB] for the JSON."""
    rates = dict(rolling(points, window_s))
    return [[point.t, rates.get(point.t), point.slots, point.rss_mb] for point in points]

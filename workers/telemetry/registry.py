"""MetricsRegistry: counters, gauges, histograms and timers, exported as Prometheus text.

The guide's API::

    registry = MetricsRegistry()
    requests = registry.create_counter(name="requests", description="Requests served")
    latency = registry.create_timer(name="request_seconds", description="Request latency")
    requests.increment()
    with latency.time():
        ...

The hot path is a lock and an addition (a timer adds two ``perf_counter`` calls and a bisect);
nothing touches prometheus-client until a scrape, when a collector registered in this
registry's own ``CollectorRegistry`` reads the values.
"""

from __future__ import annotations

import math
import re
import threading
import time
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from workers.core.errors import ConfigError

_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

# Seconds; prometheus-client's defaults widened to the task durations a fleet sees.
DEFAULT_BUCKETS_S: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
)


def _check_name(name: str, labels: Sequence[str]) -> None:
    if not _NAME.match(name):
        raise ConfigError(
            f"invalid metric name {name!r}: use letters, digits, '_' and ':' "
            "(not starting with a digit), for example 'tasks_done'"
        )
    for label in labels:
        if not _LABEL.match(label) or label.startswith("__"):
            raise ConfigError(f"invalid label name {label!r} for metric {name!r}")


class _Metric:
    """Shared parts: name, description, label names and labelled children."""

    kind = "untyped"

    def __init__(self, name: str, description: str, labels: Sequence[str] = ()) -> None:
        self.name = name
        self.description = description
        self.label_names = tuple(labels)
        self._lock = threading.Lock()
        self._children: dict[tuple[str, ...], Any] = {}

    def labels(self, *values: str, **named: str) -> Any:
        """The child for one combination of label values (created on first use)."""
        if named:
            if values:
                raise ConfigError(f"metric {self.name!r}: pass label values by name or position")
            try:
                values = tuple(str(named[label]) for label in self.label_names)
            except KeyError as exc:
                raise ConfigError(
                    f"metric {self.name!r} needs labels {', '.join(self.label_names)}; "
                    f"got {', '.join(named)}"
                ) from exc
        if len(values) != len(self.label_names):
            raise ConfigError(
                f"metric {self.name!r} needs {len(self.label_names)} label values "
                f"({', '.join(self.label_names)}), got {len(values)}"
            )
        key = tuple(str(value) for value in values)
        child = self._children.get(key)
        if child is None:
            with self._lock:
                child = self._children.setdefault(key, self._new_child())
        return child

    def _new_child(self) -> Any:
        return type(self)(self.name, self.description)

    def _series(self) -> Iterator[tuple[tuple[str, ...], Any]]:
        if self.label_names:
            yield from list(self._children.items())
        else:
            yield (), self

    def family(self) -> Metric:
        raise NotImplementedError


class Counter(_Metric):
    """A value that only goes up."""

    kind = "counter"

    def __init__(self, name: str, description: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, description, labels)
        self._value = 0.0

    def increment(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError(f"counter {self.name!r} cannot decrease (amount {amount})")
        with self._lock:
            self._value += amount

    inc = increment

    @property
    def value(self) -> float:
        return self._value

    def family(self) -> Metric:
        name = self.name[: -len("_total")] if self.name.endswith("_total") else self.name
        family = CounterMetricFamily(name, self.description, labels=self.label_names)
        for values, child in self._series():
            family.add_metric(list(values), child._value)
        return family


class Gauge(_Metric):
    """A value that goes up and down."""

    kind = "gauge"

    def __init__(self, name: str, description: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, description, labels)
        self._value = 0.0

    def set(self, value: float) -> None:
        self._value = float(value)  # one store: atomic without the lock

    def increment(self, amount: float = 1.0) -> None:
        with self._lock:
            self._value += amount

    def decrement(self, amount: float = 1.0) -> None:
        with self._lock:
            self._value -= amount

    inc = increment
    dec = decrement

    @property
    def value(self) -> float:
        return self._value

    def family(self) -> Metric:
        family = GaugeMetricFamily(self.name, self.description, labels=self.label_names)
        for values, child in self._series():
            family.add_metric(list(values), child._value)
        return family


class Histogram(_Metric):
    """Observations counted into fixed buckets (upper bounds), with their count and sum."""

    kind = "histogram"

    def __init__(
        self,
        name: str,
        description: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = DEFAULT_BUCKETS_S,
    ) -> None:
        super().__init__(name, description, labels)
        bounds = sorted(float(bound) for bound in buckets if not math.isinf(bound))
        if not bounds:
            raise ConfigError(f"histogram {name!r} needs at least one finite bucket bound")
        self.bounds = tuple(bounds)
        self._counts = [0] * (len(self.bounds) + 1)  # last slot: +Inf
        self._sum = 0.0
        self._count = 0

    def _new_child(self) -> Histogram:
        return Histogram(self.name, self.description, buckets=self.bounds)

    def observe(self, value: float) -> None:
        index = bisect_left(self.bounds, value)
        with self._lock:
            self._counts[index] += 1
            self._sum += value
            self._count += 1

    @property
    def count(self) -> int:
        return self._count

    @property
    def sum(self) -> float:
        return self._sum

    def snapshot(self) -> tuple[list[int], float, int]:
        with self._lock:
            return list(self._counts), self._sum, self._count

    def family(self) -> Metric:
        family = HistogramMetricFamily(self.name, self.description, labels=self.label_names)
        for values, child in self._series():
            counts, total, _ = child.snapshot()
            cumulative = 0
            buckets: list[tuple[str, float]] = []
            for bound, count in zip([*child.bounds, math.inf], counts, strict=True):
                cumulative += count
                buckets.append(("+Inf" if math.isinf(bound) else repr(bound), cumulative))
            family.add_metric(list(values), buckets, total)
        return family


class _Timing:
    """One timed block of a Timer (a context manager; cheap to create)."""

    __slots__ = ("_started", "_target")

    def __init__(self, target: Histogram) -> None:
        self._target = target
        self._started = 0.0

    def __enter__(self) -> _Timing:
        self._started = time.perf_counter()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._target.observe(time.perf_counter() - self._started)


class Timer(Histogram):
    """A histogram of durations in seconds: ``with timer.time(): ...``."""

    def _new_child(self) -> Timer:
        return Timer(self.name, self.description, buckets=self.bounds)

    def time(self) -> _Timing:
        return _Timing(self)

    def record(self, seconds: float) -> None:
        self.observe(seconds)


class _Collector:
    """Reads a MetricsRegistry at scrape time (prometheus-client's collector protocol)."""

    def __init__(self, registry: MetricsRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterable[Metric]:
        for metric in self._registry.metrics():
            yield metric.family()

    def describe(self) -> Iterable[Metric]:
        return []


class MetricsRegistry:
    """Named metrics of one process or component, with their own Prometheus registry."""

    def __init__(self, namespace: str = "") -> None:
        if namespace:
            _check_name(namespace, ())
        self.namespace = namespace
        self._metrics: dict[str, _Metric] = {}
        self._lock = threading.Lock()
        self.collector_registry = CollectorRegistry(auto_describe=False)
        self.collector_registry.register(_Collector(self))

    def _add(self, metric: _Metric) -> Any:
        with self._lock:
            existing = self._metrics.get(metric.name)
            if existing is not None:
                if type(existing) is not type(metric) or (
                    existing.label_names != metric.label_names
                ):
                    raise ConfigError(
                        f"metric {metric.name!r} already exists as a {existing.kind} with "
                        f"labels {existing.label_names}; pick another name"
                    )
                return existing
            self._metrics[metric.name] = metric
            return metric

    def _full(self, name: str) -> str:
        return f"{self.namespace}_{name}" if self.namespace else name

    def create_counter(
        self, name: str, description: str = "", labels: Sequence[str] = ()
    ) -> Counter:
        full = self._full(name)
        _check_name(full, labels)
        return self._add(Counter(full, description or full, labels))  # type: ignore[no-any-return]

    def create_gauge(self, name: str, description: str = "", labels: Sequence[str] = ()) -> Gauge:
        full = self._full(name)
        _check_name(full, labels)
        return self._add(Gauge(full, description or full, labels))  # type: ignore[no-any-return]

    def create_histogram(
        self,
        name: str,
        description: str = "",
        labels: Sequence[str] = (),
        buckets: Sequence[float] = DEFAULT_BUCKETS_S,
    ) -> Histogram:
        full = self._full(name)
        _check_name(full, labels)
        metric = Histogram(full, description or full, labels, buckets)
        return self._add(metric)  # type: ignore[no-any-return]

    def create_timer(
        self,
        name: str,
        description: str = "",
        labels: Sequence[str] = (),
        buckets: Sequence[float] = DEFAULT_BUCKETS_S,
    ) -> Timer:
        full = self._full(name)
        _check_name(full, labels)
        return self._add(Timer(full, description or full, labels, buckets))  # type: ignore[no-any-return]

    def get(self, name: str) -> _Metric:
        metric = self._metrics.get(name) or self._metrics.get(self._full(name))
        if metric is None:
            known = ", ".join(sorted(self._metrics)) or "none"
            raise KeyError(f"no metric named {name!r}; known metrics: {known}")
        return metric

    def metrics(self) -> list[_Metric]:
        with self._lock:
            return list(self._metrics.values())

    def prometheus_text(self) -> str:
        """All metrics in the Prometheus text exposition format."""
        return generate_latest(self.collector_registry).decode()


_default: MetricsRegistry | None = None
_default_lock = threading.Lock()


def default_registry() -> MetricsRegistry:
    """This process's registry (namespace ``victor``)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = MetricsRegistry("victor")
        return _default

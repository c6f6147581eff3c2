"""Small statistics for benchmarks: medians and spreads, never single timings."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any


def summary(samples: Sequence[float]) -> dict[str, Any]:
    """Median, min, max and relative spread ((max - min) / median) of ``samples``."""
    values = sorted(samples)
    median = statistics.median(values)
    return {
        "median": median,
        "min": values[0],
        "max": values[-1],
        "spread": (values[-1] - values[0]) / median if median else 0.0,
        "n": len(values),
        "samples": list(samples),
    }


def percentile(samples: Sequence[float], fraction: float) -> float:
    """The ``fraction`` percentile (0..1) by nearest rank."""
    values = sorted(samples)
    if not values:
        return 0.0
    index = min(len(values) - 1, max(0, round(fraction * (len(values) - 1))))
    return values[index]

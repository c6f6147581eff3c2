"""Latency histograms: log-spaced buckets (0.05 ms growing by 10%) and percentiles from counts."""

from __future__ import annotations

import math

LATENCY_BASE_MS = 0.05
LATENCY_GROWTH = 1.1
LATENCY_BUCKETS = 200  # 0.05 ms * 1.1**199: about 8 hours
_LOG_GROWTH = math.log(LATENCY_GROWTH)


def latency_bucket(ms: float) -> int:
    """The log-scale bucket of ``ms`` (relative width 10%, so percentiles are within ~5%)."""
    if ms <= LATENCY_BASE_MS:
        return 0
    index = int(math.log(ms / LATENCY_BASE_MS) / _LOG_GROWTH) + 1
    return index if index < LATENCY_BUCKETS else LATENCY_BUCKETS - 1


def bucket_value_ms(index: int) -> float:
    """A representative value of bucket ``index`` (geometric middle of its bounds)."""
    if index <= 0:
        return LATENCY_BASE_MS
    lower = LATENCY_BASE_MS * LATENCY_GROWTH ** (index - 1)
    return lower * math.sqrt(LATENCY_GROWTH)


def histogram_percentile(counts: dict[int, int], fraction: float) -> float | None:
    """The ``fraction`` (0..1) percentile in ms of a sparse bucket -> count histogram."""
    total = sum(counts.values())
    if total <= 0:
        return None
    rank = max(1, math.ceil(fraction * total))
    seen = 0
    for index in sorted(counts):
        seen += counts[index]
        if seen >= rank:
            return bucket_value_ms(index)
    return bucket_value_ms(max(counts))

"""The fleet size recommendation: worker replicas for the work in flight, with hysteresis. Pure.

``raw = ceil((queued + reserved + active) / capacity per replica)``, the capacity being the
tuned pool size of a replica (the mean over live workers). The recommendation rises at once
and falls only after ``keep`` intervals: it is the largest raw value of the last ``keep``.
KEDA or an HPA scales on it (``victor_tuner_desired_replicas``), not on the list length,
which prefetched and running tasks have already left.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ReplicaAdvice:
    """One interval's recommendation and the raw values it remembers."""

    desired: int
    raw: int
    capacity: float
    depth: int
    history: list[int] = field(default_factory=list)


def capacity_per_replica(pool_sizes: list[int], fallback: int) -> float:
    """Mean tuned pool size of the live workers (``fallback`` with none), at least 1."""
    sizes = [size for size in pool_sizes if size > 0]
    return max(1.0, sum(sizes) / len(sizes)) if sizes else float(max(1, fallback))


def advise_replicas(history: list[int], depth: int, capacity: float, keep: int) -> ReplicaAdvice:
    """Scale up at once, down only after ``keep`` intervals below the current advice."""
    raw = math.ceil(max(0, depth) / max(capacity, 1e-9) - 1e-9)
    remembered = [*history, raw][-max(1, keep) :]
    return ReplicaAdvice(
        desired=max(remembered),
        raw=raw,
        capacity=round(capacity, 3),
        depth=depth,
        history=remembered,
    )

"""Per-skill weights from observed outcomes: success rate and latency, for ranking skills.

Pure: ``outcome_weights`` turns semantic memory's per-skill facts (``failure_rate``, ``tasks``,
``latency_p50_ms``; see ``workers.maintenance.episodes``) into one weight per skill, which
``select_tools`` keeps in the tool selection cache's ``rl`` namespace and multiplies into each
skill's score::

    success  = (tasks * (1 - failure_rate) + PRIOR_TASKS) / (tasks + PRIOR_TASKS)
    latency  = clamp((fleet median p50 / skill p50) ** LATENCY_EXPONENT, LATENCY_FLOOR, 1)
    weight   = (0.5 + 0.5 * success) * latency          in [0.4, 1.0]

A skill nothing is known about weighs 1.0, and so does a reliable one at or under the median
latency; ``PRIOR_TASKS`` pseudo-successes keep a few early failures from sinking a skill. The
weight is bounded below by 0.4, so a skill that matches a goal more than 2.5 times better
lexically still ranks first whatever its record: the weights break ties and near-ties.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping

# Bump when the formula changes: it is part of the rl namespace's key.
WEIGHTS_VERSION = "1"
PRIOR_TASKS = 2.0
LATENCY_EXPONENT = 0.1
LATENCY_FLOOR = 0.8

Facts = Mapping[str, Mapping[str, float]]


def _latency_ms(figures: Mapping[str, float]) -> float:
    return float(figures.get("latency_p50_ms") or figures.get("avg_latency_ms") or 0.0)


def outcome_weights(facts: Facts) -> dict[str, float]:
    """One weight per skill with facts (see the module docstring for the formula)."""
    latencies = [_latency_ms(figures) for figures in facts.values() if _latency_ms(figures) > 0]
    reference = statistics.median(latencies) if latencies else 0.0
    weights: dict[str, float] = {}
    for skill, figures in facts.items():
        tasks = max(0.0, float(figures.get("tasks", 0)))
        failure = min(1.0, max(0.0, float(figures.get("failure_rate", 0.0))))
        success = (tasks * (1.0 - failure) + PRIOR_TASKS) / (tasks + PRIOR_TASKS)
        latency = _latency_ms(figures)
        speed = 1.0
        if latency > 0 and reference > 0:
            speed = min(1.0, max(LATENCY_FLOOR, (reference / latency) ** LATENCY_EXPONENT))
        weights[skill] = round((0.5 + 0.5 * success) * speed, 4)
    return weights


def weighted(scores: dict[str, float], weights: Mapping[str, float]) -> dict[str, float]:
    """``scores`` with each skill's weight multiplied in (1.0 for a skill without one)."""
    if not weights:
        return scores
    return {name: score * weights.get(name, 1.0) for name, score in scores.items()}

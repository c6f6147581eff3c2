"""Cached vs uncached tool selection through the real path: ``SkillExecutor.run("select_tools")``.

Both sides validate the input, load the skill and rank the installed skills the same way; the
cached side finds the ranking in the tool_selection cache (L1) after the first pass.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

from orchestrator.bench.stats import percentile, summary
from workers.core.settings import Settings
from workers.runtime import Runtime
from workers.skills.registry import load_registry

ITERATIONS = {"tiny": 5, "default": 100, "full": 300}
TARGET_REDUCTION = 0.95

_VERBS = ("analyze", "find", "read", "search", "summarize", "report on", "rank", "check")
_OBJECTS = (
    "the code",
    "auth module",
    "TODO markers",
    "complexity",
    "file content",
    "test failures",
    "function metrics",
    "tools for a goal",
)


def local_settings(**values: Any) -> Settings:
    """Embedded settings (L1 only: no Redis, no cache file) whatever the environment says."""
    unset: dict[str, Any] = dict.fromkeys(
        ("redis_url", "broker_url", "result_backend_url", "cache_url")
    )
    return Settings(**{**unset, "cache_dir": "", **values})


def queries(count: int = 64) -> list[str]:
    """Distinct goal texts, as an agent loop would ask again and again."""
    pairs = itertools.product(_VERBS, _OBJECTS)
    return [
        f"{verb} {thing} in part {index}"
        for index, (verb, thing) in zip(range(count), itertools.cycle(pairs))
    ]


def _measure(runtime: Runtime, goals: list[str], iterations: int) -> list[float]:
    run = runtime.executor.run
    samples: list[float] = []
    clock = time.perf_counter
    for _ in range(iterations):
        for goal in goals:
            started = clock()
            run("select_tools", {"query": goal})
            samples.append(clock() - started)
    return samples


def run_iterations(iterations: int = 100) -> dict[str, Any]:
    """``iterations`` passes over 64 goals, uncached and cached, in this one run."""
    goals = queries()
    registry = load_registry()
    uncached_runtime = Runtime(local_settings(tool_selection_cache_enabled=False), registry)
    cached_runtime = Runtime(local_settings(tool_selection_cache_enabled=True), registry)
    for runtime in (uncached_runtime, cached_runtime):
        _measure(runtime, goals[:4], 5)  # import the skill, warm the interpreter
    cached_runtime.cache().tool_selection.l1.clear()
    first_pass = _measure(cached_runtime, goals, 1)  # misses: these fill the cache
    uncached = _measure(uncached_runtime, goals, iterations)
    cached = _measure(cached_runtime, goals, iterations)
    stats = cached_runtime.cache().tool_selection.stats()
    cached_runtime.cache().close()
    uncached_runtime.cache().close()
    uncached_ms = summary([s * 1000 for s in uncached])
    cached_ms = summary([s * 1000 for s in cached])
    reduction = 1 - cached_ms["median"] / uncached_ms["median"]
    for figures in (uncached_ms, cached_ms):
        figures.pop("samples")
    return {
        "latency_ms": {
            "uncached": uncached_ms["median"],
            "cached": cached_ms["median"],
            "cached_p99": percentile([s * 1000 for s in cached], 0.99),
            "uncached_p99": percentile([s * 1000 for s in uncached], 0.99),
            "first_pass": summary([s * 1000 for s in first_pass])["median"],
            "uncached_summary": uncached_ms,
            "cached_summary": cached_ms,
        },
        "throughput": {
            "uncached_per_s": round(len(uncached) / sum(uncached)),
            "cached_per_s": round(len(cached) / sum(cached)),
        },
        "hit_rate": stats["hit_rate"],
        "reduction": round(reduction, 4),
        "target_reduction": TARGET_REDUCTION,
        "meets_target": reduction >= TARGET_REDUCTION,
        "iterations": iterations,
        "goals": len(goals),
        "skills_ranked": len(registry.names()),
    }


def run(size: str) -> dict[str, Any]:
    result = run_iterations(ITERATIONS[size])
    return {
        "ratio": result["reduction"],
        "ours": result["latency_ms"]["cached"],
        "peer": result["latency_ms"]["uncached"],
        "unit": "ms per selection (median); ratio = latency reduction",
        **result,
    }

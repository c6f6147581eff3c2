"""The cache against a raw redis-py GET of the same bytes, in one run; memory; analyze reruns.

- ``l1_vs_get``: raw GET median / L1 hit median (how many times faster an L1 hit is).
- ``l2_vs_get``: L2 hit median / raw GET median (GET + HMAC check + JSON decode, vs GET).
- ``bytes_per_1000_selection_entries``: the L1's own byte accounting and the Python heap it
  really holds (tracemalloc) for 1,000 rankings made by the real select_tools.
- ``analyze``: first vs second analysis of one generated tree, embedded and on Redis workers.
"""

from __future__ import annotations

import gc
import json
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import redis

from orchestrator.bench.environment import BenchRedis, bench_redis
from orchestrator.bench.stats import summary
from orchestrator.bench.tool_selection import local_settings, queries
from workers.factory import Runtime
from workers.cache import CacheManager
from workers.cache.envelope import Signer, encode, seal
from workers.settings import Settings
from workers.skills.registry import load_registry

SIZES = {
    "tiny": {"rounds": 5, "ops": 200, "files": 30},
    "default": {"rounds": 15, "ops": 2000, "files": 300},
    "full": {"rounds": 30, "ops": 5000, "files": 1000},
}
TARGETS = {
    "l1_vs_get": 50.0,
    "l2_vs_get": 1.3,
    "mb_per_1000_selection_entries": 0.5,
    "analyze_speedup": 5.0,
}
VALUE = {
    "tools": [
        ["analyze_code", 3.7528],
        ["search_code", 2.0207],
        ["read_file", 0.5774],
        ["select_tools", 0.5774],
        ["report", 0.2887],
    ]
}


def _batch_us(function: Any, ops: int) -> float:
    started = time.perf_counter()
    for _ in range(ops):
        function()
    return (time.perf_counter() - started) / ops * 1e6


def _each_us(function: Any, before: Any, ops: int) -> float:
    total = 0.0
    for _ in range(ops):
        before()
        started = time.perf_counter()
        function()
        total += time.perf_counter() - started
    return total / ops * 1e6


def measure_hits(env: BenchRedis, rounds: int, ops: int) -> dict[str, Any]:
    """L1 hit, L2 hit and raw GET of the same sealed bytes, interleaved round by round."""
    settings = env.settings()
    writer = CacheManager(settings).start()
    reader = CacheManager(settings).start()
    cache, other = writer.response, reader.response
    key = cache.key("bench", "1", {"value": "selection"})
    cache.set(key, VALUE)
    raw_key = f"{env.prefix}:bench:raw"
    sealed = seal(Signer(b"x"), key, encode(VALUE), time.time() + 3600)
    client = redis.Redis.from_url(env.url)
    client.set(raw_key, sealed)
    assert other.get(key) == VALUE and cache.get(key) == VALUE
    forget = lambda: other.l1.delete(key)  # noqa: E731 - the untimed step before each L2 hit
    nothing = lambda: None  # noqa: E731
    l1, l2, get = [], [], []
    for _ in range(rounds):
        get.append(_each_us(lambda: client.get(raw_key), nothing, ops))
        l2.append(_each_us(lambda: other.get(key), forget, ops))
        l1.append(_batch_us(lambda: cache.get(key), ops * 10))
    client.close()
    writer.close()
    reader.close()
    l1_s, l2_s, get_s = summary(l1), summary(l2), summary(get)
    return {
        "value_bytes": len(sealed),
        "l1_hit_us": l1_s["median"],
        "l2_hit_us": l2_s["median"],
        "get_us": get_s["median"],
        "spread": {"l1": l1_s["spread"], "l2": l2_s["spread"], "get": get_s["spread"]},
        "l1_vs_get": round(get_s["median"] / l1_s["median"], 1),
        "l2_vs_get": round(l2_s["median"] / get_s["median"], 3),
    }


def measure_selection_memory(entries: int = 1000) -> dict[str, Any]:
    """Fill an L1-only tool_selection cache with ``entries`` real rankings; count bytes."""
    settings = local_settings(tool_selection_cache_size=entries + 10)
    runtime = Runtime(settings, load_registry())
    goals = [f"{goal} variant {index}" for index, goal in enumerate(queries(entries))]
    runtime.executor.run("select_tools", {"query": "warm up"})
    cache = runtime.cache().tool_selection
    cache.l1.clear()
    runtime.executor.run("select_tools", {"query": "warm up"})  # the shared rl weights
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for goal in goals:
        runtime.executor.run("select_tools", {"query": goal})
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    stats = cache.stats()
    runtime.cache().close()
    return {
        "entries": entries,
        "accounted_mb": round(stats["bytes"] / 1e6 * 1000 / entries, 3),
        "heap_mb": round(held / 1e6 * 1000 / entries, 3),
        "current_size": stats["current_size"],
    }


def _write_tree(root: Path, files: int) -> None:
    body = "\n".join(
        f"def function_{n}(value):\n    # TODO: check {n}\n"
        f"    if value > {n}:\n        return value - {n}\n"
        f"    for item in range(value):\n        if item % 3 == 0:\n            value += item\n"
        f"    return value\n"
        for n in range(12)
    )
    for index in range(files):
        package = root / f"pkg{index % 10}"
        package.mkdir(exist_ok=True)
        (package / f"module_{index}.py").write_text(f'"""Module {index}."""\n\n{body}\n')


def _analyze_once(settings: Settings, tree: Path) -> tuple[float, dict[str, Any]]:
    from orchestrator.dispatcher import dispatch_plan, wait_job
    from orchestrator.planner import analyze_goal, plan_goal
    from orchestrator.session import Session

    with Session(settings) as session:
        plan = plan_goal(analyze_goal(str(tree)), settings, session.app.victor.registry)
        started = time.perf_counter()
        job = wait_job(dispatch_plan(session.app, plan), timeout_s=600)
        elapsed = time.perf_counter() - started
        if job.status != "succeeded":
            raise RuntimeError(f"analyze job {job.job_id} {job.status}: {job.error}")
        return elapsed, job.result


def measure_analyze(env: BenchRedis, files: int) -> dict[str, Any]:
    """First and second analysis of the same tree: embedded (one process), and on Redis."""
    results: dict[str, Any] = {"files": files}
    with tempfile.TemporaryDirectory(prefix="victor-bench-tree-") as directory:
        tree = Path(directory)
        _write_tree(tree, files)
        embedded = local_settings(allowed_roots=[tree])
        first, report = _analyze_once(embedded, tree)
        second, again = _analyze_once(embedded, tree)
        assert again["totals"] == report["totals"]
        results["embedded"] = {
            "first_s": round(first, 3),
            "second_s": round(second, 3),
            "speedup": round(first / second, 1),
        }
        roots = json.dumps([str(tree)])
        env.worker(concurrency=2, VICTOR_ALLOWED_ROOTS=roots)
        distributed = env.settings(allowed_roots=[tree])
        first, report = _analyze_once(distributed, tree)
        second, again = _analyze_once(distributed, tree)
        assert again["totals"] == report["totals"]
        results["redis"] = {
            "first_s": round(first, 3),
            "second_s": round(second, 3),
            "speedup": round(first / second, 1),
            "workers": 1,
            "concurrency": 2,
        }
    return results


def run(size: str) -> dict[str, Any]:
    plan = SIZES[size]
    with bench_redis() as env:
        hits = measure_hits(env, plan["rounds"], plan["ops"])
        memory = measure_selection_memory(1000)
        analyze = measure_analyze(env, plan["files"])
    return {
        "ratio": hits["l1_vs_get"],
        "ours": hits["l1_hit_us"],
        "peer": hits["get_us"],
        "unit": "us per lookup (median); ratio = raw GET / L1 hit",
        **hits,
        "bytes_per_1000_selection_entries": memory,
        "analyze": analyze,
        "targets": TARGETS,
        "meets": {
            "l1_vs_get": hits["l1_vs_get"] >= TARGETS["l1_vs_get"],
            "l2_vs_get": hits["l2_vs_get"] <= TARGETS["l2_vs_get"],
            "memory_heap": memory["heap_mb"] <= TARGETS["mb_per_1000_selection_entries"],
            "memory_accounted": memory["accounted_mb"] <= TARGETS["mb_per_1000_selection_entries"],
            "analyze_embedded": analyze["embedded"]["speedup"] >= TARGETS["analyze_speedup"],
            "analyze_redis": analyze["redis"]["speedup"] >= TARGETS["analyze_speedup"],
        },
    }

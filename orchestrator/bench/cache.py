"""The cache against a raw redis-py GET of the same bytes, in one run; memory; analyze reruns.

- ``l1_vs_get``: raw GET median / L1 hit median (how many times faster an L1 hit is).
- ``l2_vs_get``: L2 hit median / raw GET median (GET + HMAC check + JSON decode, vs GET).
  The L2 reads on a connection of its own thread, not through redis-py's pool; for
  transparency ``direct_get_us`` is a GET of the same bytes that way too (``l2_vs_direct_get``).
- ``bytes_per_1000_selection_entries``: the L1's own byte accounting and the Python heap it
  really holds (tracemalloc) for 1,000 rankings made by the real select_tools.
- ``analyze``: first vs second analysis of one generated tree: in one process (embedded, L1),
  in two new processes sharing the embedded cache file (the job's time, and the whole
  ``victor analyze --json`` command's wall clock), and on Redis workers.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any, Protocol, cast

import redis

from orchestrator.bench.environment import BenchRedis, bench_redis
from orchestrator.bench.stats import summary
from orchestrator.bench.tool_selection import local_settings, queries
from workers.cache import CacheManager
from workers.cache.envelope import Signer, encode, seal
from workers.core.settings import Settings
from workers.runtime import Runtime, runtime_of
from workers.skills.registry import load_registry


class _RawConnection(Protocol):
    """The part of a redis-py connection the direct GET uses (redis-py leaves it untyped)."""

    def send_command(self, *args: Any) -> None: ...

    def read_response(self) -> Any: ...

    def disconnect(self) -> None: ...


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
    connection = cast(_RawConnection, client.connection_pool.make_connection())

    def direct_get() -> Any:
        connection.send_command("GET", raw_key)
        return connection.read_response()

    assert direct_get() == sealed
    forget = lambda: other.l1.delete(key)  # noqa: E731 - the untimed step before each L2 hit
    nothing = lambda: None  # noqa: E731
    l1, l2, get, direct = [], [], [], []
    for _ in range(rounds):
        get.append(_each_us(lambda: client.get(raw_key), nothing, ops))
        l2.append(_each_us(lambda: other.get(key), forget, ops))
        direct.append(_each_us(direct_get, nothing, ops))
        l1.append(_batch_us(lambda: cache.get(key), ops * 10))
    connection.disconnect()
    client.close()
    writer.close()
    reader.close()
    l1_s, l2_s, get_s, direct_s = summary(l1), summary(l2), summary(get), summary(direct)
    return {
        "value_bytes": len(sealed),
        "l1_hit_us": l1_s["median"],
        "l2_hit_us": l2_s["median"],
        "get_us": get_s["median"],
        "direct_get_us": direct_s["median"],
        "spread": {
            "l1": l1_s["spread"],
            "l2": l2_s["spread"],
            "get": get_s["spread"],
            "direct_get": direct_s["spread"],
        },
        "l1_vs_get": round(get_s["median"] / l1_s["median"], 1),
        "l2_vs_get": round(l2_s["median"] / get_s["median"], 3),
        "l2_vs_direct_get": round(l2_s["median"] / direct_s["median"], 3),
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
    from orchestrator.core.dispatcher import dispatch_plan, wait_job
    from orchestrator.core.planner import analyze_goal, plan_goal
    from orchestrator.core.session import Session

    with Session(settings) as session:
        plan = plan_goal(analyze_goal(str(tree)), settings, runtime_of(session.app).registry)
        started = time.perf_counter()
        job = wait_job(dispatch_plan(session.app, plan), timeout_s=600)
        elapsed = time.perf_counter() - started
        if job.status != "succeeded":
            raise RuntimeError(f"analyze job {job.job_id} {job.status}: {job.error}")
        return elapsed, job.result


_CHILD = """
import json, sys, time
from pathlib import Path
from orchestrator.bench.cache import _analyze_once
from workers.core.settings import Settings
settings = Settings(allowed_roots=[sys.argv[1]])
elapsed, report = _analyze_once(settings, Path(sys.argv[1]))
print(json.dumps({"job_s": elapsed, "files": report["totals"]["files"]}))
"""


def _embedded_env(cache_dir: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("VICTOR_")}
    env["VICTOR_CACHE_DIR"] = cache_dir
    return env


def _timed_run(command: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:3])} failed: {done.stderr[-2000:]}")
    return elapsed, done.stdout


def measure_new_processes(tree: Path, cli: bool = True) -> dict[str, Any]:
    """The second run in a NEW process (embedded mode, the cache file in a fresh cache dir).

    ``job``: the analysis itself (dispatch to result) in ``python -c`` children;
    ``cli``: the whole ``victor analyze --json`` command, imports and start-up included.
    """
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="victor-bench-cache-") as cache_dir:
        env = _embedded_env(cache_dir)
        jobs = [
            json.loads(_timed_run([sys.executable, "-c", _CHILD, str(tree)], env)[1])["job_s"]
            for _ in range(2)
        ]
    results["job"] = {
        "first_s": round(jobs[0], 3),
        "second_s": round(jobs[1], 3),
        "speedup": round(jobs[0] / jobs[1], 1),
    }
    if not cli:
        return results
    victor = str(Path(sys.executable).with_name("victor"))
    with tempfile.TemporaryDirectory(prefix="victor-bench-cache-") as cache_dir:
        env = _embedded_env(cache_dir)
        walls = [_timed_run([victor, "analyze", str(tree), "--json"], env)[0] for _ in range(2)]
        startup = _timed_run([victor, "cache", "stats", "--json"], env)[0]
    results["cli"] = {
        "first_s": round(walls[0], 3),
        "second_s": round(walls[1], 3),
        "speedup": round(walls[0] / walls[1], 1),
        "cache_stats_command_s": round(startup, 3),  # start-up and imports, no analysis
    }
    return results


def measure_analyze(env: BenchRedis, files: int, cli: bool = True) -> dict[str, Any]:
    """First and second analysis of the same tree: embedded (one process, then two new
    processes sharing the cache file), and on Redis."""
    results: dict[str, Any] = {"files": files}
    with tempfile.TemporaryDirectory(prefix="victor-bench-tree-") as directory:
        tree = Path(directory)
        _write_tree(tree, files)
        results["embedded_new_process"] = measure_new_processes(tree, cli)
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
        analyze = measure_analyze(env, plan["files"], cli=size != "tiny")
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
            "analyze_new_process_job": analyze["embedded_new_process"]["job"]["speedup"]
            >= TARGETS["analyze_speedup"],
            "analyze_new_process_cli": analyze["embedded_new_process"]
            .get("cli", {})
            .get("speedup", 0)
            >= TARGETS["analyze_speedup"],
            "analyze_redis": analyze["redis"]["speedup"] >= TARGETS["analyze_speedup"],
        },
    }

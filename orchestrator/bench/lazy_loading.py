"""lazy_loading: worker cold start (launch to ready) and idle RSS, lazy vs eager.

Each sample is a fresh ``celery -A workers worker`` process (solo pool, so one process holds
everything), alternating lazy and eager so drift hits both alike. Lazy: skills import on first
use, the analyze grammars load on first use of their language, no optional extra is imported.
Eager: lazy loading off (every skill imported at start) and, before the worker starts, every
installed optional extra a skill uses (numpy, the provider SDKs) imported and every analyze
grammar loaded, as a worker that prepares for anything would.
"""

from __future__ import annotations

import importlib.util
import time
from typing import Any

import psutil

from orchestrator.bench.environment import bench_redis
from orchestrator.bench.stats import summary
from orchestrator.harness import WorkerProcess

RUNS = {"tiny": 1, "default": 5, "full": 9}
# Modules of the optional extras that worker skills use (analyze, embed, providers).
EXTRA_MODULES = ("tree_sitter", "tree_sitter_language_pack", "numpy", "openai", "anthropic")
# Runs in the eager worker's process before Celery starts (a process, not an import of tasks).
_PRELOAD = """
import importlib, sys
for name in {modules!r}:
    importlib.import_module(name)
from tasks.parsing import load_all
load_all()
from celery.__main__ import main
sys.argv = ["celery", *sys.argv[1:]]
sys.exit(main())
"""


def installed_extras() -> list[str]:
    """The extra modules present here (only these are preloaded, and reported)."""
    return [name for name in EXTRA_MODULES if importlib.util.find_spec(name) is not None]


class EagerWorker(WorkerProcess):
    """A worker whose process imports every extra and loads every grammar before starting."""

    def command(self) -> list[str]:
        celery_args = super().command()[3:]  # drop: python -m celery
        preload = _PRELOAD.format(modules=tuple(installed_extras()))
        return [super().command()[0], "-c", preload, *celery_args]


def _sample(env: dict[str, str], eager: bool) -> tuple[float, float, list[str]]:
    kind = EagerWorker if eager else WorkerProcess
    worker = kind(
        {
            **env,
            "VICTOR_LAZY_LOADING_ENABLED": "false" if eager else "true",
            "VICTOR_LAZY_LOADING_PREWARM_DELAY_S": "0",
        },
        concurrency=1,
        pool="solo",
    )
    started = time.monotonic()
    worker.start(wait=False)
    try:
        worker.wait_ready(60)
        start_s = time.monotonic() - started
        time.sleep(1.0)  # idle: let start-up allocations settle
        process = psutil.Process(worker.pid)
        rss_mb = process.memory_info().rss / 1_048_576
        return start_s, rss_mb, []
    finally:
        worker.kill()


START_TARGET = 0.60
RSS_TARGET = 0.50


def run(size: str) -> dict[str, Any]:
    runs = RUNS[size]
    starts: dict[str, list[float]] = {"lazy": [], "eager": []}
    rss: dict[str, list[float]] = {"lazy": [], "eager": []}
    with bench_redis() as redis_env:
        env = redis_env.env()
        _sample(env, eager=False)  # warm the OS file cache once, unmeasured
        for _ in range(runs):
            for mode in ("lazy", "eager"):
                start_s, rss_mb, _ = _sample(env, eager=mode == "eager")
                starts[mode].append(start_s)
                rss[mode].append(rss_mb)
    start_lazy, start_eager = summary(starts["lazy"]), summary(starts["eager"])
    rss_lazy, rss_eager = summary(rss["lazy"]), summary(rss["eager"])
    return {
        "unit": "s to ready; MB idle RSS",
        "ratio": start_lazy["median"] / start_eager["median"],
        "rss_ratio": rss_lazy["median"] / rss_eager["median"],
        "start_reduction": 1 - start_lazy["median"] / start_eager["median"],
        "rss_reduction": 1 - rss_lazy["median"] / rss_eager["median"],
        "ours": {"start_s": start_lazy, "rss_mb": rss_lazy},
        "peer": {"start_s": start_eager, "rss_mb": rss_eager},
        "peer_is": (
            "the same worker with every skill imported at start (lazy loading off), every "
            "installed extra imported and every analyze grammar loaded"
        ),
        "extras": installed_extras(),
        "runs": runs,
        "target_met": {
            "start": 1 - start_lazy["median"] / start_eager["median"] >= START_TARGET,
            "rss": 1 - rss_lazy["median"] / rss_eager["median"] >= RSS_TARGET,
        },
        "gap": {
            "start": max(0.0, START_TARGET - (1 - start_lazy["median"] / start_eager["median"])),
            "rss": max(0.0, RSS_TARGET - (1 - rss_lazy["median"] / rss_eager["median"])),
        },
        "target": ">= 60% faster start, >= 50% less idle RSS",
    }

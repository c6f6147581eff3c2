"""analyze: files/s and lines/s on a multi-language corpus, ours against lizard (and cloc).

One run measures, on the same cached corpus of third-party code (``orchestrator.bench.corpus``):
ours embedded (one process, the threads pool), ours on two worker processes on Redis (a
throwaway server or the configured one under its own key prefix), ``lizard`` over the corpus
(functions and complexity, one process, as it runs by default) and ``cloc`` (lines). The
response cache is off for ours, so every round parses every file. The ratio is lizard's time
over ours on two workers. ``time_by_file`` says where one process's time goes (the heaviest
files and their share), so a corpus that a few files dominate shows as one.

Each side's CPU seconds are measured too (``cpu_s``: the worker processes' for ours on
workers, the child's for lizard and cloc). On a shared machine wall times swing with the
load; CPU seconds barely do, so ``cpu_ratio`` (lizard's CPU seconds over ours per worker) is
what two free cores would give, and the figure to compare across runs.

Each round runs every side once, starting one side later than the round before, so no side
always follows the same one; ``round_ratios`` are lizard's time over ours within each round.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from orchestrator.bench.corpus import Corpus, build_corpus
from orchestrator.bench.environment import bench_redis
from orchestrator.bench.stats import summary
from workers.core.settings import Settings
from workers.runtime import runtime_of

# size -> (corpus size, rounds)
SIZES = {"tiny": ("tiny", 1), "default": ("default", 5), "full": ("full", 3)}
WORKERS = 2


def _analyze_once(settings: Settings, root: Path, files: int) -> float:
    from orchestrator.core.dispatcher import dispatch_plan, wait_job
    from orchestrator.core.planner import analyze_goal, plan_goal
    from orchestrator.core.session import Session

    with Session(settings) as session:
        plan = plan_goal(analyze_goal(str(root)), settings, runtime_of(session.app).registry)
        started = time.perf_counter()
        job = wait_job(dispatch_plan(session.app, plan), timeout_s=1800)
        elapsed = time.perf_counter() - started
    if job.status != "succeeded":
        raise RuntimeError(f"analyze job {job.job_id} {job.status}: {job.error}")
    found = job.result["totals"]["files"]
    if found != files:
        raise RuntimeError(f"analyze job saw {found} files, the corpus has {files}")
    return elapsed


def _tool(command: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of one run of ``command``."""
    cpu_before = _children_cpu_s()
    started = time.perf_counter()
    done = subprocess.run(command, check=False, capture_output=True, timeout=1800)
    elapsed = time.perf_counter() - started
    if done.returncode not in (0, 1):  # lizard exits 1 when a function passes its warning limit
        raise RuntimeError(f"{command[0]} failed ({done.returncode}): {done.stderr[-500:]!r}")
    return elapsed, _children_cpu_s() - cpu_before


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _tree_cpu_s(pids: list[int]) -> float:
    """User and system CPU seconds of the processes ``pids`` and their children, so far."""
    total = 0.0
    for pid in pids:
        try:
            main = psutil.Process(pid)
            processes = [main, *main.children(recursive=True)]
        except psutil.Error:
            continue
        for process in processes:
            try:
                times = process.cpu_times()
            except psutil.Error:
                continue
            total += times.user + times.system
    return total


def _timed_cpu(run: Callable[[], float], cpu_s: Callable[[], float]) -> tuple[float, float]:
    """``run()``'s own timing, and the CPU seconds ``cpu_s`` counts across it."""
    before = cpu_s()
    elapsed = run()
    return elapsed, cpu_s() - before


def _corpus_size(corpus: Corpus) -> tuple[int, int]:
    files = lines = 0
    for language in corpus.languages:
        for path in corpus.files(language):
            files += 1
            lines += path.read_bytes().count(b"\n")
    return files, lines


def _heaviest_files(corpus: Corpus, settings: Settings, count: int = 3) -> dict[str, Any]:
    """Where one process's analysis time goes: the files that take the most, and their share.

    Says whether a few files dominate the corpus (then files/s misleads; lines/s less so).
    Run twice in this process, timed the second time (grammars already loaded).
    """
    from workers.skills.executor import SkillExecutor
    from workers.skills.registry import load_registry

    executor = SkillExecutor(settings, load_registry())  # no cache hook: every file is parsed
    paths = [path for language in corpus.languages for path in corpus.files(language)]
    timings: list[tuple[float, Path]] = []
    for _ in range(2):
        timings = []
        for path in paths:
            started = time.perf_counter()
            executor.run("analyze_code", {"path": str(path)})
            timings.append((time.perf_counter() - started, path))
    total_s = sum(seconds for seconds, _ in timings)
    heaviest = sorted(timings, key=lambda row: row[0], reverse=True)[:count]
    return {
        "one_process_s": round(total_s, 3),
        "heaviest_files": [
            {
                "path": str(path.relative_to(corpus.root)),
                "bytes": path.stat().st_size,
                "lines": path.read_bytes().count(b"\n"),
                "share_of_time": round(seconds / total_s, 3) if total_s else 0.0,
            }
            for seconds, path in heaviest
        ],
    }


def _rates(
    samples: list[float], files: int, lines: int, cpu: list[float] | None = None
) -> dict[str, Any]:
    seconds = summary(samples)
    rates: dict[str, Any] = {
        "seconds": seconds,
        "files_per_s": round(files / seconds["median"], 1),
        "lines_per_s": round(lines / seconds["median"]),
    }
    if cpu:
        rates["cpu_s"] = summary(cpu)
    return rates


def run(size: str) -> dict[str, Any]:
    corpus_size, rounds = SIZES[size]
    corpus = build_corpus(corpus_size)
    if not corpus.languages:
        raise RuntimeError(f"no corpus could be built: {corpus.missing}")
    root = corpus.root
    files, lines = _corpus_size(corpus)
    embedded = Settings(
        allowed_roots=[root],
        redis_url=None,
        broker_url=None,
        result_backend_url=None,
        cache_url=None,
        response_cache_enabled=False,
    )
    samples: dict[str, list[float]] = {"embedded": [], "workers": [], "lizard": [], "cloc": []}
    cpu: dict[str, list[float]] = {name: [] for name in samples}
    has_cloc = shutil.which("cloc") is not None
    lizard = [sys.executable, "-m", "lizard", str(root)]
    cloc = ["cloc", "--quiet", "--skip-uniqueness", str(root)]
    with bench_redis() as env:
        for _ in range(WORKERS):
            env.worker(
                concurrency=1,
                VICTOR_ALLOWED_ROOTS=json.dumps([str(root)]),
                VICTOR_RESPONSE_CACHE_ENABLED="false",
            )
        distributed = env.settings(allowed_roots=[root], response_cache_enabled=False)
        _analyze_once(distributed, root, files)  # warm: workers import the skill, grammars load
        worker_pids = [worker.pid for worker in env.workers]
        sides: dict[str, Callable[[], tuple[float, float]]] = {
            "embedded": lambda: _timed_cpu(
                lambda: _analyze_once(embedded, root, files), time.process_time
            ),
            "workers": lambda: _timed_cpu(
                lambda: _analyze_once(distributed, root, files),
                lambda: _tree_cpu_s(worker_pids),
            ),
            "lizard": lambda: _tool(lizard),
        }
        if has_cloc:
            sides["cloc"] = lambda: _tool(cloc)
        order = list(sides)
        for turn in range(rounds):
            # Each round starts with the next side: none always runs after the same one (a
            # machine that is faster after an idle moment or a busy one favours no side).
            for name in order[turn % len(order) :] + order[: turn % len(order)]:
                elapsed, cpu_s = sides[name]()
                samples[name].append(elapsed)
                cpu[name].append(cpu_s)
    profile = _heaviest_files(corpus, embedded)
    ours = _rates(samples["workers"], files, lines, cpu["workers"])
    peer = _rates(samples["lizard"], files, lines, cpu["lizard"])
    result: dict[str, Any] = {
        "unit": "s per corpus (median); files/s and lines/s; cpu_s: CPU seconds per corpus",
        "ratio": peer["seconds"]["median"] / ours["seconds"]["median"],
        "ratio_is": "speedup: lizard's time / ours on two workers",
        "round_ratios": summary(
            [
                peer_s / ours_s
                for peer_s, ours_s in zip(samples["lizard"], samples["workers"], strict=True)
            ]
        ),
        "round_ratios_are": "lizard's time / ours on two workers, within each round",
        "cpu_ratio": peer["cpu_s"]["median"] / (ours["cpu_s"]["median"] / WORKERS),
        "cpu_ratio_is": (
            "lizard's CPU seconds / ours per worker: the speedup on two free cores, if the "
            "work splits evenly"
        ),
        "ours": ours,
        "peer": peer,
        "peer_is": "lizard, one process (functions and CCN)",
        "embedded": _rates(samples["embedded"], files, lines, cpu["embedded"]),
        "embedded_ratio": peer["seconds"]["median"] / summary(samples["embedded"])["median"],
        "workers": WORKERS,
        "files": files,
        "lines": lines,
        "languages": sorted(corpus.languages),
        "missing_sources": corpus.missing,
        "rounds": rounds,
        "target": ">= 5x lizard on two workers",
        "time_by_file": profile,
    }
    if has_cloc:
        cloc_rates = _rates(samples["cloc"], files, lines, cpu["cloc"])
        result["cloc"] = cloc_rates
        both = summary([a + b for a, b in zip(samples["lizard"], samples["cloc"], strict=True)])
        result["lizard_plus_cloc_ratio"] = both["median"] / ours["seconds"]["median"]
    return result

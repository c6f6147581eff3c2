"""analyze: files/s and lines/s on a multi-language corpus, ours against lizard (and cloc).

One run measures, on the same cached corpus of third-party code (``orchestrator.bench.corpus``):
ours embedded (one process, the threads pool), ours on two worker processes on Redis (a
throwaway server or the configured one under its own key prefix), ``lizard`` over the corpus
(functions and complexity, one process, as it runs by default) and ``cloc`` (lines). The
response cache is off for ours, so every round parses every file. The ratio is lizard's time
over ours on two workers. ``time_by_file`` says where one process's time goes (the heaviest
files and their share), so a corpus that a few files dominate shows as one.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from orchestrator.bench.corpus import Corpus, build_corpus
from orchestrator.bench.environment import bench_redis
from orchestrator.bench.stats import summary
from workers.core.settings import Settings
from workers.runtime import runtime_of

# size -> (corpus size, rounds)
SIZES = {"tiny": ("tiny", 1), "default": ("default", 3), "full": ("full", 3)}
WORKERS = 2


def _analyze_once(settings: Settings, root: Path, files: int) -> float:
    from orchestrator.core.dispatcher import dispatch_plan, wait_job
    from orchestrator.core.planner import analyze_goal, plan_goal
    from orchestrator.core.session import Session

    with Session(settings) as session:
        plan = plan_goal(analyze_goal(str(root)), settings, runtime_of(session.app).registry)
        started = time.perf_counter()
        job = wait_job(dispatch_plan(session.app, plan), timeout_s=1800, poll_s=0.01)
        elapsed = time.perf_counter() - started
    if job.status != "succeeded":
        raise RuntimeError(f"analyze job {job.job_id} {job.status}: {job.error}")
    found = job.result["totals"]["files"]
    if found != files:
        raise RuntimeError(f"analyze job saw {found} files, the corpus has {files}")
    return elapsed


def _tool(command: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, check=False, capture_output=True, timeout=1800)
    elapsed = time.perf_counter() - started
    if done.returncode not in (0, 1):  # lizard exits 1 when a function passes its warning limit
        raise RuntimeError(f"{command[0]} failed ({done.returncode}): {done.stderr[-500:]!r}")
    return elapsed


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


def _rates(samples: list[float], files: int, lines: int) -> dict[str, Any]:
    seconds = summary(samples)
    return {
        "seconds": seconds,
        "files_per_s": round(files / seconds["median"], 1),
        "lines_per_s": round(lines / seconds["median"]),
    }


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
        for _ in range(rounds):
            samples["embedded"].append(_analyze_once(embedded, root, files))
            samples["workers"].append(_analyze_once(distributed, root, files))
            samples["lizard"].append(_tool(lizard))
            if has_cloc:
                samples["cloc"].append(_tool(cloc))
    profile = _heaviest_files(corpus, embedded)
    ours = _rates(samples["workers"], files, lines)
    peer = _rates(samples["lizard"], files, lines)
    result: dict[str, Any] = {
        "unit": "s per corpus (median); files/s and lines/s",
        "ratio": peer["seconds"]["median"] / ours["seconds"]["median"],
        "ratio_is": "speedup: lizard's time / ours on two workers",
        "ours": ours,
        "peer": peer,
        "peer_is": "lizard, one process (functions and CCN)",
        "embedded": _rates(samples["embedded"], files, lines),
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
        cloc_rates = _rates(samples["cloc"], files, lines)
        result["cloc"] = cloc_rates
        both = summary([a + b for a, b in zip(samples["lizard"], samples["cloc"], strict=True)])
        result["lizard_plus_cloc_ratio"] = both["median"] / ours["seconds"]["median"]
    return result

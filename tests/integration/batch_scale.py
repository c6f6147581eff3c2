"""Batch runs at scale (issue 11), not collected by pytest: driver peak RSS at 10k and 100k
items, ``analyze_code`` over 10k and 100k small files (directory input), and how long a resumed
100k run takes to skip its finished work. Two prefork workers (concurrency 1 each, as the batch
bench) on a throwaway redis-server (or ``VICTOR_REDIS_URL`` with a key prefix of its own).

    .venv/bin/python -m tests.integration.batch_scale [--work DIR]

The 100,000 source files are written once under DIR (default: the system temp directory).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from orchestrator.bench.batch import write_input
from orchestrator.bench.environment import bench_redis

VICTOR = [sys.executable, "-m", "orchestrator.cli", "batch"]
FILES = 100_000


def source_tree(work: Path) -> Path:
    """100 directories of 1,000 small Python files each, all different."""
    source = work / "src"
    if (source / "d099" / f"m{FILES - 1}.py").exists():
        return source
    for index in range(FILES):
        folder = source / f"d{index // 1000:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"m{index}.py").write_text(
            f"def f{index}(x):\n    if x > {index}:\n        return x\n    return {index}\n\n"
            f"class C{index}:\n    def g(self, y):\n"
            "        return [v for v in range(y) if v % 2]\n"
        )
    return source


def run(env: dict[str, str], work: Path, args: list[str]) -> dict[str, Any]:
    done = subprocess.run(
        [*VICTOR, *args, "--json", "-q"], env=env, capture_output=True, text=True, cwd=work
    )
    if done.returncode != 0:
        print(f"exit {done.returncode}: {done.stderr[-800:]}", file=sys.stderr)
    return dict(json.loads(done.stdout))


def kill_at(env: dict[str, str], work: Path, args: list[str], out: Path, lines: int) -> int:
    """Start the run, SIGKILL its driver once ``out`` holds ``lines`` lines; the lines then."""
    driver = subprocess.Popen(
        [*VICTOR, *args, "--json", "-q"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=work,
    )
    while driver.poll() is None:
        if out.exists() and out.read_bytes().count(b"\n") >= lines:
            os.kill(driver.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    driver.wait()
    return out.read_bytes().count(b"\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "victor-batch-scale"))
    work = Path(parser.parse_args().work)
    work.mkdir(parents=True, exist_ok=True)
    source = source_tree(work)
    print("load", os.getloadavg())
    with bench_redis() as fleet:
        for _ in range(2):
            fleet.worker(concurrency=1, VICTOR_ALLOWED_ROOTS=str(work))
        env = {**os.environ, **fleet.env(VICTOR_ALLOWED_ROOTS=str(work))}
        write_input(work / "warm.jsonl", 200)  # the skill's figures, for the chunk size
        run(env, work, [str(work / "warm.jsonl"), "--skill", "noop", "--out", "w.jsonl", "--new"])
        for count in (10_000, 100_000):
            write_input(work / f"in{count}.jsonl", count)
            args = [f"in{count}.jsonl", "--skill", "noop", "--out", f"o{count}.jsonl", "--new"]
            summary = run(env, work, args)
            print(
                f"noop {count}: {summary['items_per_s']} items/s, {summary['elapsed_s']} s, "
                f"driver peak RSS {summary['peak_rss_mb']} MB, {summary['status']}"
            )
        out = work / "resume.jsonl"
        out.unlink(missing_ok=True)  # an earlier run's file would look like progress
        args = ["in100000.jsonl", "--skill", "noop", "--out", out.name, "--new"]
        killed = kill_at(env, work, args, out, 60_000)
        summary = run(env, work, args[:-1])  # the same command again resumes the run
        written = out.read_bytes().count(b"\n")
        print(
            f"resume 100k: killed at {killed} lines; skipped {summary['skipped_chunks']} chunks "
            f"in {summary['resume_skip_s']} s; ran {summary['items_run']} items; "
            f"{written} output lines; {summary['status']}"
        )
        for count, narrow in ((10_000, ["--exclude", "d0[1-9]*"]), (FILES, [])):
            args = [str(source), "--skill", "analyze_code", "--out", f"a{count}.jsonl", "--new"]
            summary = run(env, work, [*args, *narrow])
            print(
                f"analyze_code {summary['items']} files: {summary['items_per_s']} items/s, "
                f"{summary['elapsed_s']} s, driver peak RSS {summary['peak_rss_mb']} MB, "
                f"failed {summary['failed_items']}, {summary['status']}"
            )
    print("load", os.getloadavg())


if __name__ == "__main__":
    main()

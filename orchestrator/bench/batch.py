"""batch: items/s of ``victor batch`` over N no-op items beside per-item task queues.

Ours: ``victor batch input.jsonl --skill noop --out out.jsonl`` on two worker processes (each a
Celery worker with one pool process), timed by the run's own summary (read input, dispatch,
execute, write output; the CLI's start-up is reported apart). Peers on the same Redis, each with
two worker processes and one task per item the way its users write it: raw Celery (``group``
then ``get``), Dramatiq (``group(...).run()`` with the results middleware), RQ
(``enqueue_many`` then polling the jobs) and arq (``enqueue_job`` then ``job.result``). Every
client reads the same JSONL input and writes one JSON line per item; its timing leaves out the
interpreter's start-up, as ours does.

Dramatiq, RQ and arq run from a virtual environment the bench builds once and keeps in the user
cache directory (arq pins a redis-py older than the one Celery needs, so they cannot share the
project's); a peer whose package cannot be installed is skipped with a note. ``ratio`` is ours
over the fastest peer measured; ``ratios`` gives it per peer.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from orchestrator.bench.environment import BenchRedis, bench_redis
from orchestrator.bench.stats import summary

# size -> (items, repeats, the chunk size of the "larger messages" variant, None: not run)
SIZES: dict[str, tuple[int, int, int | None]] = {
    "tiny": (100, 1, None),
    "default": (5000, 3, 500),
    "full": (20_000, 3, 1000),
}
PEER_REQUIREMENTS = ("dramatiq[redis]>=2.0", "rq>=2.0", "arq>=0.26")
VENV_PEERS = ("dramatiq", "rq", "arq")
PEER_MODULE = "victor_bench_peer"
RUN_TIMEOUT_S = 900.0
WARM_ITEMS = 20


def peers_venv() -> Path:
    """Where the peers' virtual environment lives (one per requirement set)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    digest = hashlib.sha256("\n".join(PEER_REQUIREMENTS).encode()).hexdigest()[:12]
    return base / "victor-fleet" / f"bench-peers-{digest}"


def ensure_peers_venv() -> tuple[Path | None, str | None]:
    """The peers' interpreter, built on first use; or None and why it could not be built."""
    venv = peers_venv()
    python = venv / "bin" / "python"
    stamp = venv / "installed.txt"
    if stamp.exists() and python.exists():
        return python, None
    shutil.rmtree(venv, ignore_errors=True)
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [
            str(python),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            *list(PEER_REQUIREMENTS),
        ],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=600, check=False)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            return None, f"could not install {' '.join(PEER_REQUIREMENTS)}: {tail[0]}"
    stamp.write_text("\n".join(PEER_REQUIREMENTS) + "\n")
    return python, None


def write_input(path: Path, count: int) -> None:
    with open(path, "w") as stream:
        for index in range(count):
            stream.write(f'{{"value": {index}}}\n')


def _check_output(path: Path, count: int, who: str) -> None:
    with open(path, "rb") as stream:
        lines = [json.loads(line) for line in stream]
    good = sum(1 for line in lines if line.get("ok") and line.get("result") == line.get("index"))
    if len(lines) != count or good != count:
        raise RuntimeError(f"{who} wrote {len(lines)} lines, {good} correct, of {count} items")


# --- ours -------------------------------------------------------------------------------------


def _ours_once(
    env: BenchRedis, input_path: Path, out: Path, count: int, *options: str
) -> dict[str, Any]:
    victor = [sys.executable, "-m", "orchestrator.cli", "batch"]
    command = [*victor, str(input_path), "--skill", "noop", "--out", str(out), *options]
    started = time.perf_counter()
    done = subprocess.run(
        [*command, "--new", "--json", "-q"],
        env={**os.environ, **env.env()},
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"victor batch exited {done.returncode}: {done.stderr[-2000:]}")
    result = json.loads(done.stdout)
    _check_output(out, count, "victor batch")
    return {
        "items_per_s": count / result["elapsed_s"],
        "wall_items_per_s": count / wall,
        "peak_rss_mb": result["peak_rss_mb"],
    }


def measure_ours(
    env: BenchRedis, work: Path, count: int, repeats: int, large_chunk: int | None
) -> dict[str, Any]:
    """Default options, rounds alternating with ``--chunk-size large_chunk`` when given."""
    for _ in range(2):
        env.worker(concurrency=1)
    warm = work / "warm.jsonl"
    write_input(warm, WARM_ITEMS)
    _ours_once(env, warm, work / "warm-out.jsonl", WARM_ITEMS)
    input_path = work / "input.jsonl"
    runs, large = [], []
    for _ in range(repeats):
        runs.append(_ours_once(env, input_path, work / "ours.jsonl", count))
        if large_chunk is not None:
            chunked = ("--chunk-size", str(large_chunk))
            large.append(_ours_once(env, input_path, work / "ours-large.jsonl", count, *chunked))
    for worker in env.workers:
        worker.kill()
    env.workers.clear()
    result: dict[str, Any] = {
        "items_per_s": summary([run["items_per_s"] for run in runs]),
        "with_cli_start_items_per_s": summary([run["wall_items_per_s"] for run in runs]),
        "driver_peak_rss_mb": max(run["peak_rss_mb"] for run in runs),
    }
    if large:
        result["larger_chunks"] = {
            "chunk_size": large_chunk,
            "items_per_s": summary([run["items_per_s"] for run in large]),
        }
    return result


# --- peers ------------------------------------------------------------------------------------


def _peer_workers(peer: str, python: Path, url: str, namespace: str) -> list[list[str]]:
    """The commands of a peer's two worker processes."""
    bin_dir = python.parent
    if peer == "celery":
        return [
            [
                str(python),
                "-m",
                "celery",
                "-A",
                PEER_MODULE,
                "worker",
                "-c",
                "1",
                "-l",
                "WARNING",
                "-n",
                f"peer{number}@127.0.0.1",
            ]
            for number in range(2)
        ]
    if peer == "dramatiq":
        return [[str(bin_dir / "dramatiq"), PEER_MODULE, "--processes", "2"]]
    if peer == "rq":
        queue = f"{namespace}-rq"  # the client's queue name (batch_peers._rq_client)
        return [[str(bin_dir / "rq"), "worker", "-u", url, queue] for _ in range(2)]
    return [[str(bin_dir / "arq"), f"{PEER_MODULE}.ArqWorker"] for _ in range(2)]


def _peer_once(
    peer: str, python: Path, scratch: Path, env: dict[str, str], input_path: Path, count: int
) -> float:
    out = scratch / f"{peer}.jsonl"
    done = subprocess.run(
        [
            str(python),
            str(scratch / f"{PEER_MODULE}.py"),
            "client",
            peer,
            env["VICTOR_BENCH_PEER_URL"],
            env["VICTOR_BENCH_PEER_NS"],
            str(input_path),
            str(out),
        ],
        env={key: value for key, value in env.items() if key != "VICTOR_BENCH_PEER"},
        cwd=scratch,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{peer} client exited {done.returncode}: {done.stderr[-2000:]}")
    result = json.loads(done.stdout)
    if result["correct"] != count:
        raise RuntimeError(f"{peer} returned {result['correct']} correct results of {count}")
    _check_output(out, count, peer)
    return float(count / result["elapsed_s"])


def measure_peer(
    peer: str, python: Path, env: BenchRedis, work: Path, count: int, repeats: int
) -> dict[str, Any]:
    """Start the peer's two workers, warm them, time ``repeats`` runs, stop them."""
    scratch = work / peer
    scratch.mkdir()
    shutil.copy(Path(__file__).with_name("batch_peers.py"), scratch / f"{PEER_MODULE}.py")
    namespace = f"{env.prefix}{peer}"
    peer_env = {
        **os.environ,
        "PYTHONPATH": str(scratch),
        "VICTOR_BENCH_PEER": peer,
        "VICTOR_BENCH_PEER_URL": env.url,
        "VICTOR_BENCH_PEER_NS": namespace,
    }
    processes: list[subprocess.Popen[bytes]] = []
    log = open(scratch / "workers.log", "wb")
    try:
        for command in _peer_workers(peer, python, env.url, namespace):
            processes.append(
                subprocess.Popen(
                    command, env=peer_env, cwd=scratch, stdout=log, stderr=subprocess.STDOUT
                )
            )
        warm = work / f"warm-{peer}.jsonl"
        write_input(warm, WARM_ITEMS)
        _peer_once(peer, python, scratch, peer_env, warm, WARM_ITEMS)
        rates = [
            _peer_once(peer, python, scratch, peer_env, work / "input.jsonl", count)
            for _ in range(repeats)
        ]
    finally:
        for process in processes:
            _stop(process)
        log.close()
        _delete_matching(env.url, f"*{namespace}*")  # e.g. kombu's bindings of the queue
    return summary(rates)


def _delete_matching(url: str, pattern: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        for key in client.scan_iter(match=pattern, count=1000):
            client.delete(key)
    finally:
        client.close()


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 10 s; the peers' pool children go with their parent."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def run(size: str) -> dict[str, Any]:
    count, repeats, large_chunk = SIZES[size]
    notes: list[str] = []
    peers: dict[str, Any] = {}
    venv_python, why = ensure_peers_venv()
    if why is not None:
        notes.append(f"Dramatiq, RQ and arq skipped: {why}")
    with tempfile.TemporaryDirectory(prefix="victor-bench-batch-") as scratch, bench_redis() as env:
        work = Path(scratch)
        write_input(work / "input.jsonl", count)
        ours = measure_ours(env, work, count, repeats, large_chunk)
        peers["celery"] = measure_peer("celery", Path(sys.executable), env, work, count, repeats)
        if venv_python is not None:
            for peer in VENV_PEERS:
                try:
                    peers[peer] = measure_peer(peer, venv_python, env, work, count, repeats)
                except (RuntimeError, subprocess.TimeoutExpired) as exc:
                    notes.append(f"{peer} skipped: {exc}")
    ours_median = ours["items_per_s"]["median"]
    ratios = {peer: ours_median / result["median"] for peer, result in peers.items()}
    fastest = max(peers, key=lambda peer: peers[peer]["median"])
    larger = ours.get("larger_chunks")
    return {
        "unit": "items/s",
        "ratio": ratios[fastest],
        "fastest_peer": fastest,
        "ratios": ratios,
        "ratio_larger_chunks": (
            larger["items_per_s"]["median"] / peers[fastest]["median"] if larger else None
        ),
        "ours": ours,
        "peer": peers,
        "items": count,
        "repeats": repeats,
        "workers": "two worker processes each (ours: two Celery workers, one pool process each)",
        "notes": notes,
        "chunk_size": "the run's own choice (from the skill's observed time per item; "
        "orchestrator.batch.chunking) unless larger_chunks says",
        "target": "ratio >= 10 over the fastest per-item task queue",
    }

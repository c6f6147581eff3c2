"""D3 memory study: the D3 soak workload through real workers, with per-process RSS and
tracemalloc snapshots diffed per pool child (issue 15, item 7). Not collected by pytest.

    .venv/bin/python -m tests.reliability.d3_memory --seconds 1500 --warmup 300 --out DIR

Two prefork workers of concurrency 2 on a throwaway redis-server, the API in this process and
8 client threads posting D3's goals (``effect`` items, every fifth job with a reduce, an
Idempotency-Key each), as ``test_d3_soak`` does. Worker A runs with ``PYTHONTRACEMALLOC``
(tracemalloc's own tables inflate its RSS); worker B does not, so its RSS is the clean curve.
Both load ``tests.reliability.memprobe``: at warm-up end and at the end each process writes
its object counts and allocator figures (worker A also a tracemalloc snapshot); after the
load stops, each process reports how much RSS ``gc.collect()`` + ``malloc_trim(0)`` give back.

Writes ``DIR/d3_memory.json``: RSS samples (every ``--interval`` s, per process), the linear
fit after warm-up as %/hour, the top tracemalloc growers per child (by file:line and by
traceback), the top object-type growers, the trim figures and the D3 audit.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import tempfile
import threading
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

import psutil

from orchestrator.harness import RedisServer, WorkerProcess
from orchestrator.harness.audit import audit
from tests.conftest import ROOT, settings_env
from tests.orchestrator.api.conftest import serve
from tests.reliability.api_support import API_OVERRIDES, Answer, Load, effect_goal, post
from tests.reliability.conftest import FAULT_TIMEOUTS
from tests.reliability.test_d3_soak import SHORT_TTLS
from workers.celery_app.factory import create_app
from workers.core.errors import JobNotFoundError
from workers.core.settings import Settings
from workers.ledger import TERMINAL

# D3's fault timeouts, except the time limits: a probe that pauses a traced child for a
# snapshot (tens of seconds on a loaded machine) must not trip the hard limit and recycle the
# child (ordering kept: time limit < visibility < stale-after).
TIMEOUTS = {
    **FAULT_TIMEOUTS,
    "task_time_limit_s": 120,
    "task_soft_time_limit_s": 110,
    "visibility_timeout_s": 150,
    "reconciler_stale_after_s": 200,
}


def linear_fit(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least squares ``y = a + b x``; returns (a, b)."""
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0
    return my - b * mx, b


def growth_pct_per_h(points: list[tuple[float, float]]) -> dict[str, float] | None:
    """Fit MB against hours; growth per hour relative to the fitted value at the first point."""
    if len(points) < 3:
        return None
    a, b = linear_fit(points)
    start = a + b * points[0][0]
    return {
        "mb_per_h": round(b, 2),
        "pct_per_h": round(b / start * 100, 2) if start else 0.0,
        "fit_start_mb": round(start, 2),
        "first_mb": round(points[0][1], 2),
        "last_mb": round(points[-1][1], 2),
        "n": len(points),
    }


class Fleet:
    def __init__(self, out: Path, settings: Settings) -> None:
        self.out = out
        self.settings = settings
        self.probe_dir = out / "probe"
        self.probe_dir.mkdir(parents=True, exist_ok=True)
        base = settings_env(settings)
        base["VICTOR_MEMPROBE_DIR"] = str(self.probe_dir)
        extra = ["-I", "tests.reliability.memprobe"]
        self.workers = {
            "A": WorkerProcess(base, concurrency=2, extra_args=extra),
            "B": WorkerProcess(base, concurrency=2, extra_args=extra),
        }

    def start(self) -> None:
        for worker in self.workers.values():
            worker.start(timeout_s=120)

    def processes(self) -> dict[str, int]:
        """label -> pid: ``A.main``, ``A.c<pid>`` for each pool child."""
        out: dict[str, int] = {}
        for name, worker in self.workers.items():
            out[f"{name}.main"] = worker.pid
            for child in worker.children():
                out[f"{name}.c{child.pid}"] = child.pid
        return out

    def probe_pids(self) -> dict[int, dict[str, Any]]:
        mine = set(self.processes().values())
        found = {}
        for path in (self.probe_dir / "pids").glob("*"):
            pid = int(path.name)
            if pid in mine:
                found[pid] = json.loads(path.read_text())
        return found

    def probe(
        self,
        tag: str,
        *,
        snapshot: bool = False,
        trim: bool = False,
        start_tracing: int = 0,
        only: str | None = None,
    ) -> dict[int, Any]:
        """Ask every probed process of ours (of worker ``only``) for its figures; wait."""
        request = {"tag": tag, "snapshot": snapshot, "trim": trim, "start_tracing": start_tracing}
        (self.probe_dir / "request.json").write_text(json.dumps(request))
        pids = self.probe_pids()
        if only is not None:
            mine = {pid for label, pid in self.processes().items() if label.startswith(only)}
            pids = {pid: info for pid, info in pids.items() if pid in mine}
        for pid in pids:
            os.kill(pid, signal.SIGUSR2)
        deadline = time.monotonic() + 120
        results: dict[int, Any] = {}
        while time.monotonic() < deadline and len(results) < len(pids):
            for pid in pids:
                path = self.probe_dir / f"stats-{pid}-{tag}.json"
                if pid not in results and path.exists():
                    results[pid] = json.loads(path.read_text())
            time.sleep(0.2)
        return results

    def stop(self) -> None:
        for worker in self.workers.values():
            worker.terminate(30)


def sample(fleet: Fleet) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for label, pid in fleet.processes().items():
        try:
            info = psutil.Process(pid).memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        out[label] = {"rss_mb": info.rss / 1_048_576, "uss_mb": info.uss / 1_048_576}
    return out


def _growers(stats: list[tracemalloc.StatisticDiff], top: int) -> list[Any]:
    """The ``top`` entries that grew most (compare_to orders by absolute change)."""
    return sorted(stats, key=lambda stat: (-stat.size_diff, -stat.count_diff))[:top]


def tracemalloc_diff(old_path: Path, new_path: Path, top: int = 15) -> dict[str, Any]:
    filters = [
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap_external>"),
        tracemalloc.Filter(False, "*/tests/reliability/memprobe.py"),
    ]
    old = tracemalloc.Snapshot.load(str(old_path)).filter_traces(filters)
    new = tracemalloc.Snapshot.load(str(new_path)).filter_traces(filters)
    total_old = sum(stat.size for stat in old.statistics("filename"))
    total_new = sum(stat.size for stat in new.statistics("filename"))

    def short(filename: str) -> str:
        for marker in ("/site-packages/", str(ROOT) + "/", "/lib/python3.11/"):
            if marker in filename:
                return filename.split(marker, 1)[1]
        return filename

    by_line = [
        {
            "where": f"{short(s.traceback[0].filename)}:{s.traceback[0].lineno}",
            "size_diff_kb": round(s.size_diff / 1024, 1),
            "size_kb": round(s.size / 1024, 1),
            "count_diff": s.count_diff,
            "count": s.count,
        }
        for s in _growers(new.compare_to(old, "lineno"), top)
    ]
    by_tb = [
        {
            "frames": [f"{short(f.filename)}:{f.lineno}" for f in s.traceback][-10:],
            "size_diff_kb": round(s.size_diff / 1024, 1),
            "count_diff": s.count_diff,
        }
        for s in _growers(new.compare_to(old, "traceback"), top)
    ]
    by_file = [
        {
            "file": short(s.traceback[0].filename),
            "size_diff_kb": round(s.size_diff / 1024, 1),
            "count_diff": s.count_diff,
        }
        for s in _growers(new.compare_to(old, "filename"), 10)
    ]
    return {
        "traced_kb_old": round(total_old / 1024, 1),
        "traced_kb_new": round(total_new / 1024, 1),
        "top_by_lineno": by_line,
        "top_by_traceback": by_tb,
        "top_by_file": by_file,
    }


def type_diff(old: dict[str, Any], new: dict[str, Any], top: int = 15) -> list[dict[str, Any]]:
    names = set(old["types"]) | set(new["types"])
    rows = [
        (name, new["types"].get(name, 0) - old["types"].get(name, 0), new["types"].get(name, 0))
        for name in names
    ]
    rows.sort(key=lambda row: -row[1])
    return [{"type": n, "count_diff": d, "count": c} for n, d, c in rows[:top]]


def drain(ledger: Any, job_ids: list[str], timeout_s: float = 300) -> dict[str, int]:
    """Poll the ledger until every job is terminal or gone (records live SHORT_TTLS);
    a record that cannot be read whole (a job hash missing fields) counts as ``unreadable``.
    """
    pending = set(job_ids)
    counts: dict[str, int] = {}
    deadline = time.monotonic() + timeout_s
    while pending and time.monotonic() < deadline:
        for job_id in list(pending):
            try:
                status = ledger.get_job(job_id).status
            except JobNotFoundError:
                status = "expired"
            except KeyError:
                status = "unreadable"
            if status in TERMINAL or status in ("expired", "unreadable"):
                counts[status] = counts.get(status, 0) + 1
                pending.discard(job_id)
        if pending:
            time.sleep(0.2)
    counts["pending_at_timeout"] = len(pending)
    return counts


def run(
    seconds: float, warmup: float, interval: float, out: Path, rate: float, frames: int = 8
) -> dict[str, Any]:
    redis_server = RedisServer().start()
    prefix = f"vm{uuid.uuid4().hex[:8]}"
    oracle = out / "oracle.jsonl"
    settings = Settings(
        redis_url=redis_server.url,
        key_prefix=prefix,
        allowed_roots=[ROOT],
        audit_path=oracle,
        # As the tests' redis_settings: the API runs the probe skills (off by default for
        # tenants: without this every post is a 403 and the fleet idles) and takes bulk.
        api_probe_skills_enabled=True,
        api_max_jobs_in_flight=100_000,
        **{**TIMEOUTS, **API_OVERRIDES, **SHORT_TTLS},
    )
    fleet = Fleet(out, settings)
    app = create_app(settings)
    api = None
    load = None
    result: dict[str, Any] = {
        "seconds": seconds,
        "warmup_s": warmup,
        "interval_s": interval,
        "rate_jobs_per_s": rate,
        "worker_logs": {name: str(w.log_path) for name, w in fleet.workers.items()},
    }
    try:
        fleet.start()
        api = serve(settings)
        token = api.key(tenant="d3")
        local = threading.local()
        clients = 8
        period = clients / rate if rate > 0 else 0.0

        def one(client_id: int, n: int) -> Answer:
            if not hasattr(local, "client"):
                local.client = api.client(token, timeout=30)
                local.next_at = time.monotonic()
            if period:
                # Paced below the fleet's capacity: a steady state, not a growing backlog.
                local.next_at += period
                time.sleep(max(0.0, local.next_at - time.monotonic()))
            key = f"d3-{client_id}-{n}"
            goal = effect_goal([key])
            if n % 5 == 0:
                goal["steps"][0]["items"].append({"key": f"{key}-b"})
                goal["reduce"] = {"skill": "effect", "params": {"key": f"{key}-r"}}
            answer = post(local.client, goal, headers={"Idempotency-Key": key}, tag=key)
            time.sleep(0.01)
            return answer

        started = time.monotonic()
        load = Load().start(clients, one)
        samples: list[dict[str, Any]] = []
        probes: dict[str, dict[int, Any]] = {}
        # (at seconds, tag, tracemalloc snapshot?): stats at minute 1, the warm-up snapshot,
        # stats every 5 minutes after it, the end snapshot after the loop.
        schedule = [(60.0, "m01", False), (warmup, "warm", True)]
        at = warmup + 300
        while at < seconds - 30:
            schedule.append((at, f"m{int(at // 60):02d}", False))
            at += 300
        while (elapsed := time.monotonic() - started) < seconds:
            samples.append({"t_s": round(elapsed, 1), "procs": sample(fleet)})
            if elapsed > 30 and not any(a.status == 202 for a in list(load.answers)):
                refused = list(load.answers)[:1]
                raise RuntimeError(
                    f"no job accepted in {elapsed:.0f} s: {refused[0] if refused else 'no answer'}"
                )
            while schedule and elapsed >= schedule[0][0]:
                _, tag, snap = schedule.pop(0)
                if tag == "warm":
                    # Worker A starts tracing now (and snapshots an almost empty start);
                    # worker B stays untraced: its RSS is the clean curve.
                    probes[tag] = fleet.probe(tag, snapshot=True, start_tracing=frames, only="A")
                    probes[tag].update(fleet.probe(tag, only="B"))
                else:
                    probes[tag] = fleet.probe(tag, snapshot=snap and tag != "warm")
            progress = {
                "t_s": round(elapsed),
                "answers": len(load.answers),
                "probes": list(probes),
                "last": samples[-1],
            }
            (out / "progress.json").write_text(json.dumps(progress))
            with (out / "samples.jsonl").open("a") as log:
                log.write(json.dumps(samples[-1]) + "\n")
            time.sleep(max(0.0, interval - (time.monotonic() - started - elapsed)))
        samples.append({"t_s": round(time.monotonic() - started, 1), "procs": sample(fleet)})
        probes["end"] = fleet.probe("end", snapshot=True, only="A")
        probes["end"].update(fleet.probe("end", only="B"))
        answers = load.stop()
        load = None
        accepted = [a for a in answers if a.status == 202]
        result["drain"] = drain(app.victor.ledger, [str(a.job_id) for a in accepted])  # type: ignore[attr-defined]
        time.sleep(5)
        probes["idle"] = fleet.probe("idle")
        probes["trim"] = fleet.probe("trim", trim=True)
        samples.append({"t_s": round(time.monotonic() - started, 1), "procs": sample(fleet)})
        submitted: list[str] = []
        for answer in accepted:
            submitted.append(answer.tag)
            if int(answer.tag.rsplit("-", 1)[1]) % 5 == 0:
                submitted += [f"{answer.tag}-b", f"{answer.tag}-r"]
        figures = audit("D3-memory", oracle, submitted, write=False)
        result["audit"] = figures.as_dict()
        result["statuses"] = sorted({a.status for a in answers})
        result["jobs"] = len(accepted)
        result["tasks"] = len(submitted)
        result["samples"] = samples
        result["analysis"] = analyse(fleet.probe_dir, samples, warmup, seconds)
    finally:
        if load is not None:
            load.stop()
        if api is not None:
            api.stop()
        fleet.stop()
        app.close()
        redis_server.close()
    return result


def pid_labels(probe_dir: Path, samples: list[dict[str, Any]]) -> dict[int, str]:
    """pid -> ``A.main`` / ``A.c<pid>`` for every process seen (children that were replaced
    too): children from the sample labels, main processes as their parents."""
    labels: dict[int, str] = {}
    worker_of_main: dict[int, str] = {}
    for s in samples:
        for label in s["procs"]:
            worker, _, rest = label.partition(".")
            if rest.startswith("c"):
                labels[int(rest[1:])] = label
    for path in (probe_dir / "pids").glob("*"):
        info = json.loads(path.read_text())
        pid = int(path.name)
        if info["role"] == "child" and pid in labels:
            worker_of_main[int(info["ppid"])] = labels[pid].split(".")[0]
    for pid, worker in worker_of_main.items():
        labels[pid] = f"{worker}.main"
    return labels


def load_probes(probe_dir: Path) -> dict[str, dict[int, Any]]:
    probes: dict[str, dict[int, Any]] = {}
    for path in probe_dir.glob("stats-*.json"):
        _, pid, tag = path.stem.split("-", 2)
        probes.setdefault(tag, {})[int(pid)] = json.loads(path.read_text())
    return probes


def _series(
    samples: list[dict[str, Any]], seconds: float, pick: Any
) -> dict[str, list[tuple[float, float]]]:
    out: dict[str, list[tuple[float, float]]] = {}
    for s in samples:
        if s["t_s"] > seconds + 1:
            continue  # the post-run (idle) sample is not part of the curve
        for label, value in pick(s["procs"]).items():
            out.setdefault(label, []).append((s["t_s"] / 3600, value))
    return out


def analyse(
    probe_dir: Path, samples: list[dict[str, Any]], warmup: float, seconds: float
) -> dict[str, Any]:
    """Growth after warm-up per process (and per worker, and all), the per-minute curve, and
    the warm-up -> end diffs (tracemalloc, object types, allocator) of every probed process."""
    after = warmup / 3600

    def per_process(key: str) -> Any:
        return lambda procs: {label: f[key] for label, f in procs.items()}

    def per_worker(procs: dict[str, Any]) -> dict[str, float]:
        out: dict[str, float] = {}
        for label, f in procs.items():
            out[label[0]] = out.get(label[0], 0.0) + f["rss_mb"]
        out["all"] = sum(f["rss_mb"] for f in procs.values())
        return out

    growth: dict[str, Any] = {}
    rss = _series(samples, seconds, per_process("rss_mb"))
    uss = _series(samples, seconds, per_process("uss_mb"))
    for label, points in rss.items():
        growth[label] = {
            "rss": growth_pct_per_h([p for p in points if p[0] >= after]),
            "uss": growth_pct_per_h([p for p in uss.get(label, []) if p[0] >= after]),
            "rss_whole_run": growth_pct_per_h(points),
        }
    for label, points in _series(samples, seconds, per_worker).items():
        growth[label] = {
            "rss": growth_pct_per_h([p for p in points if p[0] >= after]),
            "rss_whole_run": growth_pct_per_h(points),
        }
    curve: dict[str, dict[str, float]] = {}
    for s in samples:
        if s["t_s"] <= seconds + 1:
            minute = str(int(s["t_s"] // 60))
            curve[minute] = {label: round(f["rss_mb"], 1) for label, f in s["procs"].items()}
    labels = pid_labels(probe_dir, samples)
    probes = load_probes(probe_dir)
    diffs: dict[str, Any] = {}
    warm, end = probes.get("warm", {}), probes.get("end", {})
    for pid in sorted(set(warm) & set(end)):
        label = labels.get(pid, str(pid))
        entry: dict[str, Any] = {"pid": pid, "types": type_diff(warm[pid], end[pid])}
        for name in (
            "gc_objects",
            "allocated_blocks",
            "mallinfo2",
            "status_kb",
            "smaps_rollup_kb",
            "tracemalloc",
            "tracemalloc_overhead",
        ):
            entry[name] = [warm[pid].get(name), end[pid].get(name)]
        old = probe_dir / f"snap-{pid}-warm.pickle"
        new = probe_dir / f"snap-{pid}-end.pickle"
        if old.exists() and new.exists():
            entry["tracemalloc_diff"] = tracemalloc_diff(old, new)
        diffs[label] = entry
    timeline: dict[str, dict[str, Any]] = {}
    for tag, by_pid in sorted(
        probes.items(), key=lambda kv: min(r["time"] for r in kv[1].values())
    ):
        for pid, rec in by_pid.items():
            timeline.setdefault(labels.get(pid, str(pid)), {})[tag] = {
                "rss_kb": rec["status_kb"].get("VmRSS"),
                "gc_objects": rec["gc_objects"],
                "allocated_blocks": rec["allocated_blocks"],
                "malloc_in_use_kb": (rec["mallinfo2"] or {}).get("uordblks", 0) // 1024,
                "malloc_free_kb": (rec["mallinfo2"] or {}).get("fordblks", 0) // 1024,
                "traced_kb": None
                if rec["tracemalloc"] is None
                else rec["tracemalloc"]["current"] // 1024,
                "probe_s": rec["probe_s"],
                **({"trim": rec["trim"]} if "trim" in rec else {}),
            }
    return {"growth": growth, "curve_mb": curve, "diffs": diffs, "probe_timeline": timeline}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1500)
    parser.add_argument("--warmup", type=float, default=300)
    parser.add_argument("--interval", type=float, default=15)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--rate", type=float, default=60, help="jobs/s in all (0: as fast as the API answers)"
    )
    parser.add_argument("--frames", type=int, default=8, help="tracemalloc frames (worker A)")
    parser.add_argument(
        "--analyse", type=Path, default=None, help="re-analyse a finished run's DIR (no fleet)"
    )
    args = parser.parse_args()
    if args.analyse is not None:
        path = args.analyse / "d3_memory.json"
        result = json.loads(path.read_text())
        result["analysis"] = analyse(
            args.analyse / "probe", result["samples"], result["warmup_s"], result["seconds"]
        )
        path.write_text(json.dumps(result, indent=1, default=str))
        print(json.dumps({"out": str(path)}))
        return
    out = args.out or Path(tempfile.mkdtemp(prefix="victor-d3-memory-"))
    out.mkdir(parents=True, exist_ok=True)
    result = run(args.seconds, args.warmup, args.interval, out, args.rate, args.frames)
    path = out / "d3_memory.json"
    path.write_text(json.dumps(result, indent=1, default=str))
    print(json.dumps({"out": str(path), "growth": result["analysis"]["growth"]}, indent=1))


if __name__ == "__main__":
    main()

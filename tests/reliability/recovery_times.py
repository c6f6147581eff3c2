#!/usr/bin/env python
"""Recovery after SIGKILL on a real two-worker prefork fleet at default settings (issue 15).

Per run: a throwaway redis-server (harness RedisServer, own port), two `celery -A workers worker`
processes (harness WorkerProcess, prefork, -c 2, cwd = the checkout, no VICTOR_* setting but the
Redis URL and the audit oracle path: every delivery timeout at its default, visibility 600 s),
then `victor run goal.json --json --out out.jsonl` as a user runs it. The goal holds N items
(`chunk_size: 1` in the goal, one task per item, as in the issue's 80-task job) of the `effect`
probe (= `sleep` of `ms` plus one line per execution start/end in the oracle file, which is how
the reliability tests audit exactly-once) or of `sleep` itself (--skill sleep; exactly-once is then
checked from the ledger outcomes only).

~KILL_AFTER s after the job id is printed:
  main  -> SIGKILL the main process of a busy worker, then its pool children, by pid
           (what `kill -9` of a worker container / process group does);
  child -> SIGKILL one pool child that is running an item;
  none  -> no fault (baseline job time).

Figures: kill -> job terminal in the ledger (`updated_at`), kill -> `victor run` exit, exit code,
status; audit (lost, dup_exec, dup_effect, interrupted, requeue_s = kill -> last interrupted
item finished on its re-run); out.jsonl checked for every item exactly once and ok; for `main`,
a later kombu-style restore of the dead worker's unacked messages must run nothing again.

Not collected by pytest. From the checkout, with no VICTOR_* variable set:

    .venv/bin/python -m tests.reliability.recovery_times \
        --modes none,main,main,main,child,child,child

Each run prints one JSON line (also appended to ``--out``), then the medians per mode.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import psutil
import redis

from orchestrator.harness import RedisServer, WorkerProcess
from orchestrator.harness.audit import audit
from workers.celery_app.factory import create_app
from workers.core.settings import Settings

VICTOR = [sys.executable, "-m", "orchestrator.cli"]


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().split(" ")[:3].__str__()


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def running(oracle: Path) -> list[dict]:
    starts: dict = {}
    if oracle.exists():
        for line in oracle.read_text().splitlines():
            if not line.strip():
                continue
            record = json.loads(line)
            ident = (record["task_key"], record["pid"], record["start"])
            if record["kind"] == "start":
                starts[ident] = record
            else:
                starts.pop(ident, None)
    return list(starts.values())


def executions(oracle: Path) -> int:
    if not oracle.exists():
        return 0
    return sum(1 for line in oracle.read_text().splitlines() if '"kind":"start"' in line)


def one_run(
    mode: str, run: int, n: int, ms: int, kill_after: float, skill: str, chunk_size: int = 1
) -> dict:
    label = f"{mode}{run}"
    load_before = loadavg()
    with RedisServer() as server:
        work = Path(tempfile.mkdtemp(prefix=f"i15-{label}-"))
        oracle = work / "oracle.jsonl"
        env = {"VICTOR_REDIS_URL": server.url, "VICTOR_AUDIT_PATH": str(oracle)}
        assert not any(k.startswith("VICTOR_") for k in os.environ), "clean env expected"
        workers = [
            WorkerProcess(env, concurrency=2, pool="prefork", hostname=f"{label}w{i}@127.0.0.1")
            for i in range(2)
        ]
        for worker in workers:
            worker.start(wait=False)
        for worker in workers:
            worker.wait_ready(120)
        settings = Settings(redis_url=server.url, audit_path=oracle)
        assert settings.visibility_timeout_s == 600 and settings.worker_heartbeat_ttl_s == 6
        app = create_app(settings)
        keys = [f"{label}-{i}" for i in range(n)]
        if skill == "effect":
            items = [{"key": key, "ms": ms} for key in keys]
        else:
            items = [{"ms": ms, "value": key} for key in keys]
        goal = work / "goal.json"
        spec: dict = {"name": f"i15-{label}", "steps": [{"skill": skill, "items": items}]}
        if chunk_size:  # 0: the default chunk_size setting (50 items per task)
            spec["chunk_size"] = chunk_size
        goal.write_text(json.dumps(spec))
        out = work / "out.jsonl"
        started = time.time()
        client = subprocess.Popen(
            [*VICTOR, "run", str(goal), "--json", "--out", str(out)],
            cwd=work,
            env={**os.environ, **env, "COLUMNS": "200"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert client.stderr is not None
        first = client.stderr.readline()
        accepted_at = time.time()
        match = re.match(r"job (\S+?):", first)
        assert match, first
        job_id = match.group(1)
        victim_info: dict = {}
        kill_at = None
        if mode != "none":
            time.sleep(max(0.0, accepted_at + kill_after - time.time()))
            busy = running(oracle) if skill == "effect" else []
            if mode == "main":
                busy_hosts = {r["worker"] for r in busy}
                victim = next((w for w in workers if w.hostname in busy_hosts), workers[0])
                children = [c.pid for c in victim.children()]
                held = [r["task_key"] for r in busy if r["worker"] == victim.hostname]
                os.kill(victim.pid, signal.SIGKILL)
                kill_at = time.time()
                for pid in children:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                victim.process.wait(10)
                victim_info = {
                    "worker": victim.hostname,
                    "main_pid": victim.pid,
                    "children": children,
                    "running_at_kill": held,
                }
                survivors = [w for w in workers if w is not victim]
            else:
                child_pids = {c.pid: w for w in workers for c in w.children()}
                pick = next((r for r in busy if r["pid"] in child_pids), None)
                pid = pick["pid"] if pick else next(iter(child_pids))
                os.kill(pid, signal.SIGKILL)
                kill_at = time.time()
                victim_info = {
                    "worker": child_pids[pid].hostname,
                    "child_pid": pid,
                    "running_in_child": pick["task_key"] if pick else None,
                }
                survivors = workers
        else:
            survivors = workers
        try:
            stdout, stderr = client.communicate(timeout=720)
        except subprocess.TimeoutExpired:
            client.kill()
            stdout, stderr = client.communicate()
        exited_at = time.time()
        job = app.victor.ledger.get_job(job_id)
        result: dict = {
            "label": label,
            "mode": mode,
            "skill": skill,
            "items": n,
            "ms": ms,
            "chunk_size": chunk_size or "default",
            "load_before": load_before,
            "load_after": loadavg(),
            "job_id": job_id,
            "exit_code": client.returncode,
            "status": job.status,
            "done_tasks": job.done_tasks,
            "total_tasks": job.total_tasks,
            "failed_items": job.failed_items,
            "job_wall_s": round(job.updated_at - accepted_at, 2),
            "client_wall_s": round(exited_at - started, 2),
            "victim": victim_info,
        }
        if kill_at is not None:
            result["kill_after_accept_s"] = round(kill_at - accepted_at, 2)
            result["kill_to_job_end_s"] = round(job.updated_at - kill_at, 2)
            result["kill_to_client_exit_s"] = round(exited_at - kill_at, 2)
            result["executions_before_kill"] = None
        # Every item exactly once in the outcomes the user gets (--out).
        lines = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
        per_index = Counter(line["index"] for line in lines)
        result["out_lines"] = len(lines)
        result["out_ok"] = sum(1 for line in lines if line.get("ok"))
        result["out_each_index_once"] = sorted(per_index) == list(range(n)) and set(
            per_index.values()
        ) == {1}
        if skill == "effect":
            audited = audit(f"I15-{label}", oracle, keys, fault_at=kill_at, write=False)
            result["audit"] = {
                k: getattr(audited, k)
                for k in (
                    "accepted",
                    "completed",
                    "lost",
                    "unexpected",
                    "dup_exec",
                    "dup_effect",
                    "executions",
                    "interrupted",
                    "requeue_s",
                    "recovery_s",
                )
            }
        # Survivors' recovery log lines (WARNING level, timestamped by Celery).
        recovered = [line for w in survivors for line in w.log().splitlines() if "recover" in line]
        result["recovery_log"] = [line[-240:] for line in recovered[-3:]]
        if mode == "main" and skill == "effect":
            # What kombu does once the 600 s visibility timeout passes: restore what the dead
            # worker left unacked. No copy may run a skill again.
            before = executions(oracle)
            with app.connection_for_write() as connection:
                channel = connection.default_channel
                with channel.conn_or_acquire() as rclient:
                    tags = [
                        t.decode() for t in rclient.zrange(channel.qos.unacked_index_key, 0, -1)
                    ]
                    for tag in tags:
                        channel.qos.restore_by_tag(tag, client=rclient)
            deadline = time.time() + 30
            rc = redis.Redis.from_url(server.url)
            while time.time() < deadline:
                with app.connection_for_write() as connection:
                    channel = connection.default_channel
                    with channel.conn_or_acquire() as rclient:
                        left = rclient.llen("victor") + rclient.zcard(channel.qos.unacked_index_key)
                if left == 0:
                    break
                time.sleep(0.2)
            time.sleep(1.0)
            rc.close()
            result["late_restore"] = {
                "restored": len(tags),
                "executions_before": before,
                "executions_after": executions(oracle),
            }
        result["stdout_tail"] = stdout.strip().splitlines()[-1][:300] if stdout.strip() else ""
        last = [line.strip() for line in stderr.strip().splitlines()][-3:]
        result["stderr"] = [first.strip(), *last]
        app.close()
        for worker in workers:
            worker.kill()
        result["work_dir"] = str(work)
        return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--modes", default="none,main,main,main,child,child,child")
    parser.add_argument("--items", type=int, default=80)
    parser.add_argument("--ms", type=int, default=250)
    parser.add_argument("--kill-after", type=float, default=2.0)
    parser.add_argument("--skill", default="effect", choices=["effect", "sleep"])
    parser.add_argument("--chunk-size", type=int, default=1, help="0 = the default setting (50)")
    default_out = Path(tempfile.gettempdir()) / "victor-recovery-times.jsonl"
    parser.add_argument("--out", default=str(default_out))
    args = parser.parse_args()
    results = []
    counts: Counter = Counter()
    for mode in args.modes.split(","):
        counts[mode] += 1
        result = one_run(
            mode, counts[mode], args.items, args.ms, args.kill_after, args.skill, args.chunk_size
        )
        results.append(result)
        print(json.dumps(result), flush=True)
        with open(args.out, "a") as handle:
            handle.write(json.dumps(result) + "\n")
    for mode in ("main", "child"):
        figures = [r["kill_to_job_end_s"] for r in results if r["mode"] == mode]
        if figures:
            print(f"{mode}: kill->job end s {figures} median {statistics.median(figures)}")


if __name__ == "__main__":
    main()

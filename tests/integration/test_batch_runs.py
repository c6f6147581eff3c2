"""``victor batch`` end to end: inputs and exit codes embedded; kills and resumes on a fleet."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from orchestrator.harness import WorkerProcess
from tests.conftest import ROOT, settings_env
from workers.core.settings import Settings

CHUNK, WINDOW = 50, 8
VICTOR = [sys.executable, "-m", "orchestrator.cli", "batch"]


def _cli(
    args: list[str],
    env: dict[str, str] | None = None,
    stdin: bytes | None = None,
    timeout: float = 240,
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*VICTOR, *args, "-q"],
        env={**os.environ, **(env or {})},
        input=stdin,
        capture_output=True,
        cwd=ROOT,
        timeout=timeout,
        check=False,
    )


def _jsonl(path: Path, items: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(item) + "\n" for item in items))
    return path


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _summary(result: subprocess.CompletedProcess[bytes]) -> dict[str, Any]:
    assert result.stdout, result.stderr.decode()
    return dict(json.loads(result.stdout))


def test_stdin_input_runs_embedded_and_succeeds(tmp_path: Path) -> None:
    body = b"".join(b'{"value": %d}\n' % i for i in range(300))
    result = _cli(
        ["-", "--skill", "noop", "--out", str(tmp_path / "o.jsonl"), "--json"], stdin=body
    )
    assert result.returncode == 0, result.stderr.decode()
    lines = _lines(tmp_path / "o.jsonl")
    assert sorted(line["index"] for line in lines) == list(range(300))
    assert all(line["ok"] and line["result"] == line["index"] for line in lines)


def test_csv_input_names_items_by_the_header_and_reports_partial(tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    (tmp_path / "in2.csv").write_text("value,ms\na,0\nb,x\nc,\n")
    result = _cli([str(tmp_path / "in2.csv"), "--skill", "sleep", "--out", str(out)])
    assert result.returncode == 3, result.stderr.decode()
    lines = {line["index"]: line for line in _lines(out)}
    assert lines[0]["ok"] and lines[2]["ok"] and not lines[1]["ok"]
    errors = _lines(tmp_path / "o.errors.jsonl")
    assert [(e["index"], e["line"], e["skill"]) for e in errors] == [(1, 3, "sleep")]


def test_directory_input_runs_one_item_per_file(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for number in range(12):
        (source / f"m{number}.py").write_text(f"def f{number}():\n    return {number}\n")
    out = tmp_path / "o.jsonl"
    result = _cli([str(source), "--skill", "analyze_code", "--out", str(out), "--include", "*.py"])
    assert result.returncode == 0, result.stderr.decode()
    assert len(_lines(out)) == 12 and all(line["ok"] for line in _lines(out))


def test_malformed_lines_go_to_the_errors_file_and_the_run_goes_on(tmp_path: Path) -> None:
    lines = [b'{"value": %d}' % i for i in range(200)]
    lines[10], lines[150] = b"{not json", b"\xff\xfe"
    (tmp_path / "in.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / "o.jsonl"
    result = _cli([str(tmp_path / "in.jsonl"), "--skill", "noop", "--out", str(out), "--json"])
    assert result.returncode == 3, result.stderr.decode()
    assert len(_lines(out)) == 200 and _summary(result)["failed_items"] == 2
    errors = _lines(tmp_path / "o.errors.jsonl")
    assert sorted(e["line"] for e in errors) == [11, 151]
    assert b"Traceback" not in result.stderr


def test_bad_arguments_exit_2_before_anything_runs(tmp_path: Path) -> None:
    _jsonl(tmp_path / "in.jsonl", [{"value": 1}])
    out = str(tmp_path / "o.jsonl")
    for args in (
        [str(tmp_path / "in.jsonl"), "--skill", "nope", "--out", out],
        [str(tmp_path / "missing.jsonl"), "--skill", "noop", "--out", out],
        [str(tmp_path / "in.jsonl"), "--skill", "noop", "--out", out, "--params", "{bad"],
        [str(tmp_path / "in.jsonl"), "--skill", "noop", "--out", "/nonexistent/dir/o.jsonl"],
    ):
        result = _cli(args)
        assert result.returncode == 2, (args, result.stderr.decode())
        assert b"Traceback" not in result.stderr


def test_dry_run_prints_the_plan_and_runs_nothing(tmp_path: Path) -> None:
    _jsonl(tmp_path / "in.jsonl", [{"value": i} for i in range(120)])
    out = tmp_path / "o.jsonl"
    args = [str(tmp_path / "in.jsonl"), "--skill", "noop", "--out", str(out), "--dry-run"]
    result = _cli([*args, "--json", "--chunk-size", "50"])
    assert result.returncode == 0
    plan = _summary(result)
    assert plan["items"] == 120 and plan["chunks"] == 3 and not out.exists()


# --- on a fleet ------------------------------------------------------------------------------

FLEET_TIMEOUTS: dict[str, Any] = {
    "task_time_limit_s": 4,
    "task_soft_time_limit_s": 3,
    "visibility_timeout_s": 6,
    "reconciler_stale_after_s": 10,
    "unacked_restore_interval_s": 1,
}


def _fleet(
    redis_settings: Callable[..., Settings],
    worker_factory: Callable[..., WorkerProcess],
    tmp_path: Path,
) -> tuple[dict[str, str], Path, list[WorkerProcess]]:
    audit = tmp_path / "audit.jsonl"
    settings = redis_settings(audit_path=audit, **FLEET_TIMEOUTS)
    workers = [worker_factory(settings, concurrency=2) for _ in range(2)]
    return settings_env(settings), audit, workers


def _starts(audit: Path) -> Counter[str]:
    return Counter(record["task_key"] for record in _lines(audit) if record.get("kind") == "start")


def _wait_lines(path: Path, at_least: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if path.exists() and path.read_bytes().count(b"\n") >= at_least:
            return
        time.sleep(0.02)
    raise AssertionError(f"the driver wrote fewer than {at_least} lines (rc {process.poll()})")


@pytest.mark.redis
@pytest.mark.integration
def test_driver_killed_mid_run_resumes_with_each_item_once(
    redis_settings: Callable[..., Settings],
    worker_factory: Callable[..., WorkerProcess],
    tmp_path: Path,
) -> None:
    _kill_the_driver_and_resume(10_000, redis_settings, worker_factory, tmp_path)


@pytest.mark.soak
@pytest.mark.redis
@pytest.mark.integration
@pytest.mark.timeout(1800)
def test_driver_killed_mid_run_resumes_with_each_item_once_at_100k(
    redis_settings: Callable[..., Settings],
    worker_factory: Callable[..., WorkerProcess],
    tmp_path: Path,
) -> None:
    _kill_the_driver_and_resume(100_000, redis_settings, worker_factory, tmp_path)


def _kill_the_driver_and_resume(
    total: int,
    redis_settings: Callable[..., Settings],
    worker_factory: Callable[..., WorkerProcess],
    tmp_path: Path,
) -> None:
    env, audit, _ = _fleet(redis_settings, worker_factory, tmp_path)
    _jsonl(tmp_path / "in.jsonl", [{"key": f"k{i}"} for i in range(total)])
    out = tmp_path / "o.jsonl"
    args = [str(tmp_path / "in.jsonl"), "--skill", "effect", "--out", str(out)]
    args += ["--chunk-size", str(CHUNK), "--window", str(WINDOW), "-q", "--json"]
    driver = subprocess.Popen([*VICTOR, *args], env={**os.environ, **env}, cwd=ROOT)
    _wait_lines(out, total // 3, driver)
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    written_at_kill = len(out.read_bytes().splitlines())
    result = _cli(args, env=env, timeout=1200)  # the same command again resumes the run
    assert result.returncode == 0, result.stderr.decode()
    summary = _summary(result)
    assert summary["skipped_chunks"] * CHUNK >= total // 3 - WINDOW * CHUNK
    indexes = Counter(line["index"] for line in _lines(out))
    assert set(indexes) == set(range(total)) and max(indexes.values()) == 1
    starts = _starts(audit)
    assert set(starts) == {f"k{i}" for i in range(total)}
    rerun = [key for key, count in starts.items() if count > 1]
    assert len(rerun) <= WINDOW * CHUNK, (len(rerun), written_at_kill)
    print(f"\nbatch resume: killed at {written_at_kill} lines; {summary}; re-run {len(rerun)}")


@pytest.mark.redis
@pytest.mark.integration
def test_worker_killed_mid_run_loses_nothing(
    redis_settings: Callable[..., Settings],
    worker_factory: Callable[..., WorkerProcess],
    tmp_path: Path,
) -> None:
    total = 4_000
    env, audit, workers = _fleet(redis_settings, worker_factory, tmp_path)
    _jsonl(tmp_path / "in.jsonl", [{"key": f"w{i}", "ms": 1} for i in range(total)])
    out = tmp_path / "o.jsonl"
    args = [
        str(tmp_path / "in.jsonl"),
        "--skill",
        "effect",
        "--out",
        str(out),
        "--stale-after",
        "4",
    ]
    args += ["--chunk-size", "20", "--window", str(WINDOW), "-q", "--json"]
    driver = subprocess.Popen(
        [*VICTOR, *args], env={**os.environ, **env}, cwd=ROOT, stdout=subprocess.PIPE
    )
    _wait_lines(out, total // 4, driver)
    workers[0].kill()
    stdout, _ = driver.communicate(timeout=240)
    assert driver.returncode == 0
    indexes = Counter(line["index"] for line in _lines(out))
    assert set(indexes) == set(range(total)) and max(indexes.values()) == 1
    assert all(line["ok"] for line in _lines(out))
    assert set(_starts(audit)) == {f"w{i}" for i in range(total)}
    print(f"\nbatch worker kill: {json.loads(stdout)}")


@pytest.mark.redis
@pytest.mark.integration
def test_driver_memory_is_flat_from_1k_to_10k_items(
    redis_settings: Callable[..., Settings],
    worker_factory: Callable[..., WorkerProcess],
    tmp_path: Path,
) -> None:
    _driver_memory_is_flat((1_000, 10_000), redis_settings, worker_factory, tmp_path)


@pytest.mark.soak
@pytest.mark.redis
@pytest.mark.integration
@pytest.mark.timeout(1800)
def test_driver_memory_is_flat_from_1k_to_100k_items(
    redis_settings: Callable[..., Settings],
    worker_factory: Callable[..., WorkerProcess],
    tmp_path: Path,
) -> None:
    _driver_memory_is_flat((1_000, 100_000), redis_settings, worker_factory, tmp_path)


def _driver_memory_is_flat(
    sizes: tuple[int, int],
    redis_settings: Callable[..., Settings],
    worker_factory: Callable[..., WorkerProcess],
    tmp_path: Path,
) -> None:
    env, _, _ = _fleet(redis_settings, worker_factory, tmp_path)
    peaks = {}
    for total in sizes:
        source = _jsonl(tmp_path / f"in{total}.jsonl", [{"value": i} for i in range(total)])
        result = _cli(
            [str(source), "--skill", "noop", "--out", str(tmp_path / f"o{total}.jsonl"), "--json"],
            env=env,
            timeout=1200,
        )
        assert result.returncode == 0, result.stderr.decode()
        summary = _summary(result)
        assert summary["items"] == total
        peaks[total] = summary["peak_rss_mb"]
        print(f"\nbatch {total}: {summary['items_per_s']} items/s, peak RSS {peaks[total]} MB")
    assert peaks[sizes[1]] <= peaks[sizes[0]] * 1.2, peaks

"""A real ``celery -A workers worker`` subprocess, started with a pid file and stopped by pid."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil
import redis

from workers.core.keys import Keys

ROOT = Path(__file__).resolve().parents[2]  # the checkout (worker cwd)


class WorkerProcess:
    """One worker process with its own hostname; readiness comes from its worker_ready hook."""

    def __init__(
        self,
        env: dict[str, str],
        *,
        concurrency: int = 2,
        pool: str = "prefork",
        hostname: str | None = None,
        extra_args: list[str] | None = None,
        loglevel: str = "WARNING",
        app: str = "workers",
    ) -> None:
        self.env = {**os.environ, **env}
        self.concurrency = concurrency
        self.pool = pool
        self.hostname = hostname or f"w{uuid.uuid4().hex[:8]}@127.0.0.1"
        self.extra_args = extra_args or []
        self.loglevel = loglevel
        self.app = app
        self.log_dir = Path(tempfile.mkdtemp(prefix="victor-worker-"))
        self.log_path = self.log_dir / "worker.log"
        self.pid_path = self.log_dir / "worker.pid"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "celery",
            "-A",
            self.app,
            "worker",
            "-l",
            self.loglevel,
            "-P",
            self.pool,
            "-c",
            str(self.concurrency),
            "-n",
            self.hostname,
            "-Q",
            "victor",
            "--without-mingle",
            "--without-gossip",
            "--pidfile",
            str(self.pid_path),
            *self.extra_args,
        ]

    def start(self, wait: bool = True, timeout_s: float = 60) -> WorkerProcess:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.command(),
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if wait:
            self.wait_ready(timeout_s)
        return self

    def ready_key(self) -> str:
        return Keys(self.env.get("VICTOR_KEY_PREFIX", "victor")).worker_ready(self.hostname)

    def wait_ready(self, timeout_s: float = 60) -> float:
        """Block until the worker's ready key appears; return seconds waited."""
        url = self.env.get("VICTOR_REDIS_URL") or self.env["VICTOR_BROKER_URL"]
        client = redis.Redis.from_url(url)
        started = time.monotonic()
        try:
            while time.monotonic() - started < timeout_s:
                if client.exists(self.ready_key()):
                    return time.monotonic() - started
                if self.process is not None and self.process.poll() is not None:
                    raise RuntimeError(f"worker exited early:\n{self.log()}")
                time.sleep(0.02)
        finally:
            client.close()
        raise RuntimeError(f"worker {self.hostname} not ready in {timeout_s} s:\n{self.log()}")

    def children(self) -> list[psutil.Process]:
        try:
            children: list[psutil.Process] = psutil.Process(self.pid).children(recursive=False)
            return children
        except psutil.NoSuchProcess:
            return []

    def kill_child(self, child_pid: int | None = None) -> int:
        """SIGKILL one pool child (the first one unless ``child_pid`` is given)."""
        pid = child_pid or self.children()[0].pid
        os.kill(pid, signal.SIGKILL)
        return pid

    def kill(self) -> None:
        """SIGKILL the worker's whole process group."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def terminate(self, timeout_s: float = 30) -> None:
        """Warm shutdown (SIGTERM), then SIGKILL after ``timeout_s``."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.terminate()

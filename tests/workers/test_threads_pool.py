"""ResizableThreadPool: the pool object alone, then a real worker on Redis grown and shrunk."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery

from workers.pools.threads import ResizableThreadPool

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/13"
POOL_PATH = "workers.pools.threads:ResizableThreadPool"
PREFETCH_MULTIPLIER = 4


def _wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``check`` until it holds, failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


class _Probe:
    """Counts the jobs running at once in the pool and the highest count seen."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active = 0
        self.started = 0
        self.seen_at_start: list[int] = []

    def job(self, gate: threading.Event, hold_s: float) -> int:
        """Wait for ``gate``, hold the slot ``hold_s`` more, return the count seen at start."""
        with self.lock:
            self.active += 1
            self.started += 1
            now = self.active
            self.seen_at_start.append(now)
        try:
            gate.wait(timeout=10)
            time.sleep(hold_s)
        finally:
            with self.lock:
                self.active -= 1
        return now


def test_grow_and_shrink_change_the_reported_size() -> None:
    """Grow and shrink move num_processes and info; shrinking below 1 is refused."""
    pool = ResizableThreadPool(2)
    pool.start()
    try:
        assert pool.num_processes == 2
        assert pool.info["max-concurrency"] == 2
        pool.grow(2)
        assert pool.num_processes == 4
        assert pool.info["max-concurrency"] == 4
        pool.grow()
        pool.shrink()
        pool.shrink(3)
        assert pool.num_processes == 1
        assert pool.info["max-concurrency"] == 1
        with pytest.raises(ValueError, match="minimum is 1"):
            pool.shrink(1)
        with pytest.raises(ValueError, match="0 or more"):
            pool.grow(-1)
        assert pool.num_processes == 1
        assert pool.info["implementation"] == POOL_PATH
    finally:
        pool.stop()
    assert ResizableThreadPool(0).num_processes == 1


def test_submissions_are_bounded_by_the_current_size() -> None:
    """At most size jobs run; grow starts waiting ones; shrink interrupts no running job."""
    pool = ResizableThreadPool(2)
    pool.start()
    probe = _Probe()
    gate = threading.Event()
    returned: list[int] = []
    try:
        results = [
            pool.apply_async(
                probe.job, args=(gate, 0.0 if i < 4 else 0.02), callback=returned.append
            )
            for i in range(8)
        ]
        _wait_until(lambda: probe.started == 2, 5, "two jobs to start")
        time.sleep(0.1)
        assert probe.started == 2
        assert pool.info["waiting"] == 6

        pool.grow(2)
        _wait_until(lambda: probe.started == 4, 5, "two more jobs to start after the grow")
        time.sleep(0.1)
        assert probe.started == 4
        assert probe.active == 4

        pool.shrink(3)
        assert pool.num_processes == 1
        assert probe.active == 4
        gate.set()
        for result in results:
            result.wait(timeout=10)
        assert [result.get(timeout=0) for result in results] == [None] * 8
        _wait_until(lambda: len(returned) == 8, 5, "all callbacks")
        assert probe.seen_at_start[:2] == [1, 2]
        assert max(probe.seen_at_start[:4]) == 4
        assert probe.seen_at_start[4:] == [1, 1, 1, 1]
        assert pool.info["threads"] <= 4
        _wait_until(lambda: pool.info["running"] == 0, 5, "the slots to be freed")
    finally:
        gate.set()
        pool.stop()


def test_a_failing_task_frees_its_slot() -> None:
    """An error reaches the result and the slot serves the next task."""
    pool = ResizableThreadPool(1)
    pool.start()

    def boom() -> None:
        raise RuntimeError("boom")

    try:
        failing = pool.apply_async(boom)
        passing = pool.apply_async(lambda: 7, callback=lambda value: None)
        failing.wait(timeout=5)
        with pytest.raises(RuntimeError, match="boom"):
            failing.get(timeout=0)
        passing.wait(timeout=5)
        assert passing.get(timeout=0) is None
    finally:
        pool.stop()


def test_stop_cancels_waiting_tasks_and_waits_for_running_ones() -> None:
    """Stopping lets the running task finish and cancels the one still waiting."""
    pool = ResizableThreadPool(1)
    pool.start()
    probe = _Probe()
    gate = threading.Event()
    running = pool.apply_async(probe.job, args=(gate, 0.0), callback=lambda value: None)
    waiting = pool.apply_async(probe.job, args=(gate, 0.0), callback=lambda value: None)
    _wait_until(lambda: probe.started == 1, 5, "the first job to start")
    stopper = threading.Thread(target=pool.stop)
    stopper.start()
    _wait_until(lambda: waiting.f.cancelled(), 5, "the waiting job to be cancelled")
    gate.set()
    stopper.join(timeout=10)
    assert not stopper.is_alive()
    assert running.f.done() and not running.f.cancelled()
    assert probe.started == 1
    with pytest.raises(RuntimeError, match="after shutdown"):
        pool.apply_async(probe.job, args=(gate, 0.0))


POOL_APP = textwrap.dedent(
    '''
    """A tiny Celery app for the resizable threads pool test."""

    import os
    import threading
    import time

    import redis
    from celery import Celery
    from celery.signals import worker_ready

    URL = os.environ["POOLTEST_REDIS_URL"]
    PREFIX = os.environ["POOLTEST_PREFIX"]
    QUEUE = os.environ["POOLTEST_QUEUE"]

    app = Celery("poolapp", broker=URL, backend=URL)
    app.conf.update(
        broker_transport_options={"global_keyprefix": PREFIX},
        result_backend_transport_options={"global_keyprefix": PREFIX},
        task_default_queue=QUEUE,
        worker_prefetch_multiplier=int(os.environ["POOLTEST_PREFETCH_MULTIPLIER"]),
        broker_connection_retry_on_startup=True,
    )

    client = redis.Redis.from_url(URL)
    enter = client.register_script(
        """
        local now = redis.call('INCR', KEYS[1])
        local top = tonumber(redis.call('GET', KEYS[2]) or '0')
        if now > top then redis.call('SET', KEYS[2], now) end
        return now
        """
    )


    @worker_ready.connect
    def announce(**_):
        client.set(PREFIX + "ready", os.getpid())


    @app.task(name="poolapp.sleep_task")
    def sleep_task(phase, ms):
        began = time.monotonic()
        now = enter(keys=[PREFIX + "cur", PREFIX + "max:" + phase])
        client.incr(PREFIX + "started:" + phase)
        try:
            time.sleep(ms / 1000)
        finally:
            client.decr(PREFIX + "cur")
        return {
            "phase": phase,
            "concurrent": int(now),
            "threads": threading.active_count(),
            "elapsed_ms": (time.monotonic() - began) * 1000,
        }
    '''
)


@dataclass
class PoolWorker:
    """A running worker on the resizable threads pool, and a client app to drive it."""

    app: Celery
    client: redis.Redis
    hostname: str
    prefix: str
    queue: str
    proc: subprocess.Popen[bytes]
    log: Path

    def run(self, phase: str, count: int, ms: int, timeout: float = 15.0) -> list[dict[str, Any]]:
        """Send ``count`` sleep tasks and wait for all their results."""
        return self.wait(self.send(phase, count, ms), timeout)

    def send(self, phase: str, count: int, ms: int) -> list[Any]:
        """Send ``count`` sleep tasks of ``ms`` milliseconds to the worker's queue."""
        return [
            self.app.send_task("poolapp.sleep_task", args=(phase, ms), queue=self.queue)
            for _ in range(count)
        ]

    def wait(self, results: list[Any], timeout: float) -> list[dict[str, Any]]:
        """Collect every result within ``timeout`` seconds overall."""
        deadline = time.monotonic() + timeout
        values = []
        for result in results:
            left = max(0.1, deadline - time.monotonic())
            values.append(result.get(timeout=left))
        return values

    def max_seen(self, phase: str) -> int:
        """The most tasks running at once when a task of ``phase`` started."""
        return int(self.client.get(f"{self.prefix}max:{phase}") or 0)

    def started(self, phase: str) -> int:
        """How many tasks of ``phase`` have started."""
        return int(self.client.get(f"{self.prefix}started:{phase}") or 0)

    def control(self, command: str, n: int) -> dict[str, Any]:
        """Send ``pool_grow``/``pool_shrink`` to this worker and return its reply."""
        method = getattr(self.app.control, command)
        replies = method(n, destination=[self.hostname], reply=True, timeout=5)
        assert len(replies) == 1, replies
        reply: dict[str, Any] = replies[0][self.hostname]
        return reply

    def stats(self) -> dict[str, Any]:
        """This worker's ``inspect stats``."""
        answer = self.app.control.inspect(destination=[self.hostname], timeout=5).stats()
        assert answer and self.hostname in answer, answer
        found: dict[str, Any] = answer[self.hostname]
        return found


def _test_redis_url() -> str:
    """The test Redis: VICTOR_TEST_REDIS_URL or db 13 locally; skip without one, unless CI."""
    url = os.environ.get("VICTOR_TEST_REDIS_URL", DEFAULT_REDIS_URL)
    try:
        probe = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
        probe.ping()
        probe.close()
    except redis.RedisError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"no Redis at {url}: {exc}")
        pytest.skip(f"no Redis at {url}: {exc}")
    return url


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the worker by its pid: SIGTERM, then SIGKILL after a timeout."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


@pytest.fixture
def pool_worker(tmp_path: Path) -> Iterator[PoolWorker]:
    """A worker started with ``-P custom -c 2`` on the resizable pool, own queue and key prefix."""
    url = _test_redis_url()
    token = uuid.uuid4().hex[:12]
    prefix = f"vt-pool-{token}:"
    queue = f"vt-pool-{token}"
    hostname = f"pooltest-{token}@localhost"
    (tmp_path / "poolapp.py").write_text(POOL_APP)
    log = tmp_path / "worker.log"
    env = dict(os.environ)
    env.update(
        POOLTEST_REDIS_URL=url,
        POOLTEST_PREFIX=prefix,
        POOLTEST_QUEUE=queue,
        POOLTEST_PREFETCH_MULTIPLIER=str(PREFETCH_MULTIPLIER),
        CELERY_CUSTOM_WORKER_POOL=POOL_PATH,
        PYTHONPATH=os.pathsep.join(
            part for part in (str(tmp_path), str(ROOT), env.get("PYTHONPATH", "")) if part
        ),
    )
    app = Celery("poolclient", broker=url, backend=url)
    app.conf.update(
        broker_transport_options={"global_keyprefix": prefix},
        result_backend_transport_options={"global_keyprefix": prefix},
        task_default_queue=queue,
    )
    client = redis.Redis.from_url(url)
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "poolapp",
        "worker",
        "-P",
        "custom",
        "-c",
        "2",
        "-n",
        hostname,
        "-Q",
        queue,
        "--without-mingle",
        "--without-gossip",
        "-l",
        "WARNING",
    ]
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            command, cwd=tmp_path, env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    worker = PoolWorker(app, client, hostname, prefix, queue, proc, log)
    try:
        _wait_ready(worker)
        yield worker
    finally:
        _stop(proc)
        app.close()
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            client.delete(key)
        client.close()


def _wait_ready(worker: PoolWorker, timeout: float = 20.0) -> None:
    """Wait for the worker's readiness key, then for it to answer a ping."""
    deadline = time.monotonic() + timeout

    def alive() -> None:
        if worker.proc.poll() is not None:
            pytest.fail(f"worker exited with {worker.proc.returncode}:\n{worker.log.read_text()}")
        if time.monotonic() > deadline:
            pytest.fail(f"worker not ready after {timeout} s:\n{worker.log.read_text()}")

    while not worker.client.exists(f"{worker.prefix}ready"):
        alive()
        time.sleep(0.05)
    while not worker.app.control.ping(destination=[worker.hostname], timeout=0.5):
        alive()


@pytest.mark.redis
@pytest.mark.integration
@pytest.mark.timeout(60)
def test_pool_grow_and_shrink_on_a_running_worker(pool_worker: PoolWorker) -> None:
    """pool_grow/pool_shrink resize the worker's threads pool; stats and prefetch follow."""
    worker = pool_worker
    stats = worker.stats()
    assert stats["pool"]["implementation"] == POOL_PATH
    assert stats["pool"]["max-concurrency"] == 2
    assert stats["prefetch_count"] == 2 * PREFETCH_MULTIPLIER

    done = worker.run("c2", 8, 300)
    assert len(done) == 8
    assert worker.max_seen("c2") == 2

    assert worker.control("pool_grow", 2) == {"ok": "pool will grow"}
    stats = worker.stats()
    assert stats["pool"]["max-concurrency"] == 4
    assert stats["prefetch_count"] == 4 * PREFETCH_MULTIPLIER
    done = worker.run("c4", 8, 300)
    assert len(done) == 8
    assert worker.max_seen("c4") == 4

    long_running = worker.send("long", 4, 1000)
    _wait_until(lambda: worker.started("long") == 4, 5, "four long tasks to start")
    assert worker.control("pool_shrink", 3) == {"ok": "pool will shrink"}
    stats = worker.stats()
    assert stats["pool"]["max-concurrency"] == 1
    assert stats["prefetch_count"] == 1 * PREFETCH_MULTIPLIER
    after = worker.send("c1", 6, 300)
    finished = worker.wait(long_running, 15)
    assert [value["phase"] for value in finished] == ["long"] * 4
    assert all(value["elapsed_ms"] >= 990 for value in finished)
    done = worker.wait(after, 15)
    assert len(done) == 6
    assert worker.max_seen("c1") == 1

    refused = worker.control("pool_shrink", 1)
    assert "ValueError" in refused.get("error", ""), refused
    stats = worker.stats()
    assert stats["pool"]["max-concurrency"] == 1
    assert stats["prefetch_count"] == 1 * PREFETCH_MULTIPLIER
    assert stats["pool"]["threads"] <= 4
    assert worker.run("last", 1, 10)[0]["concurrent"] == 1

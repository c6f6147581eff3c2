"""A20: pause Redis (SIGSTOP) for 5 s under a running job: the worker and the waiting
``victor run`` client both ride it out; the client prints the job id before anything else."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.harness import RedisServer
from tests.conftest import settings_env

pytestmark = [pytest.mark.redis, pytest.mark.integration]


def test_a20_victor_run_rides_out_a_paused_redis(redis_settings, worker_factory, tmp_path) -> None:
    with RedisServer() as server:
        settings = redis_settings(redis_url=server.url, chunk_size=1, parallel_threshold=1)
        worker = worker_factory(settings, concurrency=2)
        goal = tmp_path / "goal.json"
        items = [{"ms": 300, "value": index} for index in range(30)]
        goal.write_text(json.dumps({"name": "a20", "steps": [{"skill": "sleep", "items": items}]}))
        env = {**os.environ, **settings_env(settings), "COLUMNS": "200"}
        client = subprocess.Popen(
            [sys.executable, "-m", "orchestrator.cli", "run", str(goal)],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert client.stderr is not None
        first_line = client.stderr.readline()  # the job id comes first, before any waiting
        assert first_line.startswith("job "), first_line
        job_id = first_line.split()[1].rstrip(":")
        assert server.process is not None
        os.kill(server.process.pid, signal.SIGSTOP)
        time.sleep(5)
        os.kill(server.process.pid, signal.SIGCONT)
        try:
            stdout, stderr = client.communicate(timeout=120)
        finally:
            if client.poll() is None:
                client.kill()
        assert client.returncode == 0, first_line + stderr + worker.log()
        shown = json.loads(stdout)
        assert (shown["job_id"], shown["status"]) == (job_id, "succeeded")
        assert (shown["items"], shown["failed_items"]) == (30, 0)


def test_a_client_that_loses_redis_for_good_says_how_to_follow_the_job(
    redis_settings, tmp_path: Path
) -> None:
    from orchestrator.core.dispatcher import JobHandle, wait_job
    from orchestrator.core.plan import Plan
    from workers.celery_app.factory import create_app
    from workers.core.errors import JobOutcomeUnknownError

    with RedisServer() as server:
        settings = redis_settings(redis_url=server.url)
        app = create_app(settings)
        try:
            server.stop(kill=True)
            handle = JobHandle(
                job_id="j1", plan=Plan(name="j", steps=[], chunk_size=1), task_ids=[], app=app
            )
            outages: list[str] = []
            with pytest.raises(JobOutcomeUnknownError, match="victor run --attach j1"):
                wait_job(handle, ride_out_s=1.0, on_outage=outages.append)
            assert len(outages) == 1
        finally:
            app.close()

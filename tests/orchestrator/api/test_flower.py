"""C3: Flower as we start it answers 401 without credentials and lists our workers with them."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from orchestrator.harness import free_port
from tests.conftest import ROOT, settings_env

pytestmark = [pytest.mark.redis, pytest.mark.integration]

VICTOR = str(Path(sys.executable).parent / "victor")


def start(command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        command,
        env={**os.environ, **env},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def wait_listening(url: str, process: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"flower exited: {process.stderr.read().decode()[-2000:]}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError("flower did not listen in time")


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_victor_flower_needs_credentials_and_lists_our_workers(
    redis_settings, worker_factory, processes
) -> None:
    settings = redis_settings()
    worker = worker_factory(settings, concurrency=1)
    port = free_port()
    env = {**settings_env(settings), "VICTOR_FLOWER_BASIC_AUTH": "ops:s3cret"}
    processes.append(start([VICTOR, "flower", "--port", str(port)], env))
    base = f"http://127.0.0.1:{port}"
    wait_listening(base, processes[-1])
    for path in ("/", "/workers", "/tasks", "/api/workers", "/api/tasks", "/metrics"):
        response = httpx.get(base + path, timeout=10)
        assert response.status_code == 401, (path, response.status_code)
        assert response.headers.get("Access-Control-Allow-Origin") != "*"
    wrong = httpx.get(base + "/api/workers", auth=("ops", "nope"), timeout=10)
    assert wrong.status_code == 401
    deadline = time.monotonic() + 30
    while True:
        response = httpx.get(
            base + "/api/workers", params={"refresh": "1"}, auth=("ops", "s3cret"), timeout=20
        )
        assert response.status_code == 200
        if worker.hostname in response.json():
            break
        assert time.monotonic() < deadline, response.text
        time.sleep(0.5)
    assert response.headers.get("Access-Control-Allow-Origin") != "*"


def test_victor_flower_refuses_to_start_without_credentials(redis_settings) -> None:
    env = {**os.environ, **settings_env(redis_settings())}
    env.pop("VICTOR_FLOWER_BASIC_AUTH", None)
    refused = subprocess.run([VICTOR, "flower"], env=env, capture_output=True, timeout=60)
    assert refused.returncode == 2
    assert b"--basic-auth" in refused.stderr
    public = subprocess.run(
        [VICTOR, "flower", "--insecure-local", "--address", "0.0.0.0"],
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert public.returncode == 2
    assert b"loopback" in public.stderr


def test_celery_a_workers_flower_works_too(redis_settings, processes) -> None:
    port = free_port()
    env = settings_env(redis_settings())
    processes.append(
        start(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "workers",
                "flower",
                "--address=127.0.0.1",
                f"--port={port}",
                "--basic-auth=ops:s3cret",
            ],
            env,
        )
    )
    base = f"http://127.0.0.1:{port}"
    wait_listening(base, processes[-1])
    assert httpx.get(base + "/api/workers", timeout=10).status_code == 401
    assert httpx.get(base + "/healthcheck", auth=("ops", "s3cret"), timeout=10).status_code == 200

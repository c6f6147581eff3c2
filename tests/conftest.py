"""Shared fixtures: a Redis for tests (own key prefix each), settings, worker processes."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from orchestrator.harness import RedisServer, WorkerProcess
from workers.core.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TEST_REDIS = "redis://127.0.0.1:6379/9"


def _answers(url: str) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
        ok = bool(client.ping())
        client.close()
        return ok
    except redis.RedisError:
        return False


@pytest.fixture(autouse=True)
def _private_cache_dir(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Embedded mode persists its cache under VICTOR_CACHE_DIR: a fresh one for each test."""
    monkeypatch.setenv("VICTOR_CACHE_DIR", str(tmp_path_factory.mktemp("cache-dir")))


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis for tests: VICTOR_TEST_REDIS_URL, the shared one on db 9, or our own server.

    Tests never flush it: each uses its own key prefix and deletes only that prefix.
    """
    url = os.environ.get("VICTOR_TEST_REDIS_URL", DEFAULT_TEST_REDIS)
    if _answers(url):
        yield url
        return
    try:
        server = RedisServer().start()
    except RuntimeError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"no Redis for tests and none could be started: {exc}")
        pytest.skip(f"no Redis: {exc}")
    try:
        yield server.url
    finally:
        server.close()


@pytest.fixture
def key_prefix(redis_url: str) -> Iterator[str]:
    """A fresh key prefix; every key under it is deleted afterwards."""
    prefix = f"vt{uuid.uuid4().hex[:10]}"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        client.delete(key)
    client.close()


@pytest.fixture
def redis_settings(redis_url: str, key_prefix: str) -> Callable[..., Settings]:
    """Build distributed-mode Settings on the test Redis with this test's prefix."""

    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "redis_url": redis_url,
            "key_prefix": key_prefix,
            "allowed_roots": [ROOT],
            # Test fleets run the probe skills through the API and submit in bulk.
            "api_probe_skills_enabled": True,
            "api_max_jobs_in_flight": 100_000,
            "task_time_limit_s": 20,
            "task_soft_time_limit_s": 18,
            "visibility_timeout_s": 30,
            "reconciler_stale_after_s": 45,
        }
        values.update(overrides)
        return Settings(**values)

    return build


def settings_env(settings: Settings) -> dict[str, str]:
    """The VICTOR_* environment that reproduces ``settings`` in a subprocess."""
    env = {}
    for name, value in settings.model_dump(exclude_defaults=True).items():
        if value is None:
            continue
        if isinstance(value, list):
            import json

            value = json.dumps([str(item) for item in value])
        elif hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        env[f"VICTOR_{name.upper()}"] = str(value)
    return env


@pytest.fixture
def worker_factory() -> Iterator[Callable[..., WorkerProcess]]:
    """Start real worker processes; every one is stopped by pid afterwards."""
    started: list[WorkerProcess] = []

    def start(settings: Settings, wait: bool = True, **kwargs: Any) -> WorkerProcess:
        worker = WorkerProcess(settings_env(settings), **kwargs)
        started.append(worker)
        return worker.start(wait=wait)

    yield start
    for worker in started:
        worker.kill()


@pytest.fixture
def embedded_settings() -> Callable[..., Settings]:
    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {"allowed_roots": [ROOT]}
        values.update(overrides)
        return Settings(**values)

    return build

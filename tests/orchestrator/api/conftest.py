"""API fixtures: a real uvicorn on 127.0.0.1 serving create_api, and API keys per tenant."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn

from orchestrator.api.app import create_api
from orchestrator.api.keystore import KeyStore, parse_scopes
from orchestrator.harness import free_port
from workers.core.keys import Keys
from workers.core.redis_client import redis_client
from workers.core.settings import Settings


@dataclass
class LiveApi:
    """A running API: its URL, settings and a way to mint keys."""

    url: str
    settings: Settings
    store: KeyStore
    server: uvicorn.Server
    thread: threading.Thread
    clients: list[httpx.Client] = field(default_factory=list)

    def key(self, tenant: str = "acme", scopes: str = "submit,read") -> str:
        return self.store.create(tenant, parse_scopes(scopes), name="test")

    def client(self, key: str | None = None, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        kwargs.setdefault("timeout", 30)
        client = httpx.Client(base_url=self.url, headers=headers, **kwargs)
        self.clients.append(client)
        return client

    def stop(self) -> None:
        for client in self.clients:
            client.close()
        self.server.should_exit = True
        self.thread.join(15)


def serve(settings: Settings) -> LiveApi:
    """Start uvicorn in a thread on a free loopback port and wait until it answers."""
    api = create_api(settings)
    port = free_port()
    config = uvicorn.Config(api, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="test-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    redis = redis_client(settings.redis_url) if settings.redis_url else None
    store = KeyStore(Keys(settings.key_prefix), redis, settings.api_keys_file)
    return LiveApi(f"http://127.0.0.1:{port}", settings, store, server, thread)


@pytest.fixture
def live_api() -> Iterator[Callable[[Settings], LiveApi]]:
    """Start API servers for given settings; each is stopped afterwards."""
    started: list[LiveApi] = []

    def start(settings: Settings) -> LiveApi:
        live = serve(settings)
        started.append(live)
        return live

    yield start
    for live in started:
        live.stop()


def noop_goal(count: int = 3, **extra: Any) -> dict[str, Any]:
    return {
        "name": "noop job",
        "steps": [{"skill": "noop", "items": [{"value": index} for index in range(count)]}],
        "chunk_size": 1,
        **extra,
    }


def wait_status(client: httpx.Client, job_id: str, timeout_s: float = 60) -> dict[str, Any]:
    """Poll GET /v1/jobs/{id} until the job is terminal."""
    deadline = time.monotonic() + timeout_s
    while True:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "partial", "failed", "revoked"):
            return job  # type: ignore[no-any-return]
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} not finished in {timeout_s} s: {job}")
        time.sleep(0.05)

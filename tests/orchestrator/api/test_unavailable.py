"""Ledger first: with Redis down a submission gets 503 within 2 s, never a hang, never a 202."""

from __future__ import annotations

import time

import httpx
import pytest

from orchestrator.harness import RedisServer
from tests.orchestrator.api.conftest import noop_goal
from workers.core.settings import Settings

pytestmark = [pytest.mark.redis]


def test_redis_down_gives_503_within_2_s_and_no_job(live_api, tmp_path) -> None:
    try:
        server = RedisServer(appendonly=True).start()
    except RuntimeError as exc:
        pytest.skip(str(exc))
    try:
        settings = Settings(
            redis_url=server.url,
            key_prefix="down",
            api_keys_file=tmp_path / "keys.json",
            task_time_limit_s=20,
            task_soft_time_limit_s=18,
            visibility_timeout_s=30,
            reconciler_stale_after_s=45,
        )
        api = live_api(settings)
        client = api.client(api.key(), timeout=10)
        assert client.post("/v1/jobs", json=noop_goal(2)).status_code == 202
        server.stop(kill=True)
        for _ in range(5):
            started = time.monotonic()
            response = client.post("/v1/jobs", json=noop_goal(2))
            elapsed = time.monotonic() - started
            assert response.status_code == 503, response.text
            assert elapsed < 2.0, elapsed
            assert response.headers["Retry-After"] == "1"
            assert "VICTOR_REDIS_URL" in response.json()["error"]["message"]
        assert client.get("/readyz").status_code == 503
        assert client.get("/v1/jobs").status_code == 503
        server.start()
        listed = client.get("/v1/jobs")
        assert listed.status_code == 200
        assert len(listed.json()["items"]) == 1  # only the job accepted before the outage
        assert client.post("/v1/jobs", json=noop_goal(2)).status_code == 202
    finally:
        server.close()


def test_the_api_refuses_to_start_without_redis() -> None:
    from orchestrator.api.app import create_api
    from workers.core.errors import ConfigError

    with pytest.raises(ConfigError, match="VICTOR_REDIS_URL"):
        create_api(Settings())
    assert httpx  # the client library the tests use is importable alongside the app

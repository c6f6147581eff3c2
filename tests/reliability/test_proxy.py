"""The harness's TCP proxy: passes, delays and drops connections to a Redis."""

from __future__ import annotations

import time
from urllib.parse import urlparse

import pytest
import redis

from orchestrator.harness.proxy import TcpProxy

pytestmark = [pytest.mark.redis]


def test_proxy_passes_delays_and_drops(redis_url: str) -> None:
    target = urlparse(redis_url)
    with TcpProxy(target.port or 6379, target.hostname or "127.0.0.1") as proxy:
        client = redis.Redis.from_url(proxy.url(), socket_timeout=2, socket_connect_timeout=1)
        assert client.ping()
        proxy.delay(0.3)
        started = time.monotonic()
        assert client.ping()
        assert time.monotonic() - started >= 0.3
        proxy.drop()
        with pytest.raises(redis.ConnectionError):
            client.ping()
        proxy.passthrough()
        assert client.ping()
        proxy.blackhole()
        with pytest.raises(redis.TimeoutError):
            redis.Redis.from_url(proxy.url(), socket_timeout=0.5).ping()
        client.close()

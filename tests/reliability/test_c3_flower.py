"""C3: Flower as we configure it: every route Flower defines (taken from flower.urls, not a hand
list) answers 401 without credentials, none sends ``Access-Control-Allow-Origin: *``, and it
listens on loopback unless told otherwise, both as ``victor flower`` and as plain
``celery -A workers flower`` (whose safe defaults come from workers/celery_app/flower_defaults.py).

tests/orchestrator/api/test_flower.py covers the credentials themselves (wrong password,
listing our workers, ``victor flower`` refusing to start without them).
"""

from __future__ import annotations

import re
import subprocess
import sys
import time

import httpx
import psutil
import pytest

from orchestrator.harness import free_port
from orchestrator.harness.audit import AuditResult
from tests.conftest import settings_env
from tests.orchestrator.api.test_flower import VICTOR, processes, start, wait_listening
from workers.celery_app.flower_defaults import running_celery_flower

pytestmark = [pytest.mark.redis, pytest.mark.integration]

__all__ = ["processes"]  # the fixture, shared with the API's Flower tests

# Open by design: the liveness probe (answers "OK" only), static assets, the login and logout
# pages (a form; clearing the session cookie) and the catch-all 404.
OPEN = {r"/healthcheck", r"/static/(.*)", r"/login/?", r"/logout", r".*"}
CELERY = [sys.executable, "-m", "celery", "-A", "workers", "flower"]


def flower_routes() -> list[str]:
    from flower.urls import handlers

    patterns = []
    for handler in handlers:
        pattern = handler.regex.pattern if hasattr(handler, "regex") else handler[0]
        patterns.append(pattern.rstrip("$"))
    return patterns


def concrete(pattern: str) -> str:
    """A request path for a route pattern (every group filled with a plausible value)."""
    return re.sub(r"\((\.\+|\.\*)\)", "w1@127.0.0.1", pattern)


def listening_addresses(pid: int, port: int) -> set[str]:
    """Local addresses the process (or its children) listens on at ``port``."""
    found: set[str] = set()
    process = psutil.Process(pid)
    for proc in [process, *process.children(recursive=True)]:
        for conn in proc.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port:
                found.add(conn.laddr.ip)
    return found


def check_every_route(base: str) -> dict[str, int]:
    counts = {"routes": 0, "requests": 0, "open": 0}
    for pattern in flower_routes():
        if pattern in OPEN:
            counts["open"] += 1
            continue
        counts["routes"] += 1
        statuses = set()
        for method in ("GET", "POST"):
            response = httpx.request(method, base + concrete(pattern), timeout=10)
            counts["requests"] += 1
            statuses.add(response.status_code)
            assert response.headers.get("Access-Control-Allow-Origin") != "*", pattern
        # 405 for the method a route does not serve; 401 for the one it does.
        assert 401 in statuses and statuses <= {401, 405}, (pattern, statuses)
    health = httpx.get(base + "/healthcheck", timeout=10)
    assert health.text == "OK" and health.headers.get("Access-Control-Allow-Origin") != "*"
    return counts


def test_c3_victor_flower_every_route_needs_credentials_on_loopback(
    redis_settings, processes
) -> None:
    port = free_port()
    env = {**settings_env(redis_settings()), "VICTOR_FLOWER_BASIC_AUTH": "ops:s3cret"}
    processes.append(start([VICTOR, "flower", "--port", str(port)], env))
    base = f"http://127.0.0.1:{port}"
    wait_listening(base, processes[-1])
    counts = check_every_route(base)
    assert listening_addresses(processes[-1].pid, port) == {"127.0.0.1"}
    assert httpx.get(base + "/api/workers", auth=("ops", "s3cret"), timeout=10).status_code == 200
    AuditResult(
        scenario="C3",
        accepted=0,
        completed=0,
        lost=0,
        unexpected=0,
        dup_exec=0,
        dup_effect=0,
        recovery_s=None,
        executions=0,
        extra={**counts, "bound": "127.0.0.1", "open_by_design": sorted(OPEN)},
    ).write()


def test_c3_plain_celery_flower_binds_loopback_and_takes_our_credentials(
    redis_settings, processes
) -> None:
    port = free_port()
    env = {**settings_env(redis_settings()), "VICTOR_FLOWER_BASIC_AUTH": "ops:s3cret"}
    processes.append(start([*CELERY, f"--port={port}"], env))
    base = f"http://127.0.0.1:{port}"
    wait_listening(base, processes[-1])
    assert listening_addresses(processes[-1].pid, port) == {"127.0.0.1"}
    check_every_route(base)
    assert httpx.get(base + "/metrics", timeout=10).status_code == 401
    assert httpx.get(base + "/api/workers", auth=("ops", "s3cret"), timeout=10).status_code == 200


def test_c3_plain_celery_flower_refuses_to_run_without_credentials(redis_settings) -> None:
    import os

    env = {**os.environ, **settings_env(redis_settings())}
    for name in ("VICTOR_FLOWER_BASIC_AUTH", "FLOWER_BASIC_AUTH", "FLOWER_AUTH"):
        env.pop(name, None)
    started = time.monotonic()
    refused = subprocess.run(
        [*CELERY, f"--port={free_port()}"], env=env, capture_output=True, timeout=60
    )
    assert refused.returncode == 2, refused.stderr.decode()[-2000:]
    assert b"--basic-auth" in refused.stderr
    assert time.monotonic() - started < 60


def test_only_the_celery_flower_command_is_detected() -> None:
    assert running_celery_flower(["/venv/bin/celery", "-A", "workers", "flower"])
    assert running_celery_flower(["/usr/lib/python3/celery/__main__.py", "-A", "workers", "flower"])
    assert not running_celery_flower(["/venv/bin/celery", "-A", "workers", "worker"])
    assert not running_celery_flower(["/venv/bin/victor", "flower"])
    assert not running_celery_flower([])

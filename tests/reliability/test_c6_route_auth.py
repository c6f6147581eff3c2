"""C6: every API route, taken from the OpenAPI schema (not a hand list): 401 without a key or
with a bad one, 404 (not 403) for another tenant's job, 429 with Retry-After past the rate.

tests/orchestrator/api/test_auth.py checks a hand-written route list in depth (scopes, bodies);
this one makes sure a route added later cannot skip authentication unnoticed.
"""

from __future__ import annotations

import base64
import time
from typing import Any

import httpx
import pytest

from orchestrator.harness.audit import AuditResult
from tests.orchestrator.api.conftest import noop_goal

pytestmark = [pytest.mark.redis]

# The only operations that answer without a key: liveness and readiness probes.
PUBLIC = {("GET", "/healthz"), ("GET", "/readyz")}
RATE_LIMIT = 3
BAD_HEADERS: dict[str, dict[str, str]] = {
    "no key": {},
    "unknown key": {"Authorization": "Bearer vk_" + "A" * 43},
    "bare scheme": {"Authorization": "Bearer"},
    "malformed key": {"Authorization": "Bearer vk_short"},
    "basic scheme": {"Authorization": "Basic " + base64.b64encode(b"ops:s3cret").decode()},
    "key without scheme": {"Authorization": "vk_" + "A" * 43},
}


def operations(api: Any) -> list[tuple[str, str, dict[str, Any]]]:
    schema = httpx.get(api.url + "/openapi.json", timeout=10).json()
    return [
        (method.upper(), path, operation)
        for path, methods in schema["paths"].items()
        for method, operation in methods.items()
    ]


def request(
    client: httpx.Client, method: str, path: str, job_id: str, headers: dict[str, str]
) -> httpx.Response:
    url = path.replace("{job_id}", job_id)
    body: dict[str, Any] | None = None
    if (method, path) == ("POST", "/v1/jobs"):
        body = noop_goal(1)
    elif method == "POST":
        body = {}
    return client.request(method, url, json=body, headers=headers)


def test_c6_every_route_needs_a_key_hides_other_tenants_and_limits_rate(
    redis_settings, live_api
) -> None:
    settings = redis_settings()
    api = live_api(settings)
    limited = live_api(settings.model_copy(update={"api_rate_limit": RATE_LIMIT}))
    owner = api.client(api.key(tenant="c6a", scopes="submit,read,admin"))
    accepted = owner.post("/v1/jobs", json=noop_goal(2))
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["job_id"]
    other = api.client(api.key(tenant="c6b", scopes="submit,read,admin"))
    anonymous = api.client()
    ops = operations(api)
    secured = [(method, path) for method, path, op in ops if op.get("security")]
    public = {(method, path) for method, path, op in ops if not op.get("security")}
    assert public == PUBLIC, f"operations without security in the schema: {public - PUBLIC}"
    assert len(secured) >= 10, secured
    checked = {"401": 0, "404": 0, "429": 0}
    for method, path in secured:
        for label, headers in BAD_HEADERS.items():
            response = request(anonymous, method, path, job_id, headers)
            assert response.status_code == 401, (method, path, label, response.text)
            assert response.headers["WWW-Authenticate"].startswith("Bearer"), (method, path)
            assert response.json()["error"]["code"] == "unauthenticated"
            checked["401"] += 1
        if "{job_id}" in path:
            response = request(other, method, path, job_id, {})
            assert response.status_code == 404, (method, path, response.text)
            assert response.json()["error"]["code"] == "not_found"
            checked["404"] += 1
        # A fresh key per route: RATE_LIMIT requests pass the limiter, the next is refused.
        client = limited.client(limited.key(tenant="c6a", scopes="submit,read,admin"))
        for _ in range(RATE_LIMIT):
            response = request(client, method, path, "no-such-job", {})
            assert response.status_code != 429, (method, path, response.text)
        response = request(client, method, path, "no-such-job", {})
        assert response.status_code == 429, (method, path, response.text)
        assert 1 <= int(response.headers["Retry-After"]) <= settings.api_rate_window_s
        assert response.json()["error"]["code"] == "rate_limited"
        checked["429"] += 1
    # The other tenant's requests changed nothing: the owner's job is still running.
    assert owner.get(f"/v1/jobs/{job_id}").json()["status"] in ("accepted", "running")
    AuditResult(
        scenario="C6",
        accepted=1,
        completed=0,
        lost=0,
        unexpected=0,
        dup_exec=0,
        dup_effect=0,
        recovery_s=None,
        executions=0,
        extra={
            "secured_operations": len(secured),
            "public_operations": sorted(f"{m} {p}" for m, p in public),
            "checks": checked,
            "bad_credentials_kinds": len(BAD_HEADERS),
        },
    ).write()


@pytest.mark.integration
def test_c6_a_revoked_job_stays_revoked_when_its_tasks_still_run(
    redis_settings, live_api, worker_factory
) -> None:
    """DELETE answers revoked; a worker that never heard the revoke runs the tasks anyway (it
    started later): the ledger records their results but the job does not flip to succeeded."""
    settings = redis_settings()
    api = live_api(settings)
    client = api.client(api.key(tenant="c6r", scopes="submit,read"))
    job_id = client.post("/v1/jobs", json=noop_goal(2)).json()["job_id"]
    assert client.delete(f"/v1/jobs/{job_id}").json()["status"] == "revoked"
    worker_factory(settings, concurrency=1)
    deadline = time.monotonic() + 30
    while client.get(f"/v1/jobs/{job_id}").json()["done_tasks"] < 2:
        assert time.monotonic() < deadline, "the tasks did not run"
        time.sleep(0.1)
    assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "revoked"

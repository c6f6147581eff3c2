"""The submit fast path answers exactly as the documented route does, and hands off the rest."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from orchestrator.api.app import create_api
from orchestrator.api.fast_submit import FastSubmitMiddleware
from orchestrator.api.keystore import KeyStore, parse_scopes
from tests.orchestrator.api.conftest import noop_goal
from workers.core.keys import Keys
from workers.core.redis_client import redis_client
from workers.core.settings import Settings

pytestmark = [pytest.mark.redis]


def _apps(settings: Settings) -> tuple[Any, Any]:
    fast = create_api(settings)
    routed = create_api(settings)
    routed.user_middleware = [
        m for m in routed.user_middleware if m.cls is not FastSubmitMiddleware
    ]
    return fast, routed


def _shape(response: Any) -> tuple[int, Any, dict[str, str]]:
    """Status, body without the job's own id, and the headers that carry meaning."""
    try:
        body = response.json()
    except ValueError:
        body = response.text
    if isinstance(body, dict) and "job_id" in body:
        body = {k: v for k, v in body.items() if k not in ("job_id", "links")}
    names = ("retry-after", "www-authenticate", "idempotent-replayed", "content-type")
    return (
        response.status_code,
        body,
        {n: response.headers[n] for n in names if n in response.headers},
    )


def test_the_fast_path_and_the_route_give_the_same_answers(
    redis_settings: Callable[..., Settings],
) -> None:
    settings = redis_settings(api_max_items_per_job=5)
    store = KeyStore(Keys(settings.key_prefix), redis_client(settings.state_url), None)
    submit_key = store.create("acme", parse_scopes("submit,read"))
    read_key = store.create("acme", parse_scopes("read"))
    json_type = {"Content-Type": "application/json"}
    requests: list[tuple[dict[str, str], bytes]] = [
        ({"Authorization": f"Bearer {submit_key}", **json_type}, b'{"steps": []}'),
        ({"Authorization": f"Bearer {submit_key}", **json_type}, b"{not json"),
        ({"Authorization": f"Bearer {submit_key}", "Content-Type": "text/plain"}, b"{}"),
        ({"Authorization": f"Bearer {read_key}", **json_type}, b"{}"),
        ({"Authorization": "Bearer vk_unknown", **json_type}, b"{}"),
        ({"Authorization": f"Basic {submit_key}", **json_type}, b"{}"),
        (json_type, b"{}"),
    ]
    too_many = json.dumps(noop_goal(6)).encode()
    good = json.dumps(noop_goal(2)).encode()
    requests.append(({"Authorization": f"Bearer {submit_key}", **json_type}, too_many))
    requests.append(({"Authorization": f"Bearer {submit_key}", **json_type}, good))
    fast, routed = _apps(settings)
    with TestClient(fast) as one, TestClient(routed) as other:
        for headers, body in requests:
            answers = [
                _shape(client.post("/v1/jobs", content=body, headers=headers))
                for client in (one, other)
            ]
            assert answers[0] == answers[1], (headers, body, answers)
        replay = {"Authorization": f"Bearer {submit_key}", **json_type, "Idempotency-Key": "k1"}
        first = one.post("/v1/jobs", content=good, headers=replay)
        again = other.post("/v1/jobs", content=good, headers=replay)
        assert (first.status_code, again.status_code) == (202, 202)
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.json()["job_id"] == first.json()["job_id"]


def test_requests_the_fast_path_is_not_sure_about_reach_the_route(
    redis_settings: Callable[..., Settings],
) -> None:
    settings = redis_settings()
    store = KeyStore(Keys(settings.key_prefix), redis_client(settings.state_url), None)
    headers = {"Authorization": f"Bearer {store.create('acme', parse_scopes('submit'))}"}
    with TestClient(create_api(settings)) as client:
        query = client.post("/v1/jobs?colour=red", json=noop_goal(1), headers=headers)
        assert query.status_code == 422 and "colour" in query.text  # the app's query check
        long_key = {**headers, "Idempotency-Key": "k" * 256}
        refused = client.post("/v1/jobs", json=noop_goal(1), headers=long_key)
        assert refused.status_code == 422 and "Idempotency-Key" in refused.text

"""Cache and metrics routes: figures for readers, invalidation for admins of their own tenant."""

from __future__ import annotations

import pytest

from tests.orchestrator.api.conftest import noop_goal, wait_status

pytestmark = [pytest.mark.redis]


@pytest.fixture
def api(redis_settings, live_api):
    return live_api(redis_settings())


def test_cache_figures_need_read_and_list_the_three_caches(api) -> None:
    response = api.client(api.key(scopes="read")).get("/v1/cache")
    assert response.status_code == 200, response.text
    stats = response.json()
    assert set(stats["caches"]) == {"tool_selection", "response", "embedding"}
    assert "hit_rate" in stats["caches"]["response"]


def test_invalidation_needs_admin_and_touches_only_the_callers_tenant(api) -> None:
    body = {"cache": "response", "pattern": "analyze_code:*"}
    assert (
        api.client(api.key(scopes="submit,read"))
        .post("/v1/cache/invalidate", json=body)
        .status_code
        == 403
    )
    response = api.client(api.key(tenant="acme", scopes="admin")).post(
        "/v1/cache/invalidate", json=body
    )
    assert response.status_code == 200, response.text
    assert (
        response.json()["match"] == f"{api.settings.key_prefix}:acme:cache:response:analyze_code:*"
    )
    bad = api.client(api.key(scopes="admin")).post(
        "/v1/cache/invalidate", json={"cache": "everything"}
    )
    assert bad.status_code == 422
    assert bad.json()["error"]["fields"][0]["field"] == "cache"


def test_metrics_json_reports_queue_depth(redis_settings, worker_factory, live_api) -> None:
    settings = redis_settings()
    worker_factory(settings, concurrency=1)
    api = live_api(settings)
    client = api.client(api.key())
    wait_status(client, client.post("/v1/jobs", json=noop_goal(3)).json()["job_id"])
    metrics = client.get("/v1/metrics").json()
    assert {"queued", "reserved", "active", "depth"} <= set(metrics["queue"])
    assert metrics["queue"]["depth"] == (
        metrics["queue"]["queued"] + metrics["queue"]["reserved"] + metrics["queue"]["active"]
    )


def test_prometheus_text_needs_a_key_unless_made_public(redis_settings, live_api) -> None:
    private = live_api(redis_settings())
    assert private.client().get("/metrics").status_code == 401
    text = private.client(private.key(scopes="read")).get("/metrics")
    assert text.status_code == 200
    assert text.headers["content-type"].startswith("text/plain")
    assert 'victor_cache_hit_rate{cache="response"}' in text.text
    assert "victor_queue_depth" in text.text
    public = live_api(redis_settings(api_public_metrics=True))
    assert public.client().get("/metrics").status_code == 200
    assert public.client().get("/v1/metrics").status_code == 401

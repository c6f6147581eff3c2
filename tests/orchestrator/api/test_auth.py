"""The auth and limits matrix: 401, 403, 404 across tenants, 429, 413 (chunked too), 422, 400."""

from __future__ import annotations

import json
import socket
import time

import pytest
import redis

from tests.orchestrator.api.conftest import noop_goal

pytestmark = [pytest.mark.redis]

ROUTES = [
    ("POST", "/v1/jobs"),
    ("GET", "/v1/jobs"),
    ("GET", "/v1/jobs/{job}"),
    ("GET", "/v1/jobs/{job}/results"),
    ("GET", "/v1/jobs/{job}/events"),
    ("DELETE", "/v1/jobs/{job}"),
    ("GET", "/v1/skills"),
    ("GET", "/v1/cache"),
    ("POST", "/v1/cache/invalidate"),
    ("GET", "/v1/metrics"),
    ("GET", "/v1/tuner"),
    ("GET", "/metrics"),
]


@pytest.fixture
def api(redis_settings, live_api):
    return live_api(redis_settings(max_fan_out=10, api_max_body_bytes=4096))


@pytest.fixture
def job_id(api) -> str:
    response = api.client(api.key()).post("/v1/jobs", json=noop_goal(2))
    assert response.status_code == 202, response.text
    return response.json()["job_id"]


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize("key", [None, "vk_not-a-key", ""])
def test_every_v1_route_answers_401_without_a_valid_key(api, job_id, method, path, key) -> None:
    client = api.client(key)
    response = client.request(method, path.format(job=job_id), json=noop_goal(1))
    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["error"]["code"] == "unauthenticated"


def test_a_key_without_the_scope_gets_403(api, job_id) -> None:
    reader = api.client(api.key(scopes="read"))
    refused = reader.post("/v1/jobs", json=noop_goal(1))
    assert refused.status_code == 403
    assert "'submit' scope" in refused.json()["error"]["message"]
    assert reader.delete(f"/v1/jobs/{job_id}").status_code == 403
    assert reader.get(f"/v1/jobs/{job_id}").status_code == 200
    submitter = api.client(api.key(scopes="submit"))
    assert submitter.get("/v1/jobs").status_code == 403
    admin = api.client(api.key(scopes="admin"))
    assert admin.get(f"/v1/jobs/{job_id}").status_code == 200


def test_another_tenants_job_is_404_not_403(api, job_id) -> None:
    other = api.client(api.key(tenant="globex", scopes="submit,read,admin"))
    for method, path in ROUTES[2:6]:
        response = other.request(method, path.format(job=job_id))
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["error"]["code"] == "not_found"
    assert job_id not in [item["job_id"] for item in other.get("/v1/jobs").json()["items"]]


def test_past_the_rate_limit_answers_429_with_retry_after(redis_settings, live_api) -> None:
    api = live_api(redis_settings(api_rate_limit=3, api_rate_window_s=30))
    client = api.client(api.key())
    statuses = [client.get("/v1/skills").status_code for _ in range(5)]
    assert statuses[:3] == [200, 200, 200]
    limited = client.get("/v1/skills")
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["Retry-After"]) <= 30
    # The limit is per key: another key of the same tenant still gets through.
    assert api.client(api.key()).get("/v1/skills").status_code == 200


def test_declared_body_over_the_limit_is_413(api) -> None:
    client = api.client(api.key())
    items = [{"value": "x" * 100} for _ in range(60)]
    response = client.post("/v1/jobs", json={"steps": [{"skill": "noop", "items": items}]})
    assert response.status_code == 413
    assert "VICTOR_API_MAX_BODY_BYTES" in response.json()["error"]["message"]


def test_chunked_body_over_the_limit_is_cut_off_early(api) -> None:
    """413 arrives while the client is still sending: the server stops reading at the limit."""
    key = api.key()
    host, port = api.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/jobs HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + key.encode() + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"[" + b" " * 1000
        sent = 0
        answer = b""
        sock.settimeout(0.05)
        for _ in range(1000):  # up to ~1 MB, far over the 4 KiB limit
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
            try:
                answer += sock.recv(65536)
            except TimeoutError:
                continue
            if b"\r\n\r\n" in answer:
                break
        sock.settimeout(5)
        while b"\r\n\r\n" not in answer:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < 200_000, sent  # cut off long before the client finished


def test_fan_out_over_the_cap_is_422_naming_the_setting(api) -> None:
    response = api.client(api.key()).post("/v1/jobs", json=noop_goal(11))
    assert response.status_code == 422
    assert "VICTOR_MAX_FAN_OUT" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("goal", "field"),
    [
        ({"steps": [{"items": []}]}, "steps.0.skill"),
        ({"steps": []}, "steps"),
        ({"steps": [{"skill": "noop"}], "strategy": "sideways"}, "strategy"),
        ({"steps": [{"skill": "noop"}], "chunk_size": "ten"}, "chunk_size"),
        ({"steps": [{"skill": "noop"}], "colour": "red"}, "colour"),
        ({"steps": [{"skill": "sleep", "items": [{"ms": "long"}]}]}, "steps.0.items.0.ms"),
        (
            {"steps": [{"skill": "sleep", "items": [{"ms": 1, "extra": 1}]}]},
            "steps.0.items.0.extra",
        ),
        (
            {"steps": [{"skill": "noop"}], "reduce": {"skill": "report", "params": {"top": 0}}},
            "reduce.params.top",
        ),
        ([1, 2, 3], "body"),
    ],
)
def test_schema_errors_are_422_and_name_the_field(api, goal, field) -> None:
    response = api.client(api.key()).post("/v1/jobs", json=goal)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert field in [problem["field"] for problem in error["fields"]], error
    assert field in error["message"]


def test_unknown_skill_is_422_listing_known_skills(api) -> None:
    response = api.client(api.key()).post("/v1/jobs", json={"steps": [{"skill": "anlyze"}]})
    assert response.status_code == 422
    assert "noop" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b'{"steps": [', "application/json", 400),
        (b'{"steps": [{"skill": "noop", "items": [{"value": NaN}]}]}', "application/json", 400),
        (b"[" * 2000 + b"]" * 2000, "application/json", 400),
        (b"\xff\xfe", "application/json", 400),
        (b'{"steps": [{"skill": "noop"}]}', "text/plain", 415),
        (b'{"steps": [{"skill": "noop"}]}', "", 415),
        (b"steps=1", "application/x-www-form-urlencoded", 415),
    ],
)
def test_malformed_bodies_get_the_right_4xx(api, body, content_type, status) -> None:
    client = api.client(api.key())
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post("/v1/jobs", content=body, headers=headers)
    assert response.status_code == status, response.text
    assert response.json()["error"]["message"]


def test_malformed_submissions_never_reach_redis(api, redis_url, key_prefix) -> None:
    client = api.client(api.key())
    for body in (b"{", b'{"steps": []}', b'{"steps": [{"skill": "nope"}]}'):
        client.post("/v1/jobs", content=body, headers={"Content-Type": "application/json"})
    client.post("/v1/jobs", json=noop_goal(11))
    store = redis.Redis.from_url(redis_url)
    keys = [key.decode() for key in store.scan_iter(match=f"{key_prefix}:*")]
    store.close()
    assert not [key for key in keys if ":job" in key or ":q:" in key], keys


def test_query_parameters_out_of_range_are_422(api, job_id) -> None:
    client = api.client(api.key())
    assert client.get("/v1/jobs", params={"limit": 0}).status_code == 422
    assert client.get(f"/v1/jobs/{job_id}/results", params={"after": -1}).status_code == 422
    assert client.get("/v1/jobs/bad%20id").status_code == 422


def test_unknown_routes_answer_json_404(api) -> None:
    response = api.client(api.key()).get("/v1/nothing")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_error_bodies_never_echo_the_key(api) -> None:
    secret = "vk_" + "s" * 40
    response = api.client(secret).get("/v1/jobs")
    assert secret not in response.text
    assert json.loads(response.text)["error"]["code"] == "unauthenticated"
    time.sleep(0)

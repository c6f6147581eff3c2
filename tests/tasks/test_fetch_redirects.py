"""fetch's redirects (each hop checked again, capped) and fetch through the runtime and a worker."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from orchestrator.core.dispatcher import dispatch_plan, wait_job
from orchestrator.core.plan import GoalSpec, StepSpec
from orchestrator.core.planner import plan_goal
from orchestrator.core.session import Session
from tests.tasks.fetch_server import (
    LOOPBACK,
    SECRET,
    fake_dns,
    hits,
    port_of,
    reset_client,
    run,
    serve,
)
from workers.core.errors import AccessDeniedError, SkillError, SkillInputError
from workers.core.settings import Settings
from workers.runtime import Runtime
from workers.skills import load_registry


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with serve() as url:
        yield url


@pytest.fixture(autouse=True)
def _fresh_client() -> Iterator[None]:
    reset_client()
    yield
    reset_client()


# --- redirects ----------------------------------------------------------------------------


def test_a_redirect_inside_the_list_is_followed_and_recorded(server: str) -> None:
    result = run(f"{server}/redirect?to=/hello", LOOPBACK)
    assert (result["status"], result["text"], result["final_url"]) == (
        200,
        "hello",
        f"{server}/hello",
    )
    assert result["redirects"] == [
        {"url": f"{server}/redirect?to=/hello", "status": 302, "location": f"{server}/hello"}
    ]


@pytest.mark.parametrize(
    ("target", "error", "text"),
    [
        ("http://evil.test/", AccessDeniedError, "host 'evil.test' is not in"),
        ("http://169.254.169.254/latest/", AccessDeniedError, "'169.254.169.254' is not in"),
        ("file:///etc/passwd", SkillInputError, "http and https only"),
    ],
)
def test_every_redirect_hop_is_checked(
    server: str, target: str, error: type[Exception], text: str
) -> None:
    with pytest.raises(error) as caught:
        run(f"{server}/redirect?to={target}", LOOPBACK)
    assert "redirect from" in str(caught.value) and text in str(caught.value)


def test_a_redirect_to_a_listed_name_of_a_private_address_is_refused(
    server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_dns(monkeypatch, {"internal.test": ["10.1.2.3"]})
    with pytest.raises(AccessDeniedError, match=r"'internal.test' resolves only to .*\(private\)"):
        run(f"{server}/redirect?to=http://internal.test/admin", LOOPBACK, "internal.test")


def test_a_chain_past_fetch_max_redirects_is_an_error(server: str) -> None:
    with pytest.raises(SkillError, match=r"more than fetch_max_redirects \(2\)") as caught:
        run(f"{server}/chain/3", LOOPBACK, settings={"fetch_max_redirects": 2})
    assert "VICTOR_FETCH_MAX_REDIRECTS" in str(caught.value)
    result = run(f"{server}/chain/3", LOOPBACK, settings={"fetch_max_redirects": 3})
    assert (result["text"], len(result["redirects"])) == ("end", 3)


def test_303_turns_post_into_get_and_a_new_origin_drops_credentials(server: str) -> None:
    port = port_of(server)
    target = f"http://localhost:{port}/echo"
    result = run(
        f"{server}/redirect?status=303&to={target}",
        LOOPBACK,
        "localhost",
        method="POST",
        body="a=1",
        headers={"Authorization": SECRET},
    )
    seen = json.loads(result["text"])
    assert (seen["method"], seen["body"], seen["authorization"]) == ("GET", "", False)


def test_307_keeps_the_method_body_and_same_origin_credentials(server: str) -> None:
    result = run(
        f"{server}/redirect?status=307&to=/echo",
        LOOPBACK,
        method="POST",
        body="a=1",
        headers={"Authorization": SECRET},
    )
    seen = json.loads(result["text"])
    assert (seen["method"], seen["body"], seen["authorization"]) == ("POST", "a=1", True)


# --- through the runtime ------------------------------------------------------------------


def test_fetch_is_not_response_cached(server: str) -> None:
    assert load_registry().get("fetch").cacheable is False
    runtime = Runtime(Settings(fetch_allowed_hosts=[LOOPBACK]), load_registry())
    before = hits("/status/201")
    for _ in range(2):
        assert runtime.executor.run("fetch", {"url": f"{server}/status/201"})["status"] == 201
    assert hits("/status/201") - before == 2


def test_fetch_runs_on_an_embedded_worker(server: str) -> None:
    settings = Settings(
        fetch_allowed_hosts=[LOOPBACK],
        redis_url=None,
        broker_url=None,
        result_backend_url=None,
        cache_url=None,
    )
    session = Session(settings).start()
    try:
        registry = session.app.victor.registry
        items = [{"url": f"{server}/hello"}, {"url": "http://evil.test/"}]
        plan = plan_goal(GoalSpec(steps=[StepSpec(skill="fetch", items=items)]), settings, registry)
        job = wait_job(dispatch_plan(session.app, plan), timeout_s=60)
        # A refused item is recorded, not fatal (partial where the ledger reports that).
        assert job.status in {"succeeded", "partial"}, job.error
        results = session.app.victor.ledger.results(job.job_id)
        outcomes = [outcome for batch in results.values() for outcome in batch]
    finally:
        session.close()
    good = next(outcome for outcome in outcomes if outcome["ok"])
    bad = next(outcome for outcome in outcomes if not outcome["ok"])
    assert good["value"]["text"] == "hello"
    assert bad["type"] == "AccessDeniedError" and "evil.test" in bad["error"]

"""B2: schemathesis over the OpenAPI schema, in process against the ASGI app, all checks on."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, assume, given, settings
from schemathesis import GenerationMode

from orchestrator.api.app import create_api
from orchestrator.api.keystore import KeyStore, parse_scopes
from workers.core.keys import Keys
from workers.core.redis_client import redis_client

pytestmark = [pytest.mark.redis]

EXAMPLES = 150
STATEFUL_EXAMPLES = 25


@pytest.fixture
def api_app(redis_settings, worker_factory, tmp_path) -> Any:
    (tmp_path / "a.py").write_text("x = 1\n")
    settings = redis_settings(
        allowed_roots=[tmp_path], api_rate_limit=1_000_000, batch_dir=str(tmp_path / "batches")
    )
    worker_factory(settings, concurrency=1)  # so /readyz is ready (503 is for a real outage)
    app = create_api(settings)
    yield app
    # A generated batch may have started a run: stop its driver before the prefix goes.
    runner = app.state.batch_runner
    for run_id in runner.running():
        runner.store.update(run_id, status="cancelled")
    assert runner.wait(30) == []


@pytest.fixture
def api_schema(api_app) -> Any:
    # The one semantic rule JSON Schema cannot state: a path must exist inside the allowed
    # roots, and an item merged with the step's params must match the skill's input model.
    # Those answer 422 with the field named; every other check runs at its default.
    config = schemathesis.Config.from_dict(
        {
            "checks": {
                "positive_data_acceptance": {
                    "expected-statuses": ["2xx", "401", "403", "404", "409", "422", "429"]
                }
            }
        }
    )
    return schemathesis.openapi.from_asgi("/openapi.json", api_app, config=config)


@pytest.fixture
def auth_headers(api_app) -> dict[str, str]:
    settings = api_app.state.services.settings
    store = KeyStore(Keys(settings.key_prefix), redis_client(settings.redis_url), None)
    return {"Authorization": f"Bearer {store.create('fuzz', parse_scopes('admin'))}"}


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_api_conforms_to_its_schema(api_schema, auth_headers, mode) -> None:
    """Every operation, valid and invalid inputs, every check (incl. ignored auth): 0 failures."""

    @given(case=api_schema.as_strategy(mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        # A query parameter whose value is an empty list is not sent at all, so a "violating"
        # extra parameter like {"": []} never reaches the server: not a case to judge.
        assume(all(value not in (None, []) for value in (case.query or {}).values()))
        case.call_and_validate(headers=auth_headers)

    run()


def test_schema_declares_the_bearer_scheme_and_error_models(api_app) -> None:
    document = api_app.openapi()
    assert document["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"
    submit = document["paths"]["/v1/jobs"]["post"]
    assert submit["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "GoalSpec"
    )
    for status in ("202", "400", "401", "403", "413", "415", "422", "429", "503"):
        assert status in submit["responses"], status
    assert "StepSpec" in document["components"]["schemas"]
    events = document["paths"]["/v1/jobs/{job_id}/events"]["get"]
    assert "text/event-stream" in events["responses"]["200"]["content"]


def test_api_conforms_statefully(api_app, api_schema, auth_headers) -> None:
    """The stateful phase: submit, then read, page, follow and revoke the job it returned."""
    links = api_app.openapi()["paths"]["/v1/jobs"]["post"]["responses"]["202"]["links"]
    assert {"ReadJob", "ReadResults", "FollowEvents", "RevokeJob"} <= set(links)
    base = api_schema.as_state_machine()

    reached: set[tuple[str, str, int]] = set()

    class Machine(base):  # type: ignore[misc, valid-type]
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"headers": auth_headers}

        def after_call(self, response: Any, case: Any) -> None:
            reached.add((case.method.upper(), case.path, response.status_code))

    Machine.run(
        settings=settings(
            max_examples=STATEFUL_EXAMPLES,
            stateful_step_count=6,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
    )
    # Sequences ran through the links (a generated goal is rarely valid, since an item's
    # parameters depend on its skill, so most linked calls meet a 404; each answer was checked).
    assert {("POST", "/v1/jobs"), ("GET", "/v1/jobs/{job_id}")} <= {
        (method, path) for method, path, _ in reached
    }, repr(sorted(reached))

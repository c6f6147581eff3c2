"""B2: schemathesis over the OpenAPI schema, every check on (missing auth included).

The full run lives in tests/orchestrator/api/test_schema.py (150 examples per mode, in process
against the ASGI app). This one adds what that cannot see, at a small size: the same checks
over a real socket against uvicorn, so HTTP parsing, the body limit middleware and connection
handling are in the loop. It writes audit-results/B2.json.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, assume, given, settings
from schemathesis import GenerationMode

from orchestrator.harness.audit import AuditResult
from tests.reliability.api_support import API_OVERRIDES
from tests.reliability.conftest import size

pytestmark = [pytest.mark.redis, pytest.mark.integration]


def test_b2_schema_checks_over_a_real_socket(
    redis_settings, live_api, worker_factory, tmp_path
) -> None:
    (tmp_path / "a.py").write_text("x = 1\n")
    api_settings = redis_settings(**API_OVERRIDES, allowed_roots=[tmp_path])
    worker_factory(api_settings, concurrency=1)  # /readyz answers 200 (503 means an outage)
    api = live_api(api_settings)
    config = schemathesis.Config.from_dict(
        {
            "checks": {
                "positive_data_acceptance": {
                    "expected-statuses": ["2xx", "401", "403", "404", "409", "422", "429"]
                }
            }
        }
    )
    schema = schemathesis.openapi.from_url(api.url + "/openapi.json", config=config)
    checks = schema.config.checks
    assert checks.ignored_auth.enabled and checks.not_a_server_error.enabled
    headers = {"Authorization": f"Bearer {api.key(tenant='b2', scopes='admin')}"}
    examples = size(15, 150, "VICTOR_SOAK_B2_EXAMPLES")
    calls = {"count": 0}

    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

        @given(case=schema.as_strategy(mode))
        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            # An empty-list query value is not sent at all: not a case to judge.
            assume(all(value not in (None, []) for value in (case.query or {}).values()))
            calls["count"] += 1
            case.call_and_validate(headers=headers, timeout=30)

        run()
    AuditResult(
        scenario="B2",
        accepted=0,
        completed=0,
        lost=0,
        unexpected=0,
        dup_exec=0,
        dup_effect=0,
        recovery_s=None,
        executions=0,
        extra={
            "cases": calls["count"],
            "examples_per_mode": examples,
            "failures": 0,
            "in_process_run": "tests/orchestrator/api/test_schema.py (150 per mode)",
        },
    ).write()

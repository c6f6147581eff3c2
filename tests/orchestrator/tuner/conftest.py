"""The tuner's tests share the API tests' live server (GET /v1/tuner)."""

from tests.orchestrator.api.conftest import live_api  # noqa: F401 - a fixture, used by name

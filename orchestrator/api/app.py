"""The API app factory: FastAPI with the body limit, one error handler and tiny route modules."""

from __future__ import annotations

import gc
import inspect
from typing import Any

from celery import Celery
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi

from orchestrator.api.batches import BatchRunner
from orchestrator.api.body_limit import BodyLimitMiddleware
from orchestrator.api.errors import install_handlers
from orchestrator.api.fast_submit import FastSubmitMiddleware
from orchestrator.api.keystore import KeyStore
from orchestrator.api.routes import batches, cache, health, jobs, metrics, skills, tuner
from orchestrator.api.services import build_services
from orchestrator.api.submit import Submitter
from orchestrator.core.plan import GoalSpec
from workers.core.settings import Settings, load_settings

DESCRIPTION = """Submit goal specs as jobs to a Celery worker fleet, follow their results as
Server-Sent Events, and read skills, cache and metrics. Every /v1 route needs an API key
(`Authorization: Bearer <key>`) bound to a tenant and scopes (submit, read, admin)."""


def create_api(settings: Settings | None = None, celery_app: Celery | None = None) -> FastAPI:
    """Build the API for ``settings`` (distributed mode); no network I/O happens here."""
    settings = settings or load_settings()
    services = build_services(settings, celery_app)
    api = FastAPI(
        title="victor-fleet",
        version="1",
        description=DESCRIPTION,
        dependencies=[Depends(reject_unknown_query)],
        **telemetry_options(settings),
    )
    api.state.services = services
    api.state.key_store = KeyStore(services.keys, services.redis, settings.api_keys_file)
    api.state.submitter = Submitter(services)
    api.state.batch_runner = BatchRunner(services)
    install_handlers(api)
    for module in (jobs, batches, skills, health):
        api.include_router(module.router)
    for router in optional_routers():
        api.include_router(router)
    # Innermost first: the submit fast path sits inside the body limit.
    api.add_middleware(FastSubmitMiddleware)
    api.add_middleware(BodyLimitMiddleware, max_bytes=settings.api_max_body_bytes)
    api.openapi = lambda: _openapi(api)  # type: ignore[method-assign]
    # What start-up built lives as long as the process: keep it out of the collector's full
    # passes (each walked every module and model, a pause that showed in the p99).
    gc.collect()
    gc.freeze()
    return api


def telemetry_options(settings: Settings) -> dict[str, Any]:
    """FastAPI's native telemetry off unless ``api_opentelemetry`` (releases without it: none)."""
    if settings.api_opentelemetry or "telemetry" not in inspect.signature(FastAPI).parameters:
        return {}
    return {"telemetry": {"tracing": False, "metrics": False, "logs": False}}


async def reject_unknown_query(request: Request) -> None:
    """422 for query parameters a route does not declare (a typo should not pass silently)."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None or not request.query_params:
        return
    known = _query_names(dependant)
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        names = ", ".join(sorted(known)) or "none"
        raise RequestValidationError(
            [
                {
                    "loc": ("query", name),
                    "msg": f"unknown query parameter; known: {names}",
                    "type": "extra_forbidden",
                }
                for name in unknown
            ]
        )


def _query_names(dependant: Any) -> set[str]:
    names = {param.alias for param in dependant.query_params}
    for child in dependant.dependencies:
        names |= _query_names(child)
    return names


def optional_routers() -> list[Any]:
    """The cache, metrics and tuner routes (all always ship)."""
    return [cache.router, metrics.router, tuner.router]


def _openapi(api: FastAPI) -> dict[str, Any]:
    if api.openapi_schema:
        return api.openapi_schema
    schema = get_openapi(
        title=api.title, version=api.version, description=api.description, routes=api.routes
    )
    # The submit route reads its body itself (auth and content type first), so add its schema.
    goal_schema = GoalSpec.model_json_schema(ref_template="#/components/schemas/{model}")
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.update(goal_schema.pop("$defs", {}))
    components["GoalSpec"] = goal_schema
    # So does the batch route; the event streams' data (in their 200 answers) uses the rest.
    from orchestrator.api.models import BatchProgress, BatchSpec, JobProgress, StreamError

    for event_model in (BatchSpec, BatchProgress, JobProgress, StreamError):
        components[event_model.__name__] = event_model.model_json_schema(
            ref_template="#/components/schemas/{model}"
        )
    if "/v1/cache/invalidate" in schema["paths"]:
        from orchestrator.api.models import CacheInvalidation

        components["CacheInvalidation"] = CacheInvalidation.model_json_schema(
            ref_template="#/components/schemas/{model}"
        )
    # A step or reduce may only name an installed skill: say so, so the schema is exact.
    names = sorted(api.state.services.registry.names())
    for model in ("StepSpec", "ReduceSpec", "BatchSpec"):
        components[model]["properties"]["skill"]["enum"] = names
    api.openapi_schema = schema
    return schema

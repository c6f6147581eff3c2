"""/healthz (the process answers) and /readyz (Redis answers and a worker is ready)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from orchestrator.api.models import Health, Readiness
from orchestrator.api.security import ServicesDep
from workers.core.errors import BackendUnavailableError
from workers.core.redis_client import translated

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="Liveness")
def healthz() -> dict[str, Any]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Readiness",
    responses={503: {"model": Readiness, "description": "Redis or every worker is missing."}},
)
def readyz(services: ServicesDep) -> JSONResponse:
    redis_ok = False
    workers = 0
    try:
        with translated("checking readiness"):
            services.redis.ping()
            redis_ok = True
            for _ in services.redis.scan_iter(services.keys.worker_ready_pattern(), count=1000):
                workers += 1
    except BackendUnavailableError:
        pass
    ready = redis_ok and workers > 0
    body = {"status": "ready" if ready else "not_ready", "redis": redis_ok, "workers": workers}
    return JSONResponse(body, status_code=200 if ready else 503)

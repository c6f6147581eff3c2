"""/v1/cache: the shared cache's figures, and invalidation for the caller's tenant."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from orchestrator.api.errors import responses
from orchestrator.api.jobs import decode_json, validation_error
from orchestrator.api.models import CacheInvalidated, CacheInvalidation, CacheStats
from orchestrator.api.security import AdminPrincipal, ReadPrincipal, ServicesDep
from workers.cache import get_cache_stats, invalidate_cache

router = APIRouter(prefix="/v1/cache", tags=["cache"])

INVALIDATION_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/CacheInvalidation"}}
        },
    }
}


@router.get("", response_model=CacheStats, responses=responses(), summary="Cache figures")
def cache_stats(principal: ReadPrincipal, services: ServicesDep) -> dict[str, Any]:
    """Hit rates, sizes and bytes of the three caches, summed over the fleet."""
    return get_cache_stats(services.settings)


@router.post(
    "/invalidate",
    response_model=CacheInvalidated,
    responses=responses(400, 413, 415, 422),
    openapi_extra=INVALIDATION_BODY,
    summary="Invalidate cache entries of your tenant",
)
async def invalidate(
    request: Request, principal: AdminPrincipal, services: ServicesDep
) -> dict[str, Any]:
    """Drop matching entries from Redis and from every process's L1 (this tenant only)."""
    data = decode_json(await request.body(), request.headers.get("content-type"))
    try:
        spec = CacheInvalidation.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from exc
    return await run_in_threadpool(
        invalidate_cache,
        spec.cache,
        spec.pattern,
        tenant=principal.tenant,
        settings=services.settings,
    )

"""/v1/metrics (JSON) and /metrics (Prometheus text, with the caches' hit rates)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials

from orchestrator.api.errors import responses
from orchestrator.api.keystore import KeyStore
from orchestrator.api.models import FleetMetrics
from orchestrator.api.security import ReadPrincipal, ServicesDep, bearer, get_key_store, require
from orchestrator.api.services import Services, get_services
from workers.cache import get_cache_stats
from workers.telemetry.fleet import get_metrics, prometheus_text

router = APIRouter(tags=["metrics"])


@router.get("/v1/metrics", response_model=FleetMetrics, responses=responses(), summary="Metrics")
def metrics_json(principal: ReadPrincipal, services: ServicesDep) -> dict[str, Any]:
    """Latency percentiles, throughput, memory per worker and queue depth over the window."""
    return get_metrics(services.settings)


def scrape_allowed(
    services: Annotated[Services, Depends(get_services)],
    store: Annotated[KeyStore, Depends(get_key_store)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    """A read key, unless VICTOR_API_PUBLIC_METRICS opens /metrics to scrapers."""
    if services.settings.api_public_metrics:
        return
    require("read")(services, store, credentials)


@router.get(
    "/metrics",
    response_class=Response,
    dependencies=[Depends(scrape_allowed)],
    responses={
        **responses(),
        200: {
            "content": {"text/plain": {"schema": {"type": "string"}}},
            "description": "Prometheus text exposition format.",
        },
    },
    summary="Prometheus metrics",
)
def metrics_text(services: ServicesDep) -> Response:
    """Fleet, skill, worker and queue gauges, and each cache's hit rate."""
    text = prometheus_text(services.settings) + cache_text(services)
    return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")


def cache_text(services: Services) -> str:
    stats = get_cache_stats(services.settings)
    lines = [
        "# HELP victor_cache_hit_rate Hits over lookups per cache (L1 and L2), fleet-wide",
        "# TYPE victor_cache_hit_rate gauge",
    ]
    for name, figures in sorted(stats.get("caches", {}).items()):
        rate = figures.get("hit_rate")
        if isinstance(rate, int | float):
            lines.append(f'victor_cache_hit_rate{{cache="{name}"}} {float(rate)}')
    lines += [
        "# HELP victor_cache_entries Entries held per cache, summed over processes",
        "# TYPE victor_cache_entries gauge",
    ]
    for name, figures in sorted(stats.get("caches", {}).items()):
        size = figures.get("current_size")
        if isinstance(size, int | float):
            lines.append(f'victor_cache_entries{{cache="{name}"}} {float(size)}')
    return "\n".join(lines) + "\n"

"""/v1/tuner: each worker's pool size, bounds and last decisions (``victor tuner status``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from orchestrator.api.errors import responses
from orchestrator.api.models import TunerStatus
from orchestrator.api.security import ReadPrincipal, ServicesDep
from orchestrator.tuner.status import tuner_status

router = APIRouter(tags=["tuner"])


@router.get("/v1/tuner", response_model=TunerStatus, responses=responses(), summary="Tuner")
def tuner(principal: ReadPrincipal, services: ServicesDep) -> dict[str, Any]:
    """The acting tuner, the replica recommendation, and per worker its size and why."""
    return tuner_status(services.settings)

"""/v1/skills: the installed skills and their input schemas."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from orchestrator.api.errors import responses
from orchestrator.api.models import SkillList
from orchestrator.api.security import ReadPrincipal, ServicesDep

router = APIRouter(prefix="/v1/skills", tags=["skills"])


@router.get("", response_model=SkillList, responses=responses(), summary="List installed skills")
def list_skills(principal: ReadPrincipal, services: ServicesDep) -> dict[str, Any]:
    return {
        "items": [
            {
                "name": spec.name,
                "description": spec.description,
                "task": spec.task_name,
                "cacheable": spec.cacheable,
                "input_schema": spec.input_model.model_json_schema(),
            }
            for spec in services.registry.specs()
        ]
    }

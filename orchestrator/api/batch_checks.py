"""A batch submission checked as ``victor batch`` checks it, and every item: 422 naming the
field (``items.3.path``, ``params.ms``) before anything is recorded."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from orchestrator.api.jobs import MAX_REPORTED_PROBLEMS
from orchestrator.api.models import BatchSpec
from orchestrator.api.quotas import PROBE_SKILLS
from orchestrator.api.services import Services
from workers.core.errors import AccessDeniedError, ScopeError
from workers.core.paths import confine
from workers.skills.spec import SkillSpec


def spec_hash(spec: BatchSpec) -> str:
    """The body's canonical hash: the same body under an Idempotency-Key gives the same run."""
    canonical = json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _problem(location: tuple[Any, ...], message: str, kind: str) -> dict[str, Any]:
    return {"loc": ("body", *location), "msg": message, "type": kind}


def check_spec(services: Services, spec: BatchSpec) -> SkillSpec:
    """What ``victor batch`` checks, and every item: 422 naming the field, before anything runs.

    Raises:
        RequestValidationError: an unknown skill, too many items, or an item (merged over
            ``params``) or ``reduce_params`` that does not fit its skill's input model.
        ScopeError: a probe skill while ``api_probe_skills_enabled`` is off (403).
    """
    settings, registry = services.settings, services.registry
    known = ", ".join(registry.names())
    skills = [("skill", spec.skill)] + ([("reduce", spec.reduce)] if spec.reduce else [])
    for field, name in skills:
        if name not in registry.names():
            message = f"no skill named {name!r}; known skills: {known}"
            raise RequestValidationError([_problem((field,), message, "unknown_skill")])
        if name in PROBE_SKILLS and not settings.api_probe_skills_enabled:
            raise ScopeError(
                f"skill {name!r} is a test probe, off for the API; the fleet's operator enables "
                "probes with VICTOR_API_PROBE_SKILLS_ENABLED=true"
            )
    most = settings.api_max_batch_items
    if len(spec.items) > most:
        message = (
            f"{len(spec.items)} items, more than {most} per run (api_max_batch_items); split "
            "the run, or run victor batch on a file"
        )
        raise RequestValidationError([_problem(("items",), message, "too_many_items")])
    skill = registry.get(spec.skill)
    problems = _item_problems(skill, spec, settings.allowed_roots)
    if spec.reduce is not None:
        reduce = registry.get(spec.reduce)
        try:
            reduce.input_model.model_validate({**spec.reduce_params, "results": []})
        except ValidationError as exc:
            problems += [
                _problem(("reduce_params", *error["loc"]), error["msg"], error["type"])
                for error in exc.errors()
            ]
    if problems:
        raise RequestValidationError(problems[:MAX_REPORTED_PROBLEMS])
    return skill


def _item_problems(skill: SkillSpec, spec: BatchSpec, roots: list[Path]) -> list[dict[str, Any]]:
    """Each item merged over ``params`` against the skill's input model, and its file against
    the allowed roots, as the jobs route checks a goal's items; a field that comes from
    ``params`` is named there, once."""
    problems: list[dict[str, Any]] = []
    seen: set[tuple[Any, ...]] = set()
    hint = f"(skill {skill.name!r}; its input schema is at GET /v1/skills)"
    for index, item in enumerate(spec.items):
        try:
            model = skill.input_model.model_validate({**spec.params, **item})
            if skill.file_param:
                confine(str(getattr(model, skill.file_param)), roots)
        except AccessDeniedError as exc:
            field = skill.file_param or "path"
            outside: tuple[Any, ...] = (
                ("params", field)
                if field in spec.params and field not in item
                else ("items", index, field)
            )
            if outside not in seen:
                seen.add(outside)
                problems.append(_problem(outside, str(exc), "path_not_allowed"))
        except ValidationError as exc:
            for error in exc.errors():
                location = tuple(error["loc"])
                head = location[0] if location else None
                if head in spec.params and head not in item:
                    where: tuple[Any, ...] = ("params", *location)
                else:
                    where = ("items", index, *location)
                if where not in seen:
                    seen.add(where)
                    problems.append(_problem(where, f"{error['msg']} {hint}", error["type"]))
        if len(problems) >= MAX_REPORTED_PROBLEMS:
            break
    return problems

"""Read goal specs from JSON or YAML files, with errors that name the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from orchestrator.core.plan import GoalSpec
from workers.core.errors import PlanError


def parse_goal(data: Any, source: str = "goal") -> GoalSpec:
    """Validate a decoded goal spec."""
    try:
        return GoalSpec.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'goal'}: {error['msg']}"
            for error in exc.errors()
        )
        raise PlanError(f"{source} is not a valid goal spec: {problems}") from exc


def load_goal_file(path: Path) -> GoalSpec:
    """Load ``path`` (.json, .yaml or .yml) as a goal spec."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PlanError(f"cannot read goal file {str(path)!r}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise PlanError(
            f"goal file {str(path)!r} is not UTF-8 text (byte {exc.object[exc.start]:#04x} at "
            f"offset {exc.start}); save it as UTF-8 and run again"
        ) from exc
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        elif path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            raise PlanError(f"goal file {str(path)!r} must end in .json, .yaml or .yml")
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise PlanError(f"goal file {str(path)!r} does not parse: {exc}") from exc
    return parse_goal(data, f"goal file {str(path)!r}")

"""The planner: goal spec (or goal text) -> Plan."""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from orchestrator.core.plan import (
    DEFAULT_EXCLUDES,
    GoalSpec,
    Plan,
    PlannedStep,
    ReduceSpec,
    StepSpec,
)
from workers.core.errors import AccessDeniedError, PlanError
from workers.core.paths import confine
from workers.core.settings import Settings
from workers.skills.registry import SkillRegistry


def plan_goal(goal: GoalSpec, settings: Settings, registry: SkillRegistry) -> Plan:
    """Expand paths into items, check skills and fan-out, decide chunking and inline runs."""
    steps = []
    for step in goal.steps:
        registry.get(step.skill)
        items = [dict(step.params, **item) for item in step.items]
        for root in step.paths:
            for path in expand_paths(root, step.include, step.exclude, settings):
                items.append(dict(step.params, path=path))
        steps.append(PlannedStep(skill=step.skill, items=items))
        total = sum(len(s.items) for s in steps)
        if total > settings.max_fan_out:
            raise PlanError(
                f"goal {goal.name!r} expands to more than {settings.max_fan_out} items "
                f"(max_fan_out); narrow its paths or raise VICTOR_MAX_FAN_OUT"
            )
    if goal.reduce is not None:
        registry.get(goal.reduce.skill)
    total = sum(len(step.items) for step in steps)
    inline = (not settings.parallel_execution_enabled) or total < settings.parallel_threshold
    return Plan(
        name=goal.name,
        steps=steps,
        reduce=goal.reduce,
        strategy=goal.strategy,
        chunk_size=goal.chunk_size or settings.chunk_size,
        inline=inline,
    )


def expand_paths(
    root: str, include: list[str], exclude: list[str], settings: Settings
) -> Iterator[str]:
    """Files under ``root`` (inside the allowed roots) matching ``include``, sorted."""
    base = confine(root, settings.allowed_roots)
    if base.is_file():
        yield str(base)
        return
    if not base.is_dir():
        raise PlanError(f"path {root!r} does not exist; pass a file or directory")
    excluded = DEFAULT_EXCLUDES + exclude
    for directory, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if not _matches(d, excluded))
        for filename in sorted(filenames):
            if _matches(filename, excluded) or not _matches(filename, include):
                continue
            full = Path(directory) / filename
            if full.is_symlink():
                try:
                    confine(str(full), settings.allowed_roots)
                except (AccessDeniedError, OSError):
                    continue  # a link that leaves the roots, or a dangling one
            yield str(full)


def _matches(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in patterns)


def analyze_goal(path: str, top: int = 10, include: list[str] | None = None) -> GoalSpec:
    """The goal behind ``victor analyze PATH``: analyze_code on every file, then report."""
    return GoalSpec(
        name=f"analyze {path}",
        steps=[StepSpec(skill="analyze_code", paths=[path], include=include or ["*"])],
        reduce=ReduceSpec(skill="report", params={"top": top}),
    )


_PATH_TOKEN = re.compile(r"(?:^|\s)((?:\.{1,2}|~)?/?[\w.\-/]+)")


def goal_from_text(text: str, settings: Settings, registry: SkillRegistry) -> GoalSpec:
    """Turn a goal sentence into a spec: the best-ranked skill over the paths it names."""
    from workers.skills.ranking import rank_skills

    ranked = rank_skills(text, [s for s in registry.specs() if s.file_param])
    if not ranked:
        raise PlanError(
            f"no skill matches goal {text!r}; name one of: {', '.join(registry.names())}"
        )
    skill = ranked[0][0]
    # Any word that names an existing file or directory inside the roots is a path
    # ("analyze tasks", "search 'x' in src/a.py"); none means the first root.
    tokens = _PATH_TOKEN.findall(text)
    paths = [token for token in tokens if _exists_inside(token, settings)]
    for token in tokens:
        if "/" in token and token not in paths and Path(token).expanduser().exists():
            confine(token, settings.allowed_roots)  # names the path and the fix
    paths = paths or ["."]
    params: dict[str, Any] = {}
    quoted = re.findall(r"['\"]([^'\"]+)['\"]", text)
    if skill == "search_code":
        if not quoted:
            raise PlanError(f"goal {text!r} searches for nothing; quote the pattern: 'TODO'")
        params["pattern"] = quoted[0]
    reduce = ReduceSpec(skill="report") if skill == "analyze_code" else None
    return GoalSpec(
        name=text[:200], steps=[StepSpec(skill=skill, paths=paths, params=params)], reduce=reduce
    )


def _exists_inside(token: str, settings: Settings) -> bool:
    try:
        return confine(token, settings.allowed_roots).exists()
    except (AccessDeniedError, OSError, ValueError):  # outside the roots, or not a path at all
        return False

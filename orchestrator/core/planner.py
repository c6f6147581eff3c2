"""The planner: goal spec (or goal text) -> Plan."""

from __future__ import annotations

import fnmatch
import functools
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from orchestrator.core.plan import (
    DEFAULT_EXCLUDES,
    GoalSpec,
    Plan,
    PlannedStep,
    ReduceSpec,
    StepSpec,
)
from workers.core.errors import AccessDeniedError, GoalInputError, PlanError
from workers.core.paths import confine
from workers.core.settings import Settings
from workers.skills.registry import SkillRegistry
from workers.skills.spec import SkillSpec


def plan_goal(goal: GoalSpec, settings: Settings, registry: SkillRegistry) -> Plan:
    """Expand paths into items, check skills, inputs and fan-out, decide chunking and inline.

    Everything that can be checked before dispatch is: each item's parameters against its
    skill's input model, file paths against the allowed roots, the reduce's parameters, and
    that the goal has something to do.
    """
    steps = []
    problems: list[dict[str, Any]] = []
    for number, step in enumerate(goal.steps, start=1):
        spec = registry.get(step.skill)
        items = [dict(step.params, **item) for item in step.items]
        for root in step.paths:
            for path in expand_paths(root, step.include, step.exclude, settings):
                items.append(dict(step.params, path=path))
        problems.extend(_check_items(number, step, spec, items, settings))
        steps.append(PlannedStep(skill=step.skill, items=items))
        total = sum(len(s.items) for s in steps)
        if total > settings.max_fan_out:
            raise PlanError(
                f"goal {goal.name!r} expands to more than {settings.max_fan_out} items "
                f"(max_fan_out); narrow its paths or raise VICTOR_MAX_FAN_OUT"
            )
    if goal.reduce is not None:
        problems.extend(_check_reduce(registry.get(goal.reduce.skill), goal.reduce.params))
    if problems:
        _raise_input_error(goal, problems)
    total = sum(len(step.items) for step in steps)
    if total == 0:
        raise PlanError(f"goal {goal.name!r} has nothing to do: {_why_empty(goal)}")
    inline = (not settings.parallel_execution_enabled) or total < settings.parallel_threshold
    return Plan(
        name=goal.name,
        steps=steps,
        reduce=goal.reduce,
        strategy=goal.strategy,
        chunk_size=goal.chunk_size or settings.chunk_size,
        inline=inline,
    )


MAX_PROBLEMS = 20  # invalid inputs named in one error


def _check_items(
    number: int, step: StepSpec, spec: SkillSpec, items: list[dict[str, Any]], settings: Settings
) -> list[dict[str, Any]]:
    """Each item against the skill's input model, explicit file paths against the roots.

    Returns problems as ``{"loc", "msg", "type"}`` with ``loc`` from the goal's root; items
    expanded from the step's paths are named by the step's ``params`` (they share them).
    """
    problems: list[dict[str, Any]] = []
    explicit = len(step.items)
    for position, item in enumerate(items):
        where: tuple[Any, ...] = (
            ("steps", number - 1, "items", position)
            if position < explicit
            else ("steps", number - 1, "params")
        )
        try:
            model = spec.input_model.model_validate(item)
            # Read through the model: the guide's `file` is an alias of `path`.
            path = getattr(model, spec.file_param, None) if spec.file_param else None
            if isinstance(path, str) and position < explicit:
                confine(path, settings.allowed_roots)
        except ValidationError as exc:
            problems.extend(_problems(exc, where))
        except AccessDeniedError as exc:
            loc = (*where, spec.file_param or "path")
            problems.append({"loc": loc, "msg": str(exc), "type": "path_not_allowed"})
        if len(problems) >= MAX_PROBLEMS:
            break
    return problems


def _check_reduce(spec: SkillSpec, params: dict[str, Any]) -> list[dict[str, Any]]:
    """A reduce's parameters are checked now, not after the whole header has run."""
    try:
        spec.input_model.model_validate({**params, "results": []})
    except ValidationError as exc:
        return _problems(exc, ("reduce", "params"))
    return []


def _problems(exc: ValidationError, where: tuple[Any, ...]) -> list[dict[str, Any]]:
    return [
        {"loc": (*where, *error["loc"]), "msg": error["msg"], "type": error["type"]}
        for error in exc.errors()[:MAX_PROBLEMS]
    ]


def _raise_input_error(goal: GoalSpec, problems: list[dict[str, Any]]) -> None:
    shown = "; ".join(
        f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}"
        for problem in problems[:5]
    )
    more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
    raise GoalInputError(
        f"goal {goal.name!r} has invalid input: {shown}{more}; fix the goal and submit it again",
        problems=problems,
    )


def _why_empty(goal: GoalSpec) -> str:
    reasons = []
    for number, step in enumerate(goal.steps, start=1):
        if step.paths:
            reasons.append(
                f"step {number} ({step.skill}): no file under {', '.join(step.paths)} matches "
                f"include {step.include} / exclude {step.exclude}"
            )
        else:
            reasons.append(f"step {number} ({step.skill}) has no items")
    return "; ".join(reasons) + "; give it items or paths that hold files"


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
    excluded = _matcher(tuple(DEFAULT_EXCLUDES + exclude))
    included = _matcher(tuple(include))
    for directory, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if not excluded(d))
        for filename in sorted(filenames):
            if excluded(filename) or not included(filename):
                continue
            full = os.path.join(directory, filename)
            if os.path.islink(full):
                try:
                    confine(full, settings.allowed_roots)
                except (AccessDeniedError, OSError):
                    continue  # a link that leaves the roots, or a dangling one
            yield full


@functools.lru_cache(maxsize=64)
def _matcher(patterns: tuple[str, ...]) -> Callable[[str], bool]:
    """Whether a name matches any of the shell ``patterns``: one regex for all of them.

    The same answers as ``fnmatch.fnmatch`` per pattern (names are not case-folded on POSIX),
    at one match per name instead of one per pattern.
    """
    if not patterns:
        return lambda name: False
    compiled = re.compile("|".join(fnmatch.translate(os.path.normcase(p)) for p in patterns))
    return lambda name: compiled.match(os.path.normcase(name)) is not None


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

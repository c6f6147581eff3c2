"""Plain-language goals to goal specs: skills ranked by ``select_tools``, inputs read from the text.

A goal (or, with ``enable_hierarchical_planning``, each of its sub-goals) becomes one step: the
best-ranked skill that is not a reduce, with what the text makes clear: paths that exist under
the allowed roots, a quoted pattern for ``search_code``, URLs for ``fetch``, text after a colon
or in quotes for ``summarize`` and ``chat``. A sub-goal that names no path works on the paths of
the one before it ("analyze pkg, then search it for 'TODO'"). ``analyze_code`` results, and
``search_code`` results when the goal asks for a report or summary, fan in to ``report`` (only
when every step is one of those two: the report reads no other skill's results).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from orchestrator.core.plan import GoalSpec, ReduceSpec, StepSpec
from orchestrator.core.subgoals import QUOTED, URL, SubGoals, split_by_rules, split_goal
from workers.core.errors import AccessDeniedError, PlanError
from workers.core.paths import confine
from workers.core.settings import Settings
from workers.skills.registry import SkillRegistry

# A ranking as select_tools returns it: ``[[skill, score], ...]`` best first.
Ranker = Callable[[str], list[list[Any]]]

REDUCE_SKILL = "report"
REPORTED_SKILLS = ("analyze_code", "search_code")  # the results the report reduce understands
_REPORT_WORDS = re.compile(r"\b(?:report|summary|summaries|overview|totals)\b", re.IGNORECASE)
_PATH_TOKEN = re.compile(r"(?:^|\s)((?:\.{1,2}|~)?/?[\w.\-/]+)")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|milliseconds?|s|secs?|seconds?)\b", re.IGNORECASE)
_SENTENCES = re.compile(r"\b(\d{1,2}|one|two|three|four|five)\s+sentences?\b", re.IGNORECASE)
_NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5}


@dataclass(frozen=True)
class PlannedSubGoal:
    """One sub-goal, the skill chosen for it (or the reduce) and the ranking it came from."""

    text: str
    skill: str
    ranking: list[list[Any]]
    is_reduce: bool = False


@dataclass(frozen=True)
class TextPlan:
    """A goal sentence planned: the spec, each sub-goal's choice, how it was split, notes."""

    goal: GoalSpec
    sub_goals: list[PlannedSubGoal]
    split_by: Literal["none", "rules", "provider"]
    notes: list[str] = field(default_factory=list)


def plan_for_goal(
    text: str, settings: Settings, registry: SkillRegistry, *, ranker: Ranker | None = None
) -> GoalSpec:
    """The goal spec for a sentence (see ``plan_text``)."""
    return plan_text(text, settings, registry, ranker=ranker).goal


def plan_text(
    text: str, settings: Settings, registry: SkillRegistry, *, ranker: Ranker | None = None
) -> TextPlan:
    """Plan a goal sentence; ``ranker`` defaults to the ``select_tools`` skill run here.

    Raises ``PlanError`` when no skill matches a (sub-)goal or the text lacks an input its skill
    needs, and ``AccessDeniedError`` for a path it names outside the allowed roots.
    """
    text = text.strip()
    if not text:
        raise PlanError("the goal is empty; say what to do, such as 'analyze src'")
    rank = ranker or select_tools_ranker(settings, registry)
    notes: list[str] = []
    if settings.enable_hierarchical_planning:
        split = split_goal(text, settings)
        notes.extend(split.notes)
    else:
        split = SubGoals([" ".join(text.split())], False, "rules")
        parts = split_by_rules(text).parts
        if len(parts) > 1:
            notes.append(
                f"the goal reads as {len(parts)} sub-goals but is planned as one step; set "
                "enable_hierarchical_planning (VICTOR_ENABLE_HIERARCHICAL_PLANNING=true) to "
                "split it"
            )
    steps: list[StepSpec] = []
    planned: list[PlannedSubGoal] = []
    wants_report = False
    context_paths: list[str] = []
    for part in split.parts:
        ranking = rank(part)
        asks_report = bool(_REPORT_WORDS.search(part))
        if steps and ranking and ranking[0][0] == REDUCE_SKILL:
            # "... then write a report": the fan-in of the steps before it.
            planned.append(PlannedSubGoal(part, REDUCE_SKILL, ranking, is_reduce=True))
            wants_report = True
            continue
        skill = choose_skill(part, ranking, registry, asks_report)
        step, named = build_step(skill, part, settings, registry, context_paths)
        context_paths = named or context_paths
        steps.append(step)
        planned.append(PlannedSubGoal(part, skill, ranking))
        wants_report = wants_report or asks_report or skill == "analyze_code"
    if not steps:
        raise PlanError(
            f"goal {text[:80]!r} asks only for a {REDUCE_SKILL}; say what to analyze or search "
            "first, such as 'analyze src and then write a report'"
        )
    reduce = None
    others = sorted({step.skill for step in steps} - set(REPORTED_SKILLS))
    if wants_report and not others:
        reduce = ReduceSpec(skill=REDUCE_SKILL)
    elif wants_report:
        notes.append(
            f"no {REDUCE_SKILL}: it reduces {' and '.join(REPORTED_SKILLS)} results only, and "
            f"this plan also runs {', '.join(others)}; each step's outcomes are shown instead"
        )
    strategy: Literal["parallel", "sequential"] = "sequential" if split.ordered else "parallel"
    goal = GoalSpec(
        name=" ".join(text.split())[:200], steps=steps, reduce=reduce, strategy=strategy
    )
    split_by: Literal["none", "rules", "provider"] = (
        split.split_by if settings.enable_hierarchical_planning else "none"
    )
    return TextPlan(goal=goal, sub_goals=planned, split_by=split_by, notes=notes)


def select_tools_ranker(settings: Settings, registry: SkillRegistry) -> Ranker:
    """Rank with the ``select_tools`` skill in this process (BM25, plus embeddings when the
    provider embeds), at most ``tool_selection_max_tools``."""
    from workers.skills.executor import SkillExecutor

    if "select_tools" not in registry.names():
        return bm25_ranker(registry, settings.tool_selection_max_tools)
    executor = SkillExecutor(settings, registry)

    def rank(query: str) -> list[list[Any]]:
        return list(executor.run("select_tools", {"query": query[:10_000]})["tools"])

    return rank


def bm25_ranker(registry: SkillRegistry, limit: int) -> Ranker:
    """BM25 alone over the installed skills (what select_tools does without embeddings)."""
    from workers.skills.bm25 import bm25_index, bm25_scores, ranked, terms_of

    index = bm25_index(registry.specs())
    return lambda query: ranked(bm25_scores(terms_of(query), index), limit)


def choose_skill(
    text: str, ranking: list[list[Any]], registry: SkillRegistry, asks_report: bool
) -> str:
    """The best-ranked skill that is not the reduce.

    A goal that asks for a report or summary of files ("give me a summary of the TODOs in
    pkg") may rank ``summarize`` first; without text to summarize, the best-ranked skill whose
    results the report understands is meant.
    """
    candidates = [str(name) for name, _ in ranking if name != REDUCE_SKILL]
    if not candidates:
        raise PlanError(
            f"no skill matches goal {text!r}; name one of: {', '.join(registry.names())}"
        )
    best = candidates[0]
    if best == "summarize" and asks_report and inline_text(text) is None:
        return next((name for name in candidates if name in REPORTED_SKILLS), best)
    return best


def build_step(
    skill: str,
    text: str,
    settings: Settings,
    registry: SkillRegistry,
    context_paths: list[str],
) -> tuple[StepSpec, list[str]]:
    """The step of ``skill`` for ``text``, and the paths the text names."""
    spec = registry.get(skill)
    quoted = [match[1:-1] for match in QUOTED.findall(text)]
    named = named_paths(text, settings)
    paths = named or context_paths
    if spec.file_param:
        params: dict[str, Any] = {}
        if skill == "read_file" and not paths:
            raise PlanError(
                f"goal {text!r} names no file to read; name a path inside the allowed roots"
            )
        if skill == "search_code":
            params = search_params(text, quoted)
        return StepSpec(skill=skill, paths=paths or ["."], params=params), named
    items = skill_items(skill, text, quoted, paths)
    for item in items:
        try:
            spec.input_model.model_validate(item)
        except ValidationError as exc:
            fields = ", ".join(
                ".".join(str(part) for part in error["loc"]) or "input" for error in exc.errors()
            )
            raise PlanError(
                f"goal {text!r} does not give skill {skill!r} what it needs ({fields}); "
                "say it in the goal, or write a goal spec file for victor run"
            ) from exc
    return StepSpec(skill=skill, items=items), named


def skill_items(skill: str, text: str, quoted: list[str], paths: list[str]) -> list[dict[str, Any]]:
    """The items of a skill that takes no file parameter, from what the text says."""
    inline = inline_text(text)
    if skill == "run_tests":
        extra = {"keyword": quoted[0]} if quoted else {}
        return [{"path": path, **extra} for path in paths] or [extra]
    if skill == "fetch":
        urls = [url.rstrip(".,;:)") for url in URL.findall(text)]
        if not urls:
            raise PlanError(f"goal {text!r} names no URL to fetch; write it out: https://...")
        return [{"url": url} for url in urls]
    if skill == "summarize":
        if inline is None:
            raise PlanError(
                f"goal {text!r} gives no text to summarize; quote it or put it after a colon"
            )
        item: dict[str, Any] = {"text": inline}
        sentences = _SENTENCES.search(text)
        if sentences:
            word = sentences.group(1).lower()
            item["max_sentences"] = _NUMBER_WORDS.get(word) or int(word)
        return [item]
    if skill == "chat":
        return [{"messages": [{"role": "user", "content": inline or text}]}]
    if skill == "embed":
        if not quoted:
            raise PlanError(f"goal {text!r} gives no texts to embed; quote each one")
        return [{"texts": quoted}]
    if skill == "select_tools":
        return [{"query": inline or text}]
    if skill == "sleep":
        duration = _DURATION.search(text)
        if duration is None:
            return [{}]
        unit = duration.group(2).lower()
        scale = 1 if unit.startswith("m") else 1000
        return [{"ms": round(float(duration.group(1)) * scale)}]
    return [{}]


def search_params(text: str, quoted: list[str]) -> dict[str, Any]:
    """``search_code``'s pattern (the first quoted string) and its flags from the words."""
    if not quoted:
        raise PlanError(f"goal {text!r} searches for nothing; quote the pattern: 'TODO'")
    lowered = text.lower()
    params: dict[str, Any] = {"pattern": quoted[0]}
    if "regex" in lowered or "regular expression" in lowered:
        params["regex"] = True
    if re.search(r"ignor\w* case|case[- ]insensitive", lowered):
        params["ignore_case"] = True
    return params


def inline_text(text: str) -> str | None:
    """The text a goal hands over: after its first colon (outside quotes and URLs), else its
    quoted strings; None when it has neither."""
    masked = URL.sub(lambda match: "_" * len(match.group(0)), text)
    masked = QUOTED.sub(lambda match: "_" * len(match.group(0)), masked)
    colon = masked.find(":")
    if colon >= 0 and text[colon + 1 :].strip():
        return text[colon + 1 :].strip()
    quoted = [match[1:-1] for match in QUOTED.findall(text)]
    return "\n".join(quoted) if quoted else None


def named_paths(text: str, settings: Settings) -> list[str]:
    """Words of ``text`` (outside quotes and URLs) that name an existing file or directory
    inside the allowed roots, in order. A path with a ``/`` that exists outside them is
    refused (``AccessDeniedError`` names it and the fix) rather than silently left out."""
    masked = QUOTED.sub(" ", URL.sub(" ", text))
    found: list[str] = []
    for raw in _PATH_TOKEN.findall(masked):
        token = raw.rstrip(".,;:!?") if raw not in (".", "..") else raw
        if not token or token in found:
            continue
        try:
            inside = confine(token, settings.allowed_roots).exists()
        except (AccessDeniedError, OSError, ValueError):
            inside = False
            if "/" in token and _exists(token):
                confine(token, settings.allowed_roots)  # raises, naming the path and the fix
        if inside:
            found.append(token)
    return found


def _exists(token: str) -> bool:
    try:
        return Path(token).expanduser().exists()
    except (OSError, ValueError):
        return False

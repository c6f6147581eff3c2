"""Splitting a goal sentence into sub-goals: through the provider when one is configured, by rules
otherwise (or when the provider's answer is unusable, which the result says).

Rules: a list (numbered ``1. ... 2. ...`` or ``1) ... 2) ...``, inline or one a line; or
bulleted with ``-`` or ``*``, one a line; text before its first item is an introduction and is
left out), then ``;`` and the connectives
``then``, ``and then``, ``after that``, ``afterwards``, ``finally``. Quoted text and URLs are
never split. Order matters (a sequential plan) when the goal is a numbered list or uses a
connective; bulleted sub-goals, or sub-goals separated by ``;`` alone, are independent.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from workers.core.errors import PlanError
from workers.core.settings import Settings

MAX_SUB_GOALS = 10

QUOTED = re.compile(r"'[^']+'|\"[^\"]+\"|`[^`]+`")
URL = re.compile(r"https?://[^\s'\"<>]+")
_NUMBERED = re.compile(r"(?:^|(?<=\s))(\d{1,2})[.)](?=\s)")
_BULLET = re.compile(r"^\s*[-*\u2022]\s+", re.MULTILINE)
_CONNECTIVE = re.compile(
    r"\s*,?\s*\b(?:and\s+then|then|after\s+that|afterwards|finally)\b\s*,?\s*",
    re.IGNORECASE,
)
_LEADING = re.compile(r"^(?:first(?:ly)?|and|also|please)\b[\s,]*", re.IGNORECASE)
_MASK = "\x00{}\x00"

SYSTEM_PROMPT = (
    "You split a user's goal into the smallest sub-goals that can each be done by one tool. "
    "Keep every path, quoted string and URL of the goal exactly as written, in the sub-goal "
    "that uses it. Do not invent work the goal does not ask for. Answer with JSON only: "
    '{"sub_goals": ["...", ...], "ordered": true|false}, where ordered says whether each '
    "sub-goal must wait for the previous one."
)
SUB_GOALS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "sub_goals": {
            "type": "array",
            "items": {"type": "string"},
            "minItems": 1,
            "maxItems": MAX_SUB_GOALS,
        },
        "ordered": {"type": "boolean"},
    },
    "required": ["sub_goals", "ordered"],
    "additionalProperties": False,
}


class SubGoalsAnswer(BaseModel):
    """The provider's structured answer."""

    model_config = ConfigDict(extra="ignore")

    sub_goals: list[str] = Field(min_length=1)
    ordered: bool = True


@dataclass(frozen=True)
class SubGoals:
    """A goal's parts, whether their order matters, and how they were found."""

    parts: list[str]
    ordered: bool
    split_by: Literal["rules", "provider"]
    notes: list[str] = field(default_factory=list)


def split_goal(text: str, settings: Settings) -> SubGoals:
    """Sub-goals of ``text``: the provider's when ``settings.provider`` is set, else the rules'.

    A provider error or an answer that is not the JSON asked for falls back to the rules, with
    a note that says why (the plan is shown before it runs).
    """
    if settings.provider == "none":
        return split_by_rules(text)
    from workers.providers import ProviderError

    try:
        return split_by_provider(text, settings)
    except (ProviderError, PlanError) as exc:
        fallback = split_by_rules(text)
        note = f"split by rules: the provider's split was not usable ({exc})"
        return SubGoals(fallback.parts, fallback.ordered, "rules", [note, *fallback.notes])


def split_by_rules(text: str) -> SubGoals:
    """Split on a numbered list, then on ``;`` and the connectives (outside quotes and URLs)."""
    masked, hidden = _masked(text)
    items, ordered = _listed_items(masked)
    parts: list[str] = []
    for item in items:
        for piece in item.split(";"):
            pieces = _CONNECTIVE.split(piece)
            ordered = ordered or len(pieces) > 1
            parts.extend(pieces)
    cleaned = [_clean(part) for part in parts]
    found = [_unmasked(part, hidden) for part in cleaned if part]
    if not found:
        raise PlanError(f"goal {text!r} is empty; say what to do, such as 'analyze src'")
    _check_count(text, found)
    return SubGoals(found, ordered and len(found) > 1, "rules")


def split_by_provider(text: str, settings: Settings) -> SubGoals:
    """Ask the provider for ``{"sub_goals": [...], "ordered": bool}`` (structured output)."""
    from workers.providers import ChatRequest, complete

    # Both APIs constrain the answer to the schema, each under its own parameter; Anthropic's
    # SDK takes no temperature.
    if settings.provider == "anthropic":
        temperature = None
        options: dict[str, Any] = {
            "output_config": {"format": {"type": "json_schema", "schema": SUB_GOALS_SCHEMA}}
        }
    else:
        temperature = 0.0
        options = {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "sub_goals", "strict": True, "schema": SUB_GOALS_SCHEMA},
            }
        }
    request = ChatRequest(
        messages=[{"role": "user", "content": text}],
        system=SYSTEM_PROMPT,
        temperature=temperature,
        max_tokens=1024,
        options=options,
    )
    answer = parse_answer(complete(settings, request).text)
    parts = [_clean(part) for part in answer.sub_goals]
    parts = [part for part in parts if part]
    if not parts:
        raise PlanError("the provider returned no sub-goal")
    _check_count(text, parts)
    return SubGoals(parts, answer.ordered and len(parts) > 1, "provider")


def parse_answer(text: str) -> SubGoalsAnswer:
    """The JSON object in a provider's answer (a code fence around it is tolerated)."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        raise PlanError(f"the provider's answer is not JSON: {text[:120]!r}")
    try:
        return SubGoalsAnswer.model_validate(json.loads(text[start : end + 1]))
    except (ValueError, ValidationError) as exc:
        raise PlanError(
            f"the provider's answer is not the sub-goal JSON asked for: {text[:120]!r}"
        ) from exc


def _check_count(text: str, parts: list[str]) -> None:
    if len(parts) > MAX_SUB_GOALS:
        raise PlanError(
            f"goal {text[:80]!r} splits into {len(parts)} sub-goals, more than "
            f"{MAX_SUB_GOALS}; submit it as a goal spec file (victor run) instead"
        )


def _masked(text: str) -> tuple[str, list[str]]:
    """``text`` with quoted strings and URLs replaced by placeholders (so they are not split)."""
    hidden: list[str] = []

    def hide(match: re.Match[str]) -> str:
        hidden.append(match.group(0))
        return _MASK.format(len(hidden) - 1)

    return QUOTED.sub(hide, URL.sub(hide, text)), hidden


def _unmasked(text: str, hidden: list[str]) -> str:
    # Placeholders are restored innermost last: a quoted string may hold a URL placeholder.
    for index in reversed(range(len(hidden))):
        text = text.replace(_MASK.format(index), hidden[index])
    return text


def _listed_items(text: str) -> tuple[list[str], bool]:
    """Items of a list numbered 1, 2, 3... (ordered) or bulleted one a line (not ordered), the
    text before the first item left out; else the whole text."""
    bullets = list(_BULLET.finditer(text))
    if len(bullets) > 1:
        return [item for item in _BULLET.split(text[bullets[0].start() :]) if item.strip()], False
    marks = list(_NUMBERED.finditer(text))
    sequence: list[re.Match[str]] = []
    for mark in marks:
        if int(mark.group(1)) == len(sequence) + 1:
            sequence.append(mark)
    if len(sequence) < 2:
        return [text], False
    items = []
    for mark, following in zip(sequence, [*sequence[1:], None], strict=True):
        items.append(text[mark.end() : following.start() if following else len(text)])
    return [item for item in items if item.strip(" \n\t:,.")], True


def _clean(part: str) -> str:
    """One sub-goal's text: spaces collapsed, list punctuation and "first", "and" left out."""
    part = " ".join(part.split()).strip(" ,:;").lstrip(".")
    previous = None
    while previous != part:
        previous, part = part, _LEADING.sub("", part).strip(" ,:;")
    return part if part.strip(".") else ""

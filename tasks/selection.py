"""select_tools: rank the installed skills for a goal text."""

from __future__ import annotations

import math
import re
from typing import Any

from tasks.catalog import SelectToolsInput
from workers.skills.spec import SkillContext, SkillSpec

_WORD = re.compile(r"[a-z0-9_]+")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def rank_skills(query: str, specs: list[SkillSpec], context_text: str = "") -> list[list[Any]]:
    """Score each skill by weighted word overlap with its name, keywords and description."""
    words = _words(query) + _words(context_text)
    if not words:
        return []
    scored = []
    for spec in specs:
        vocabulary: dict[str, float] = {}
        for word in _words(spec.description):
            vocabulary[word] = max(vocabulary.get(word, 0.0), 1.0)
        for word in spec.keywords:
            vocabulary[word] = 3.0
        for word in _words(spec.name.replace("_", " ")):
            vocabulary[word] = 4.0
        score = sum(vocabulary.get(word, 0.0) for word in words) / math.sqrt(len(words))
        if score > 0:
            scored.append([spec.name, round(score, 4)])
    scored.sort(key=lambda pair: (-pair[1], pair[0]))
    return scored


def select_tools(params: SelectToolsInput, context: SkillContext) -> dict[str, Any]:
    """Return ``{"tools": [[name, score], ...]}`` best first, at most ``max_tools``."""
    registry = context.services["registry"]
    limit = params.max_tools or context.settings.tool_selection_max_tools
    ranked = rank_skills(params.query, registry.specs(), params.context)
    return {"tools": ranked[:limit]}

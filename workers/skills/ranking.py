"""Ranking skills for a goal text: weighted word overlap with name, keywords, description.

Pure: the planner ranks with it, and the ``select_tools`` skill caches its results.
"""

from __future__ import annotations

import math
import re
from typing import Any

from workers.skills.spec import SkillSpec

_WORD = re.compile(r"[a-z0-9_]+")
# Bump when the scoring changes: it is part of every tool_selection key.
RANKING_VERSION = "1"

Weights = dict[str, dict[str, float]]


def words_of(text: str) -> list[str]:
    """The lower-case words of ``text``."""
    return _WORD.findall(text.lower())


def skill_weights(specs: list[SkillSpec]) -> Weights:
    """Per skill, the weight of each word: name 4, keyword 3, description 1."""
    table: Weights = {}
    for spec in specs:
        vocabulary: dict[str, float] = {}
        for word in words_of(spec.description):
            vocabulary[word] = max(vocabulary.get(word, 0.0), 1.0)
        for word in spec.keywords:
            vocabulary[word] = 3.0
        for word in words_of(spec.name.replace("_", " ")):
            vocabulary[word] = 4.0
        table[spec.name] = vocabulary
    return table


def score_skills(words: list[str], weights: Weights) -> list[list[Any]]:
    """``[[name, score], ...]`` best first for the words of a goal, skills scoring above 0."""
    if not words:
        return []
    scored: list[list[Any]] = []
    norm = math.sqrt(len(words))
    for name, vocabulary in weights.items():
        score = sum(vocabulary.get(word, 0.0) for word in words) / norm
        if score > 0:
            scored.append([name, round(score, 4)])
    scored.sort(key=lambda pair: (-pair[1], pair[0]))
    return scored


def rank_skills(query: str, specs: list[SkillSpec], context_text: str = "") -> list[list[Any]]:
    """Score each skill by weighted word overlap with its name, keywords and description."""
    return score_skills(words_of(query) + words_of(context_text), skill_weights(specs))

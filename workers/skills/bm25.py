"""BM25 ranking of skills for a goal text, over their names, keywords and descriptions.

Pure: ``bm25_index`` builds a JSON-ready index (cached by ``select_tools`` in the tool
selection cache's ``rl`` namespace), ``bm25_scores`` ranks a goal's words against it. A field
counts by repetition: a word of the name weighs like three occurrences, a keyword two, a word
of the description one. Words are lower-cased and lightly stemmed, so "summaries" meets
"summarize" and "tests" meets "test".
"""

from __future__ import annotations

import math
import re
from typing import Any

from workers.skills.spec import SkillSpec

BM25_VERSION = "2"
K1 = 1.2
B = 0.75
_NAME_WEIGHT = 3
_KEYWORD_WEIGHT = 2
_WORD = re.compile(r"[a-z0-9]+")
_SUFFIXES = (
    "izations",
    "ization",
    "ising",
    "izing",
    "ations",
    "ation",
    "ings",
    "ing",
    "ies",
    "ise",
    "ize",
    "ied",
    "ers",
    "er",
    "es",
    "ed",
    "ly",
    "s",
    "y",
    "e",
)
_STOP = frozenset(
    "a an and are as at be by can do for from i in into is it its me my of on or our please "
    "the this that to us we with you your what which how all each every".split()
)

Index = dict[str, Any]


def stem(word: str) -> str:
    """A crude stem: the word less its longest common suffix, keeping at least 3 letters."""
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def terms_of(text: str) -> list[str]:
    """The stemmed, lower-case words of ``text`` less stop words."""
    return [stem(word) for word in _WORD.findall(text.lower()) if word not in _STOP]


def _document(spec: SkillSpec) -> list[str]:
    terms = terms_of(spec.name.replace("_", " ")) * _NAME_WEIGHT
    for keyword in spec.keywords:
        terms += terms_of(keyword) * _KEYWORD_WEIGHT
    return terms + terms_of(spec.description)


def bm25_index(specs: list[SkillSpec]) -> Index:
    """Term frequencies per skill, document lengths and inverse document frequencies."""
    documents = {spec.name: _document(spec) for spec in specs}
    frequencies: dict[str, dict[str, int]] = {}
    containing: dict[str, int] = {}
    for name, terms in documents.items():
        counts: dict[str, int] = {}
        for term in terms:
            counts[term] = counts.get(term, 0) + 1
        frequencies[name] = counts
        for term in counts:
            containing[term] = containing.get(term, 0) + 1
    count = len(documents) or 1
    idf = {
        term: math.log(1 + (count - seen + 0.5) / (seen + 0.5)) for term, seen in containing.items()
    }
    lengths = {name: len(terms) for name, terms in documents.items()}
    average = sum(lengths.values()) / count if lengths else 1.0
    return {"tf": frequencies, "idf": idf, "length": lengths, "average": average or 1.0}


def bm25_scores(terms: list[str], index: Index) -> dict[str, float]:
    """BM25 score per skill for the goal's ``terms`` (skills scoring 0 left out)."""
    idf: dict[str, float] = index["idf"]
    average: float = index["average"]
    scores: dict[str, float] = {}
    unique = set(terms)
    for name, counts in index["tf"].items():
        length = index["length"][name]
        score = 0.0
        for term in unique:
            frequency = counts.get(term, 0)
            if frequency:
                norm = frequency + K1 * (1 - B + B * length / average)
                score += idf.get(term, 0.0) * frequency * (K1 + 1) / norm
        if score > 0:
            scores[name] = score
    return scores


def ranked(scores: dict[str, float], limit: int) -> list[list[Any]]:
    """``[[name, score], ...]`` best first (ties by name), at most ``limit``."""
    pairs = sorted(scores.items(), key=lambda pair: (-pair[1], pair[0]))
    return [[name, round(score, 4)] for name, score in pairs[:limit]]


def cosine(left: list[float], right: list[float]) -> float:
    """Cosine similarity of two vectors (0 when either is zero)."""
    dot = sum(a * b for a, b in zip(left, right, strict=False))
    norms = math.sqrt(sum(a * a for a in left)) * math.sqrt(sum(b * b for b in right))
    return dot / norms if norms else 0.0

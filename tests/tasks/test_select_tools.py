"""select_tools: BM25 over names, keywords and descriptions; labelled goals; the cache."""

from __future__ import annotations

from orchestrator.bench.goal_labels import LABELLED_GOALS
from tasks.catalog import SelectToolsInput
from tasks.selection import select_tools
from workers.cache import CacheProvider
from workers.core.settings import Settings
from workers.skills.bm25 import bm25_index, bm25_scores, stem, terms_of
from workers.skills.registry import load_registry
from workers.skills.spec import SkillContext


def _context(settings: Settings, cached: bool) -> SkillContext:
    services: dict[str, object] = {"registry": load_registry()}
    if cached:
        services["cache"] = CacheProvider(settings)
    return SkillContext(settings, services)


def test_the_labelled_set_has_50_goals_over_installed_skills() -> None:
    names = set(load_registry().names())
    assert len(LABELLED_GOALS) == 50
    assert {skill for _, skill in LABELLED_GOALS} <= names


def test_the_right_skill_ranks_first_for_at_least_90_percent_of_goals() -> None:
    context = _context(Settings(cache_dir=""), cached=False)
    wrong = []
    for goal, skill in LABELLED_GOALS:
        tools = select_tools(SelectToolsInput(query=goal), context)["tools"]
        if not tools or tools[0][0] != skill:
            wrong.append((goal, skill, tools[:2]))
    accuracy = 1 - len(wrong) / len(LABELLED_GOALS)
    assert accuracy >= 0.9, wrong


def test_at_most_max_tools_are_returned() -> None:
    settings = Settings(cache_dir="", tool_selection_max_tools=2)
    context = _context(settings, cached=False)
    assert len(select_tools(SelectToolsInput(query="read search run fetch"), context)["tools"]) == 2
    tools = select_tools(SelectToolsInput(query="read search run fetch", max_tools=3), context)
    assert len(tools["tools"]) == 3


def test_a_cached_ranking_equals_the_computed_one_and_is_counted() -> None:
    settings = Settings(cache_dir="")
    plain = select_tools(SelectToolsInput(query="grep the code"), _context(settings, False))
    context = _context(settings, cached=True)
    first = select_tools(SelectToolsInput(query="grep the code"), context)
    second = select_tools(SelectToolsInput(query="grep the code"), context)
    assert [list(pair) for pair in first["tools"]] == plain["tools"]
    assert second == first
    stats = context.services["cache"]().tool_selection.stats()  # type: ignore[operator]
    assert stats["l1_hits"] >= 1


def test_rare_words_weigh_more_than_common_ones() -> None:
    index = bm25_index(load_registry().specs())
    scores = bm25_scores(terms_of("pytest file"), index)
    assert max(scores, key=scores.__getitem__) == "run_tests"


def test_stemming_meets_word_forms() -> None:
    assert stem("summaries") == stem("summary")
    assert stem("tests") == stem("test")

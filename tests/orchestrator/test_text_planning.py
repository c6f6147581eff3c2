"""Goal sentences to goal specs: a labelled set of goals, the inputs read from the text, and
sub-goals split by rules when hierarchical planning is on."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from orchestrator.core.planner import plan_goal
from orchestrator.core.subgoals import split_by_rules
from orchestrator.core.text_planning import bm25_ranker, plan_text
from orchestrator.facade import Orchestrator
from workers.core.errors import AccessDeniedError, PlanError
from workers.core.settings import Settings
from workers.skills import load_registry
from workers.skills.registry import SkillRegistry

# Goal -> (the steps' skills in order, the reduce or None), planned as one goal.
LABELLED_GOALS: list[tuple[str, tuple[str, ...], str | None]] = [
    ("analyze pkg", ("analyze_code",), "report"),
    (
        "measure the cyclomatic complexity of the functions in pkg/core.py",
        ("analyze_code",),
        "report",
    ),
    ("count lines of code and comments under pkg", ("analyze_code",), "report"),
    ("how many functions and classes are in pkg", ("analyze_code",), "report"),
    ("give me an overview of the complexity hot spots in pkg", ("analyze_code",), "report"),
    ("find 'TODO' in pkg/core.py", ("search_code",), None),
    ("grep for 'import os' in the code", ("search_code",), None),
    ("where is 'MAX_RETRIES' used in pkg", ("search_code",), None),
    ("search pkg for the regex 'def \\w+' and give me a report", ("search_code",), "report"),
    ("list the matches of 'FIXME' under pkg by file", ("search_code",), None),
    ("show me notes.txt", ("read_file",), None),
    ("read the file docs/guide.md", ("read_file",), None),
    ("open notes.txt and print it", ("read_file",), None),
    ("run the tests in tests", ("run_tests",), None),
    ("execute pytest on tests/test_a.py", ("run_tests",), None),
    ("run the unit tests matching 'api'", ("run_tests",), None),
    ("check whether tests/test_a.py passes", ("run_tests",), None),
    ("download the page at https://example.org/", ("fetch",), None),
    ("fetch the JSON from https://api.example.org/v1/status", ("fetch",), None),
    ("summarize: The cat sat on the mat. It was warm. The dog slept.", ("summarize",), None),
    ("give me a tldr of 'long text here. more text.'", ("summarize",), None),
    ("condense this into two sentences: A long story. With parts. And more.", ("summarize",), None),
    ("ask the model: what is a closure in Python?", ("chat",), None),
    ("explain the difference between threads and processes", ("chat",), None),
    ("embed 'first sentence' and 'second sentence' as vectors", ("embed",), None),
    ("which tools should I use to refactor this module", ("select_tools",), None),
    ("wait 250 ms", ("sleep",), None),
    ("ping the workers with a no-op", ("noop",), None),
]

# Hierarchical goals split by rules -> (skills in order, reduce, strategy).
HIERARCHICAL_GOALS: list[tuple[str, tuple[str, ...], str | None, str]] = [
    (
        "analyze pkg, then search it for 'TODO'",
        ("analyze_code", "search_code"),
        "report",
        "sequential",
    ),
    (
        "1. read notes.txt 2. run the tests 3. fetch https://example.org/",
        ("read_file", "run_tests", "fetch"),
        None,
        "sequential",
    ),
    ("read notes.txt; fetch https://example.org/", ("read_file", "fetch"), None, "parallel"),
    ("find 'TODO' in pkg and then write a report", ("search_code",), "report", "sequential"),
    (
        "Do this:\n- find 'FIXME' in pkg\n- explain what a closure is",
        ("search_code", "chat"),
        None,
        "parallel",
    ),
    (
        "first wait 100 ms, after that ping the workers with a no-op, finally show me notes.txt",
        ("sleep", "noop", "read_file"),
        None,
        "sequential",
    ),
]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for name, text in {
        "pkg/__init__.py": "",
        "pkg/core.py": "x = 1  # TODO: remove\n",
        "pkg/util.js": "// FIXME\n",
        "tests/test_a.py": "def test_a():\n    pass\n",
        "notes.txt": "hello\n",
        "docs/guide.md": "# guide\n",
    }.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


@pytest.fixture
def registry() -> SkillRegistry:
    return load_registry()


@pytest.fixture
def settings_for(tree: Path) -> Callable[..., Settings]:
    def build(**overrides: Any) -> Settings:
        return Settings(**{"allowed_roots": [tree], **overrides})

    return build


@pytest.mark.parametrize(("text", "skills", "reduce"), LABELLED_GOALS)
def test_a_labelled_goal_plans_its_expected_skills(
    text: str,
    skills: tuple[str, ...],
    reduce: str | None,
    settings_for: Callable[..., Settings],
    registry: SkillRegistry,
) -> None:
    settings = settings_for()
    planned = plan_text(text, settings, registry)
    assert tuple(step.skill for step in planned.goal.steps) == skills
    assert (planned.goal.reduce.skill if planned.goal.reduce else None) == reduce
    # The spec is complete: the planner accepts it and finds something to do.
    assert plan_goal(planned.goal, settings, registry).item_count >= 1


def test_the_labelled_set_covers_at_least_20_goals_and_10_skills() -> None:
    assert len(LABELLED_GOALS) >= 20
    assert len({skill for _, skills, _ in LABELLED_GOALS for skill in skills}) >= 10


@pytest.mark.parametrize(("text", "skills", "reduce", "strategy"), HIERARCHICAL_GOALS)
def test_a_hierarchical_goal_becomes_one_step_per_sub_goal(
    text: str,
    skills: tuple[str, ...],
    reduce: str | None,
    strategy: str,
    settings_for: Callable[..., Settings],
    registry: SkillRegistry,
) -> None:
    settings = settings_for(enable_hierarchical_planning=True)
    planned = plan_text(text, settings, registry)
    assert planned.split_by == "rules"
    assert tuple(step.skill for step in planned.goal.steps) == skills
    assert (planned.goal.reduce.skill if planned.goal.reduce else None) == reduce
    assert planned.goal.strategy == strategy
    plan_goal(planned.goal, settings, registry)


def test_without_hierarchical_planning_a_multi_part_goal_is_one_step_with_a_note(
    settings_for: Callable[..., Settings], registry: SkillRegistry
) -> None:
    planned = plan_text("analyze pkg, then search it for 'TODO'", settings_for(), registry)
    assert planned.split_by == "none"
    assert len(planned.goal.steps) == 1
    assert "enable_hierarchical_planning" in planned.notes[0]


@pytest.mark.parametrize(
    ("text", "parts", "ordered"),
    [
        ("analyze src then run the tests", ["analyze src", "run the tests"], True),
        ("analyze src and then run the tests", ["analyze src", "run the tests"], True),
        ("read a.txt; read b.txt", ["read a.txt", "read b.txt"], False),
        ("1) analyze src 2) run the tests", ["analyze src", "run the tests"], True),
        (
            "Steps:\n1. analyze src\n2. run tests\n3. report",
            ["analyze src", "run tests", "report"],
            True,
        ),
        ("search for 'this then that' in src", ["search for 'this then that' in src"], False),
        (
            "fetch https://h.example/a;b then summarize it",
            ["fetch https://h.example/a;b", "summarize it"],
            True,
        ),
        ("count version 2. files and lines", ["count version 2. files and lines"], False),
        ("analyze src and search it for 'x'", ["analyze src and search it for 'x'"], False),
    ],
)
def test_rules_split_on_then_semicolons_and_numbered_lists(
    text: str, parts: list[str], ordered: bool
) -> None:
    split = split_by_rules(text)
    assert (split.parts, split.ordered) == (parts, ordered)


def test_a_sub_goal_without_a_path_works_on_the_previous_ones(
    settings_for: Callable[..., Settings], registry: SkillRegistry
) -> None:
    settings = settings_for(enable_hierarchical_planning=True)
    goal = plan_text("analyze pkg/core.py then search it for 'TODO'", settings, registry).goal
    assert [step.paths for step in goal.steps] == [["pkg/core.py"], ["pkg/core.py"]]
    assert goal.steps[1].params == {"pattern": "TODO"}


def test_a_report_is_not_added_over_results_it_cannot_read(
    settings_for: Callable[..., Settings], registry: SkillRegistry
) -> None:
    settings = settings_for(enable_hierarchical_planning=True)
    planned = plan_text("analyze pkg then read notes.txt", settings, registry)
    assert planned.goal.reduce is None
    assert any("no report" in note for note in planned.notes)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("make coffee", "no skill matches"),
        ("search for TODO in pkg", "quote the pattern"),
        ("fetch the status page", "names no URL"),
        ("summarize the meeting", "no text to summarize"),
        ("read the file", "names no file"),
        ("   ", "empty"),
    ],
)
def test_a_goal_missing_what_its_skill_needs_is_refused_with_the_fix(
    text: str, message: str, settings_for: Callable[..., Settings], registry: SkillRegistry
) -> None:
    with pytest.raises(PlanError, match=message):
        plan_text(text, settings_for(), registry)


def test_a_path_outside_the_allowed_roots_is_refused(
    tree: Path, settings_for: Callable[..., Settings], registry: SkillRegistry
) -> None:
    settings = settings_for(allowed_roots=[tree / "pkg"])
    with pytest.raises(AccessDeniedError, match="outside the allowed roots"):
        plan_text(f"read {tree}/notes.txt", settings, registry)


def test_search_flags_come_from_the_words(
    settings_for: Callable[..., Settings], registry: SkillRegistry
) -> None:
    goal = plan_text(
        "search pkg for the regular expression 'to+do' ignoring case", settings_for(), registry
    ).goal
    assert goal.steps[0].params == {"pattern": "to+do", "regex": True, "ignore_case": True}


def test_the_select_tools_ranking_and_bm25_alone_agree_without_embeddings(
    settings_for: Callable[..., Settings], registry: SkillRegistry
) -> None:
    # A prefix of its own: no facts in semantic memory, so no outcome weights either (facts
    # that earlier tests consolidated under the default prefix would reorder near-ties).
    settings = settings_for(key_prefix=f"bm25{uuid.uuid4().hex[:8]}")
    bm25 = bm25_ranker(registry, settings.tool_selection_max_tools)
    for text, _, _ in LABELLED_GOALS:
        by_skill = plan_text(text, settings, registry).sub_goals[0].ranking
        assert by_skill == bm25(text), text


def test_the_facade_plans_a_sentence_through_select_tools_and_its_cache(
    tree: Path, settings_for: Callable[..., Settings]
) -> None:
    from workers.cache import cache_manager

    settings = settings_for(
        cache_dir="",
        key_prefix=f"textplan{uuid.uuid4().hex[:8]}",
        enable_hierarchical_planning=True,
    )

    async def scenario() -> None:
        async with Orchestrator(settings=settings) as orchestrator:
            plan = await orchestrator.plan("analyze pkg then search it for 'TODO'")
            assert [step.skill for step in plan.steps] == ["analyze_code", "search_code"]
            assert [len(step.items) for step in plan.steps] == [3, 3]
            assert plan.reduce is not None and plan.reduce.skill == "report"
            assert plan.strategy == "sequential"
            # Each sub-goal is ranked by the select_tools skill, through its cache: planning
            # the sentence again finds both rankings there.
            cache = cache_manager(orchestrator.settings).tool_selection
            hits = cache.stats()["hits"]
            again = await orchestrator.plan("analyze pkg then search it for 'TODO'")
            assert again == plan
            assert cache.stats()["hits"] - hits >= 2

    asyncio.run(scenario())

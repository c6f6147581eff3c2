"""The planner: goal spec (or text) -> Plan; paths, chunking, inline runs, limits."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery, chain, chord, group

from orchestrator.core.dispatcher import _canvas, dispatch_plan, wait_job
from orchestrator.core.plan import GoalSpec, ReduceSpec, StepSpec
from orchestrator.core.planner import analyze_goal, expand_paths, goal_from_text, plan_goal
from workers.celery_app.factory import create_app
from workers.core.errors import AccessDeniedError, GoalInputError, PlanError, UnknownSkillError
from workers.core.names import BATCH_TASK
from workers.core.settings import Settings
from workers.skills import SkillRegistry, load_registry


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A small source tree with the clutter the default excludes must skip."""
    root = tmp_path / "repo"
    files = [
        "main.py",
        "README.md",
        "pkg/__init__.py",
        "pkg/core.py",
        "pkg/util.js",
        "pkg/deep/x.py",
        ".git/config",
        ".venv/lib/site.py",
        "pkg/__pycache__/core.pyc",
        "node_modules/dep/index.js",
        "build/out.py",
        "dist/wheel.py",
        "victor.egg-info/PKG",
        ".mypy_cache/a.json",
    ]
    for name in files:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# {name}\n")
    return root


@pytest.fixture
def registry() -> SkillRegistry:
    return load_registry()


def settings_for(root: Path, **values: Any) -> Settings:
    return Settings(allowed_roots=[root], **values)


def relative(paths: list[str], root: Path) -> list[str]:
    return [str(Path(path).relative_to(root.resolve())) for path in paths]


def step_paths(plan_items: list[dict[str, Any]], root: Path) -> list[str]:
    return relative([item["path"] for item in plan_items], root)


# Walk order: each directory's files (sorted), then its subdirectories (sorted).
EXPECTED_FILES = [
    "README.md",
    "main.py",
    "pkg/__init__.py",
    "pkg/core.py",
    "pkg/util.js",
    "pkg/deep/x.py",
]


def test_paths_expand_to_sorted_files_skipping_default_excludes(tree: Path) -> None:
    found = relative(list(expand_paths(str(tree), ["*"], [], settings_for(tree))), tree)
    assert found == EXPECTED_FILES


def test_include_patterns_select_files(tree: Path) -> None:
    found = relative(list(expand_paths(str(tree), ["*.py"], [], settings_for(tree))), tree)
    assert found == ["main.py", "pkg/__init__.py", "pkg/core.py", "pkg/deep/x.py"]


def test_exclude_patterns_skip_files_and_directories(tree: Path) -> None:
    settings = settings_for(tree)
    found = relative(list(expand_paths(str(tree), ["*"], ["deep", "*.md"], settings)), tree)
    assert found == ["main.py", "pkg/__init__.py", "pkg/core.py", "pkg/util.js"]


def test_a_file_path_is_one_item(tree: Path) -> None:
    found = list(expand_paths(str(tree / "main.py"), ["*.js"], [], settings_for(tree)))
    assert relative(found, tree) == ["main.py"]


def test_a_missing_path_is_a_plan_error(tree: Path) -> None:
    with pytest.raises(PlanError, match="does not exist"):
        list(expand_paths(str(tree / "nope"), ["*"], [], settings_for(tree)))


def test_a_path_outside_the_roots_is_refused(tree: Path, tmp_path: Path) -> None:
    with pytest.raises(AccessDeniedError):
        list(expand_paths(str(tmp_path), ["*"], [], settings_for(tree)))


def test_symlinks_out_of_the_root_are_skipped(tree: Path, tmp_path: Path) -> None:
    (tmp_path / "secret.py").write_text("x = 1\n")
    (tree / "leak.py").symlink_to(tmp_path / "secret.py")
    (tree / "alias.py").symlink_to(tree / "main.py")
    found = relative(list(expand_paths(str(tree), ["*.py"], [], settings_for(tree))), tree)
    assert "leak.py" not in found
    assert "alias.py" in found


def test_plan_goal_builds_items_with_step_params(tree: Path, registry: SkillRegistry) -> None:
    goal = GoalSpec(
        steps=[
            StepSpec(
                skill="search_code",
                paths=[str(tree / "pkg")],
                include=["*.py"],
                params={"pattern": "pkg"},
            ),
        ]
    )
    plan = plan_goal(goal, settings_for(tree), registry)
    [step] = plan.steps
    assert step.skill == "search_code"
    assert step_paths(step.items, tree) == ["pkg/__init__.py", "pkg/core.py", "pkg/deep/x.py"]
    assert all(item["pattern"] == "pkg" for item in step.items)


def test_explicit_items_come_before_paths_and_get_params(
    tree: Path, registry: SkillRegistry
) -> None:
    goal = GoalSpec(
        steps=[
            StepSpec(skill="sleep", items=[{"value": 1}, {"value": 2, "ms": 5}], params={"ms": 0})
        ]
    )
    [step] = plan_goal(goal, settings_for(tree), registry).steps
    assert step.items == [{"ms": 0, "value": 1}, {"ms": 5, "value": 2}]


@pytest.mark.parametrize(
    ("goal_chunk", "setting_chunk", "sizes"),
    [
        (None, 4, [4, 4, 2]),
        (3, 50, [3, 3, 3, 1]),
        (None, 50, [10]),
        (1, 50, [1] * 10),
    ],
)
def test_chunk_size_comes_from_the_goal_or_the_settings(
    goal_chunk: int | None,
    setting_chunk: int,
    sizes: list[int],
    registry: SkillRegistry,
    tree: Path,
) -> None:
    goal = GoalSpec(
        steps=[StepSpec(skill="noop", items=[{"value": index} for index in range(10)])],
        chunk_size=goal_chunk,
    )
    plan = plan_goal(goal, settings_for(tree, chunk_size=setting_chunk), registry)
    chunks = plan.chunks()
    assert [len(items) for _, _, items in chunks] == sizes
    flattened = [item["value"] for _, _, items in chunks for item in items]
    assert flattened == list(range(10))


def test_chunks_never_mix_steps(registry: SkillRegistry, tree: Path) -> None:
    goal = GoalSpec(
        steps=[
            StepSpec(skill="noop", items=[{"value": index} for index in range(3)]),
            StepSpec(skill="sleep", items=[{"ms": 0}] * 3),
        ],
        chunk_size=2,
    )
    chunks = plan_goal(goal, settings_for(tree), registry).chunks()
    assert [(step, skill, len(items)) for step, skill, items in chunks] == [
        (0, "noop", 2),
        (0, "noop", 1),
        (1, "sleep", 2),
        (1, "sleep", 1),
    ]


@pytest.mark.parametrize(
    ("count", "threshold", "inline"),
    [
        (2, 3, True),
        (3, 3, False),
        (1, 1, False),
        (9, 10, True),
    ],
)
def test_parallel_threshold_decides_inline(
    count: int, threshold: int, inline: bool, registry: SkillRegistry, tree: Path
) -> None:
    goal = GoalSpec(steps=[StepSpec(skill="noop", items=[{"value": i} for i in range(count)])])
    settings = settings_for(tree, parallel_threshold=threshold)
    assert plan_goal(goal, settings, registry).inline is inline


def test_a_goal_with_nothing_to_do_is_refused_naming_why(
    registry: SkillRegistry, tree: Path
) -> None:
    settings = settings_for(tree)
    with pytest.raises(PlanError, match="nothing to do: step 1 \\(noop\\) has no items"):
        plan_goal(GoalSpec(steps=[StepSpec(skill="noop", items=[])]), settings, registry)
    goal = GoalSpec(steps=[StepSpec(skill="analyze_code", paths=["."], include=["*.none"])])
    with pytest.raises(PlanError, match=r"no file under \. matches include \['\*\.none'\]"):
        plan_goal(goal, settings, registry)


def test_bad_items_and_reduce_parameters_are_refused_at_plan_time(
    registry: SkillRegistry, tree: Path
) -> None:
    settings = settings_for(tree)
    goal = GoalSpec(
        steps=[
            StepSpec(skill="sleep", items=[{"ms": -5}, {"ms": 1, "colour": "red"}]),
            StepSpec(skill="read_file", items=[{"path": "../../etc/passwd"}]),
        ],
        reduce=ReduceSpec(skill="report", params={"top": 0}),
    )
    with pytest.raises(GoalInputError) as raised:
        plan_goal(goal, settings, registry)
    where = [problem["loc"] for problem in raised.value.problems]
    assert ("steps", 0, "items", 0, "ms") in where
    assert ("steps", 0, "items", 1, "colour") in where
    assert ("steps", 1, "items", 0, "path") in where
    assert ("reduce", "params", "top") in where
    assert "VICTOR_ALLOWED_ROOTS" in str(raised.value)


def test_parallel_execution_disabled_runs_everything_inline(
    registry: SkillRegistry, tree: Path
) -> None:
    goal = GoalSpec(steps=[StepSpec(skill="noop", items=[{"value": i} for i in range(500)])])
    settings = settings_for(tree, parallel_execution_enabled=False)
    assert plan_goal(goal, settings, registry).inline is True


@pytest.fixture
def idle_app(tree: Path) -> Iterator[Celery]:
    """An embedded-mode app with no worker at all."""
    app = create_app(settings_for(tree, parallel_threshold=5))
    yield app
    app.close()


def test_an_inline_plan_runs_without_a_worker(idle_app: Celery, registry: SkillRegistry) -> None:
    settings = idle_app.victor.settings  # type: ignore[attr-defined]
    goal = GoalSpec(
        steps=[StepSpec(skill="noop", items=[{"value": 1}, {"value": 2}])],
        reduce=ReduceSpec(skill="report"),
    )
    plan = plan_goal(goal, settings, registry)
    assert plan.inline
    handle = dispatch_plan(idle_app, plan)
    job = wait_job(handle, timeout_s=5)
    assert job.status == "succeeded"
    assert job.result["totals"]["items"] == 2
    assert handle.result is None  # nothing was published


def test_an_inline_plan_without_reduce_records_its_outcomes(
    idle_app: Celery, registry: SkillRegistry
) -> None:
    settings = idle_app.victor.settings  # type: ignore[attr-defined]
    goal = GoalSpec(steps=[StepSpec(skill="noop", items=[{"value": "a"}])])
    handle = dispatch_plan(idle_app, plan_goal(goal, settings, registry))
    job = wait_job(handle, timeout_s=5)
    assert job.status == "succeeded"
    results = idle_app.victor.ledger.results(job.job_id)  # type: ignore[attr-defined]
    assert list(results.values()) == [[{"ok": True, "value": "a"}]]


def test_max_fan_out_is_a_plan_error(registry: SkillRegistry, tree: Path) -> None:
    goal = GoalSpec(
        name="too big",
        steps=[StepSpec(skill="noop", items=[{"value": i} for i in range(11)])],
    )
    with pytest.raises(PlanError) as caught:
        plan_goal(goal, settings_for(tree, max_fan_out=10), registry)
    message = str(caught.value)
    assert "'too big'" in message
    assert "VICTOR_MAX_FAN_OUT" in message
    plan = plan_goal(goal, settings_for(tree, max_fan_out=11), registry)
    assert plan.item_count == 11


def test_max_fan_out_counts_every_step(registry: SkillRegistry, tree: Path) -> None:
    goal = GoalSpec(
        steps=[
            StepSpec(skill="noop", items=[{"value": i} for i in range(6)]),
            StepSpec(skill="noop", items=[{"value": i} for i in range(6)]),
        ]
    )
    with pytest.raises(PlanError):
        plan_goal(goal, settings_for(tree, max_fan_out=10), registry)


def test_unknown_skill_in_a_step_lists_known_skills(registry: SkillRegistry, tree: Path) -> None:
    goal = GoalSpec(steps=[StepSpec(skill="anlyze_code", items=[{}])])
    with pytest.raises(UnknownSkillError, match=r"'anlyze_code'.*analyze_code"):
        plan_goal(goal, settings_for(tree), registry)


def test_unknown_reduce_skill_is_refused(registry: SkillRegistry, tree: Path) -> None:
    goal = GoalSpec(steps=[StepSpec(skill="noop", items=[{}])], reduce=ReduceSpec(skill="sum"))
    with pytest.raises(UnknownSkillError, match="'sum'"):
        plan_goal(goal, settings_for(tree), registry)


def test_analyze_goal_is_analyze_code_then_report(tree: Path, registry: SkillRegistry) -> None:
    goal = analyze_goal(str(tree), top=7)
    plan = plan_goal(goal, settings_for(tree), registry)
    assert [step.skill for step in plan.steps] == ["analyze_code"]
    assert step_paths(plan.steps[0].items, tree) == EXPECTED_FILES
    assert plan.reduce is not None
    assert (plan.reduce.skill, plan.reduce.params) == ("report", {"top": 7})


@pytest.mark.parametrize(
    "text",
    [
        "analyze the code in pkg",
        "measure complexity and metrics of pkg/core.py",
        "analyse functions under ./pkg",
    ],
)
def test_goal_text_about_analysis_picks_analyze_code(
    text: str, tree: Path, registry: SkillRegistry
) -> None:
    goal = goal_from_text(text, settings_for(tree), registry)
    [step] = goal.steps
    assert step.skill == "analyze_code"
    assert step.paths and all(path.lstrip("./").startswith("pkg") for path in step.paths)
    assert goal.reduce is not None and goal.reduce.skill == "report"


def test_goal_text_about_searching_picks_search_code(tree: Path, registry: SkillRegistry) -> None:
    goal = goal_from_text("find 'TODO' in pkg/core.py", settings_for(tree), registry)
    [step] = goal.steps
    assert (step.skill, step.paths, step.params) == (
        "search_code",
        ["pkg/core.py"],
        {"pattern": "TODO"},
    )
    assert goal.reduce is None


def test_goal_text_without_a_path_uses_the_root(tree: Path, registry: SkillRegistry) -> None:
    goal = goal_from_text("analyze code complexity", settings_for(tree), registry)
    assert goal.steps[0].paths == ["."]


def test_search_goal_without_a_quoted_pattern_is_refused(
    tree: Path, registry: SkillRegistry
) -> None:
    with pytest.raises(PlanError, match="quote the pattern"):
        goal_from_text("search for TODO in pkg", settings_for(tree), registry)


def test_goal_text_matching_no_skill_names_the_skills(tree: Path, registry: SkillRegistry) -> None:
    with pytest.raises(PlanError, match=r"no skill matches.*analyze_code"):
        goal_from_text("make coffee", settings_for(tree), registry)


def test_goal_text_plans_end_to_end(tree: Path, registry: SkillRegistry) -> None:
    settings = settings_for(tree)
    plan = plan_goal(goal_from_text("analyze pkg", settings, registry), settings, registry)
    assert step_paths(plan.steps[0].items, tree) == [
        "pkg/__init__.py",
        "pkg/core.py",
        "pkg/util.js",
        "pkg/deep/x.py",
    ]


def test_sequential_strategy_runs_each_step_after_the_previous_one(
    registry: SkillRegistry, tree: Path
) -> None:
    app = create_app(settings_for(tree))
    try:
        goal = GoalSpec(
            strategy="sequential",
            chunk_size=2,
            steps=[
                StepSpec(skill="noop", items=[{"value": i} for i in range(3)]),
                StepSpec(skill="sleep", items=[{"ms": 0}]),
            ],
        )
        plan = plan_goal(goal, settings_for(tree), registry)
        assert plan.strategy == "sequential"
        signatures = [
            app.signature(BATCH_TASK, args=(skill, items)) for _, skill, items in plan.chunks()
        ]
        canvas = _canvas(plan, signatures)
        # Celery folds chain(group, group) into a chord whose body is the next step's group:
        # the second step starts only when every task of the first has finished.
        assert isinstance(canvas, chord | chain)
        assert isinstance(canvas, chord)
        assert [task.args[0] for task in canvas.tasks] == ["noop", "noop"]
        assert isinstance(canvas.body, group)
        assert [task.args[0] for task in canvas.body.tasks] == ["sleep"]
        parallel = _canvas(plan.model_copy(update={"strategy": "parallel"}), signatures)
        assert isinstance(parallel, group) and len(parallel.tasks) == 3
    finally:
        app.close()


def test_goal_spec_refuses_unknown_fields() -> None:
    with pytest.raises(ValueError, match="stepz"):
        GoalSpec.model_validate({"steps": [{"skill": "noop"}], "stepz": []})


def test_patterns_match_as_fnmatch_does(tmp_path: Path) -> None:
    root = tmp_path / "src"
    for name in ["a1.py", "b2.py", "c3.py", "ab.txt", "x.min.js", "x.js", "[odd].py", "README"]:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("x\n")
    settings = settings_for(root)
    found = relative(
        list(expand_paths(str(root), ["[ab]?.py", "*.js"], ["*.min.*"], settings)), root
    )
    assert found == ["a1.py", "b2.py", "x.js"]
    assert relative(list(expand_paths(str(root), ["[[]odd].py", "READ*"], [], settings)), root) == [
        "README",
        "[odd].py",
    ]


def test_a_ledgered_batch_task_returns_a_receipt_and_the_ledger_keeps_the_outcomes(
    idle_app: Celery, tree: Path
) -> None:
    from orchestrator.core.dispatcher import record_job

    runtime = idle_app.victor  # type: ignore[attr-defined]
    items: list[dict[str, Any]] = [{"path": str(tree / "main.py")}, {"path": str(tree / "gone.py")}]
    plan = plan_goal(
        GoalSpec(steps=[StepSpec(skill="analyze_code", items=items)]),
        runtime.settings,
        runtime.registry,
    )
    job_id, task_ids, _ = record_job(idle_app, plan, tenant="default")
    receipt = (
        idle_app.tasks[BATCH_TASK]
        .apply(args=("analyze_code", items), kwargs={"job_id": job_id}, task_id=task_ids[0])
        .get()
    )
    # A chord would encode the return value again; the outcomes are the ledger's to keep.
    assert receipt == {"job_id": job_id, "items": 2, "failed": 1}
    recorded = runtime.ledger.get_result(job_id, task_ids[0])
    assert [outcome["ok"] for outcome in recorded] == [True, False]
    assert recorded[0]["value"]["path"].endswith("main.py")
    assert "does not exist" in recorded[1]["error"]

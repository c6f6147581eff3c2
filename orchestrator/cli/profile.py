"""``victor profile skill NAME`` / ``victor profile job GOAL``: cProfile or tracemalloc, top rows.

A job is profiled by running its plan in this process (every chunk through the same executor a
worker uses, then the reduce step), so the profile sees the skills' own code.
"""

from __future__ import annotations

import cProfile
import json
import pstats
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import typer
from rich.table import Table

from orchestrator.cli.support import console, out, settings_or_exit
from workers.core.settings import Settings
from workers.runtime import runtime_of

profile_app = typer.Typer(
    name="profile",
    help="Profile one skill call or a whole job (CPU or memory).",
    no_args_is_help=True,
)

Mode = Literal["cpu", "memory"]


def profile_call(
    function: Callable[[], Any], mode: Mode = "cpu", top: int = 20
) -> tuple[Any, list[dict[str, Any]]]:
    """Run ``function`` under cProfile (cumulative time) or tracemalloc (bytes allocated and
    still held, by line); return its result and the ``top`` rows."""
    if mode == "memory":
        started = not tracemalloc.is_tracing()
        if started:
            tracemalloc.start(10)
        before = tracemalloc.take_snapshot()
        try:
            result = function()
            after = tracemalloc.take_snapshot()
        finally:
            if started:
                tracemalloc.stop()
        rows = [
            {
                "where": str(stat.traceback[0]) if stat.traceback else "?",
                "size_kb": round(stat.size_diff / 1024, 1),
                "count": stat.count_diff,
            }
            for stat in after.compare_to(before, "lineno")[:top]
        ]
        return result, rows
    profiler = cProfile.Profile()
    result = profiler.runcall(function)
    stats = pstats.Stats(profiler)
    entries = sorted(stats.stats.items(), key=lambda kv: kv[1][3], reverse=True)  # type: ignore[attr-defined]
    rows = [
        {
            "function": f"{Path(file).name}:{line}({name})",
            "calls": calls,
            "total_s": round(total, 6),
            "cumulative_s": round(cumulative, 6),
        }
        for (file, line, name), (_, calls, total, cumulative, _) in entries[:top]
    ]
    return result, rows


_settings = settings_or_exit


def _print(rows: list[dict[str, Any]], title: str, as_json: bool) -> None:
    if as_json:
        print(json.dumps(rows))  # noqa: T201 - machine-readable output
        return
    table = Table(title=title)
    for column in rows[0] if rows else ["(nothing recorded)"]:
        table.add_column(column, justify="left" if column in ("function", "where") else "right")
    for row in rows:
        table.add_row(*(str(value) for value in row.values()))
    out.print(table)


def run_job_inline(goal: Any, settings: Settings) -> Any:
    """Plan ``goal`` and run every chunk, then the reduce step, in this process."""
    from orchestrator.core.planner import plan_goal
    from workers.celery_app.factory import create_app

    runtime = runtime_of(create_app(settings))
    plan = plan_goal(goal, settings, runtime.registry)
    results = [runtime.executor.run_batch(skill, items) for _, skill, items in plan.chunks()]
    if plan.reduce is not None:
        return runtime.executor.run(plan.reduce.skill, {**plan.reduce.params, "results": results})
    return results


@profile_app.command("skill")
def profile_skill(
    name: str = typer.Argument(..., help="Skill name (victor skills lists them)."),
    params: str = typer.Option("{}", "--params", help="The skill's input as JSON."),
    mode: str = typer.Option("cpu", "--mode", help="cpu (cProfile) or memory (tracemalloc)."),
    top: int = typer.Option(20, "--top", min=1, max=1000),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Profile one call of a skill, run here through the worker's executor."""
    from workers.celery_app.factory import create_app

    if mode not in ("cpu", "memory"):
        console.print(f"[red]error:[/red] --mode {mode!r}: use cpu or memory")
        raise typer.Exit(2)
    try:
        values = json.loads(params)
    except ValueError as exc:
        console.print(f"[red]error:[/red] --params is not JSON ({exc}); e.g. '{{\"ms\": 10}}'")
        raise typer.Exit(2) from exc
    settings = _settings()
    executor = runtime_of(create_app(settings)).executor
    _, rows = profile_call(lambda: executor.run(name, values), mode, top)  # type: ignore[arg-type]
    _print(rows, f"profile ({mode}) of skill {name}", as_json)


@profile_app.command("job")
def profile_job(
    goal_file: Path = typer.Argument(..., help="Goal spec, .json or .yaml."),
    mode: str = typer.Option("cpu", "--mode", help="cpu (cProfile) or memory (tracemalloc)."),
    top: int = typer.Option(20, "--top", min=1, max=1000),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Profile a whole job, its plan run in this process."""
    from orchestrator.core.goals import load_goal_file

    if mode not in ("cpu", "memory"):
        console.print(f"[red]error:[/red] --mode {mode!r}: use cpu or memory")
        raise typer.Exit(2)
    settings = _settings()
    goal = load_goal_file(goal_file)
    _, rows = profile_call(lambda: run_job_inline(goal, settings), mode, top)  # type: ignore[arg-type]
    _print(rows, f"profile ({mode}) of job {goal_file}", as_json)


def register(app: typer.Typer) -> None:
    """Add this group's commands to ``app``."""
    app.add_typer(profile_app, name="profile")

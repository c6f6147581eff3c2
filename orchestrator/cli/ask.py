"""``victor ask "..."``: plan a goal sentence, show the plan, confirm, run it as victor run does."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import typer

from orchestrator.cli.support import EXIT_USAGE, console, out, settings_or_exit

if TYPE_CHECKING:
    from rich.console import Console

    from orchestrator.core.plan import Plan
    from orchestrator.core.text_planning import TextPlan

NO_TERMINAL = (
    "victor ask shows the plan and asks before it runs, and there is no terminal to ask on; "
    "pass --yes to run it, or --plan-only to show the plan only"
)


def ask(
    goal: str = typer.Argument(..., help='The goal in plain words, such as "analyze src".'),
    yes: bool = typer.Option(False, "--yes", "-y", help="Run the plan without asking."),
    plan_only: bool = typer.Option(False, "--plan-only", help="Show the plan; run nothing."),
    as_json: bool = typer.Option(
        False, "--json", help="Print the plan and the finished job as one JSON document."
    ),
) -> None:
    """Plan a goal sentence, show the plan, and run it once you confirm (--yes to skip).

    Skills are ranked by select_tools; with enable_hierarchical_planning the goal first splits
    into sub-goals (through the provider when one is set, else by rules: "then", ";", numbered
    lists). Exit codes as victor run: 0 succeeded, 3 partial, 1 failed or not confirmed, 2 a
    goal that cannot be planned or no terminal to confirm on (without --yes), 4 unknown.
    """
    from orchestrator.cli.analyze import run_goal_cli
    from orchestrator.core.planner import plan_goal
    from orchestrator.core.text_planning import plan_text
    from workers.skills import load_registry

    settings = settings_or_exit()
    registry = load_registry()
    planned = plan_text(goal, settings, registry)
    plan = plan_goal(planned.goal, settings, registry)  # checks inputs and paths; counts items
    shown = plan_as_dict(planned, plan)
    print_plan(shown, console if as_json else out)
    if plan_only:
        if as_json:
            out.print_json(json.dumps({"plan": shown}))
        return
    if not yes:
        if not sys.stdin.isatty():
            console.print(f"[red]error:[/red] {NO_TERMINAL}")
            raise typer.Exit(EXIT_USAGE)
        if not typer.confirm("Run this plan?", default=False, err=True):
            console.print("not run")
            raise typer.Exit(1)
    job = run_goal_cli(planned.goal, settings, quiet=as_json, with_steps=True)
    if as_json:
        out.print_json(json.dumps({"plan": shown, "job": job}, default=str))
    else:
        print_job(job)
    from orchestrator.cli.outcome import exit_with_status, print_outcome

    if not as_json and job["status"] != "succeeded":
        print_outcome(job)
    exit_with_status(job)


def plan_as_dict(planned: TextPlan, plan: Plan) -> dict[str, Any]:
    """The plan as shown: sub-goals with their skills, steps with item counts, the reduce."""
    goal = planned.goal
    steps = iter(zip(goal.steps, plan.steps, strict=True))
    sub_goals = []
    for sub_goal in planned.sub_goals:
        row: dict[str, Any] = {"text": sub_goal.text, "skill": sub_goal.skill}
        if sub_goal.is_reduce:
            row["reduce"] = True
        else:
            spec, expanded = next(steps)
            row.update(items=len(expanded.items), paths=spec.paths, params=spec.params)
            if spec.items:
                row["inputs"] = spec.items
        row["ranking"] = sub_goal.ranking[:3]
        sub_goals.append(row)
    return {
        "goal": goal.name,
        "split_by": planned.split_by,
        "strategy": goal.strategy,
        "sub_goals": sub_goals,
        "items": plan.item_count,
        "reduce": goal.reduce.skill if goal.reduce else None,
        "notes": planned.notes,
        "spec": goal.model_dump(),
    }


def print_plan(shown: dict[str, Any], where: Console) -> None:
    """The plan in a few lines: one per step (skill, items, what it works on), the reduce."""
    where.print(f"plan for: {shown['goal']}", highlight=False, markup=False)
    if shown["split_by"] != "none":
        where.print(f"  split into sub-goals by {shown['split_by']}", highlight=False)
    number = 0
    for row in shown["sub_goals"]:
        if row.get("reduce"):
            continue
        number += 1
        detail = ", ".join(
            f"{key} {value}"
            for key, value in (
                ("paths", " ".join(row["paths"])),
                ("params", json.dumps(row["params"]) if row["params"] else ""),
                ("inputs", _short(json.dumps(row.get("inputs", [])))),
            )
            if value and value != "[]"
        )
        where.print(
            f"  step {number}: {row['skill']} ({_count(row['items'], 'item')})  <- {row['text']!r}"
            + (f"; {detail}" if detail else ""),
            highlight=False,
            markup=False,
        )
    where.print(f"  reduce: {shown['reduce'] or 'none'}", highlight=False)
    where.print(
        f"  {_count(shown['items'], 'item')} in {_count(number, 'step')}, run {shown['strategy']}",
        highlight=False,
    )
    for note in shown["notes"]:
        where.print(f"  note: {note}", highlight=False, markup=False)


def print_job(job: dict[str, Any]) -> None:
    """Each step's counts and first results, then the reduce's result."""
    out.print(f"job {job['job_id']} {job['status']}", highlight=False)
    for step in job.get("steps") or []:
        out.print(
            f"  step {step['step']} {step['skill']}: {step['succeeded']} of {step['items']} "
            "items succeeded",
            highlight=False,
        )
        if job.get("result") is None and step["first_results"]:
            out.print_json(json.dumps(step["first_results"], default=str))
    if job.get("result") is not None:
        out.print_json(json.dumps(job["result"], default=str))


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def register(app: typer.Typer) -> None:
    """Add ``ask`` to ``app``."""
    app.command()(ask)

"""``victor analyze`` and ``victor run``: plan a goal, run it, show the outcome."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from orchestrator.cli.support import console, job_progress, out, settings_or_exit
from workers.core.settings import Settings

_settings = settings_or_exit


def run_goal_cli(goal: Any, settings: Settings, *, quiet: bool) -> dict[str, Any]:
    """Plan, dispatch and follow one goal with a progress bar; return the finished job."""
    from orchestrator.core.dispatcher import dispatch_plan, wait_job
    from orchestrator.core.planner import plan_goal
    from orchestrator.core.session import Session
    from workers.runtime import runtime_of

    with Session(settings) as session:
        plan = plan_goal(goal, settings, runtime_of(session.app).registry)
        with job_progress(quiet) as progress:
            bar = progress.add_task(
                f"{plan.item_count} items in {len(plan.chunks())} tasks "
                f"({session.settings.mode.value})",
                total=len(plan.chunks()) or 1,
            )
            handle = dispatch_plan(session.app, plan)

            def on_progress(done: int, total: int) -> None:
                progress.update(bar, completed=done, total=total or 1)

            job = wait_job(handle, on_progress=on_progress)
        return job.as_dict()


def analyze(
    path: Path = typer.Argument(Path("."), help="File or directory to analyze."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    top: int = typer.Option(10, "--top", min=1, max=1000, help="Rows in each top list."),
) -> None:
    """Analyze a code base: lines, functions, complexity hot spots, TODOs."""
    from orchestrator.core.planner import analyze_goal

    resolved = path.resolve()
    settings = _settings()
    if not any(resolved.is_relative_to(root.resolve()) for root in settings.allowed_roots):
        settings = _settings(allowed_roots=[*settings.allowed_roots, resolved])
    job = run_goal_cli(analyze_goal(str(resolved), top=top), settings, quiet=as_json)
    if job["status"] != "succeeded":
        console.print(f"[red]job {job['job_id']} {job['status']}:[/red] {job['error']}")
        raise typer.Exit(1)
    if as_json:
        out.print_json(json.dumps(job["result"]))
    else:
        print_report(job["result"], str(path), base=resolved)


def print_report(report: dict[str, Any], title: str, base: Path | None = None) -> None:
    """Render the analyze report as tables; paths are shown relative to ``base``."""

    def shown(path: str) -> str:
        if base is not None and Path(path).is_relative_to(base):
            return str(Path(path).relative_to(base)) or "."
        return path

    totals = report.get("totals", {})
    table = Table(title=f"victor analyze {title}", show_header=True)
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key in (
        "files",
        "lines",
        "code",
        "comment",
        "docstring",
        "blank",
        "functions",
        "classes",
        "todos",
    ):
        table.add_row("TODO/FIXME" if key == "todos" else key, f"{totals.get(key, 0):,}")
    table.add_row("parse errors", str(report.get("parse_errors", 0)))
    table.add_row("failed items", str(report.get("error_count", 0)))
    out.print(table)
    languages = Table(title="languages")
    languages.add_column("language")
    languages.add_column("files", justify="right")
    for name, count in report.get("languages", {}).items():
        languages.add_row(name, str(count))
    out.print(languages)
    largest = Table(title="largest files (code lines)")
    largest.add_column("file")
    largest.add_column("code", justify="right")
    for row in report.get("largest_files", []):
        largest.add_row(shown(row["path"]), str(row["code"]))
    out.print(largest)
    hot = Table(title="most complex functions")
    hot.add_column("function")
    hot.add_column("file:line")
    hot.add_column("complexity", justify="right")
    for row in report.get("most_complex", []):
        hot.add_row(row["function"], f"{shown(row['path'])}:{row['line']}", str(row["complexity"]))
    out.print(hot)


def run_command(
    goal_file: Path = typer.Argument(..., help="Goal spec, .json or .yaml."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Run a goal spec file and print the job's result."""
    from orchestrator.core.goals import load_goal_file

    settings = _settings()
    goal = load_goal_file(goal_file)
    job = run_goal_cli(goal, settings, quiet=as_json)
    out.print_json(
        json.dumps(
            job
            if as_json
            else {
                "job_id": job["job_id"],
                "status": job["status"],
                "done_tasks": job["done_tasks"],
                "total_tasks": job["total_tasks"],
                "result": job["result"],
                "error": job["error"],
            }
        )
    )
    if job["status"] != "succeeded":
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``analyze`` and ``run`` to ``app``."""
    app.command()(analyze)
    app.command("run")(run_command)

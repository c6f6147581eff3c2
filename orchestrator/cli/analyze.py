"""``victor analyze`` and ``victor run``: plan a goal, run it, show the outcome."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from orchestrator.cli.outcome import exit_with_status, print_outcome
from orchestrator.cli.roots import check_served_roots
from orchestrator.cli.support import console, job_progress, out, settings_or_exit
from workers.core.settings import Mode, Settings

_settings = settings_or_exit


def run_goal_cli(
    goal: Any,
    settings: Settings,
    *,
    quiet: bool,
    attach: str | None = None,
    with_steps: bool = False,
    outcomes_file: Path | None = None,
) -> dict[str, Any]:
    """Plan, dispatch and follow one goal (or attach to a running job) with a progress bar.

    The job id is printed as soon as the job is accepted; a Redis outage while waiting is
    ridden out with a message. Returns the finished job, with its failures when items failed,
    a summary per step with ``with_steps``, and every item's outcome written to
    ``outcomes_file`` as JSON lines.
    """
    from orchestrator.core.dispatcher import attach_job, dispatch_plan, wait_job
    from orchestrator.core.outcomes import job_failures
    from orchestrator.core.planner import plan_goal
    from orchestrator.core.session import Session
    from orchestrator.core.steps import job_outcomes, summarize_steps
    from workers.runtime import runtime_of

    with Session(settings) as session:
        runtime = runtime_of(session.app)
        if attach:
            handle = attach_job(session.app, attach)
        else:
            plan = plan_goal(goal, settings, runtime.registry)
            if settings.mode is Mode.DISTRIBUTED:
                check_served_roots(plan, settings)
            handle = dispatch_plan(session.app, plan)
            console.print(
                f"job {handle.job_id}: {plan.item_count} items in {len(handle.task_ids)} tasks "
                f"({settings.mode.value})",
                highlight=False,
            )
        with job_progress(quiet) as progress:
            bar = progress.add_task(f"job {handle.job_id[:8]}", total=len(handle.task_ids) or 1)

            def on_progress(done: int, total: int) -> None:
                progress.update(bar, completed=done, total=total or 1)

            def on_outage(reason: str) -> None:
                console.print(
                    f"[yellow]Redis unreachable[/yellow] ({reason}); job {handle.job_id} keeps "
                    "running on the fleet; retrying",
                    highlight=False,
                )

            job = wait_job(handle, on_progress=on_progress, on_outage=on_outage)
        shown = job.as_dict()
        if job.failed_items:
            shown["failures"] = job_failures(runtime.ledger, job.job_id)
        if with_steps:
            shown["steps"] = summarize_steps(job_outcomes(runtime.ledger, job.job_id))
        if outcomes_file is not None:
            write_outcomes(outcomes_file, job_outcomes(runtime.ledger, job.job_id))
        return shown


def write_outcomes(path: Path, outcomes: Iterator[dict[str, Any]]) -> None:
    """One JSON line per item: step, skill, index, item, ok, then result or error and type."""
    try:
        with path.open("w", encoding="utf-8") as handle:
            for line in outcomes:
                handle.write(json.dumps(line, default=str) + "\n")
    except OSError as exc:
        raise typer.BadParameter(
            f"cannot write outcomes to {str(path)!r}: {exc.strerror}; pass a writable --out"
        ) from exc


def analyze(
    path: Path = typer.Argument(Path("."), help="File or directory to analyze."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    top: int = typer.Option(10, "--top", min=1, max=1000, help="Rows in each top list."),
) -> None:
    """Analyze a code base: lines, functions, complexity hot spots, TODOs.

    Exit codes: 0 every file analyzed, 3 some failed (listed), 1 the job failed.
    """
    from orchestrator.core.planner import analyze_goal

    resolved = path.resolve()
    settings = _settings()
    if not any(resolved.is_relative_to(root.resolve()) for root in settings.allowed_roots):
        # The path named here may be listed by this process; on a fleet the roots the workers
        # serve decide whether it runs (checked before dispatch, never widened from here).
        settings = _settings(allowed_roots=[*settings.allowed_roots, resolved])
    job = run_goal_cli(analyze_goal(str(resolved), top=top), settings, quiet=as_json)
    if as_json:
        out.print_json(json.dumps(job if job["status"] != "succeeded" else job["result"]))
    elif job["result"] is not None:
        print_report(job["result"], str(path), base=resolved)
    if not as_json and job["status"] != "succeeded":
        print_outcome(job)
    exit_with_status(job)


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
    table.add_row("binary files (skipped)", str(report.get("skipped_count", 0)))
    table.add_row("truncated files", str(report.get("truncated_count", 0)))
    out.print(table)
    print_skipped(report, shown)
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


def print_skipped(report: dict[str, Any], shown: Callable[[str], str]) -> None:
    """Name the files not analyzed (binary) or analyzed only in part (over max_file_bytes)."""
    skipped = report.get("skipped_files", [])
    truncated = report.get("truncated_files", [])
    if not skipped and not truncated:
        return
    table = Table(title="files skipped or cut (max_file_bytes)")
    table.add_column("file")
    table.add_column("why")
    for row in skipped:
        table.add_row(shown(row["path"]), f"skipped: {row['reason']}")
    for row in truncated:
        table.add_row(
            shown(row["path"]),
            f"truncated: {row['analyzed_bytes']:,} of {row['size_bytes']:,} bytes analyzed",
        )
    hidden = (
        report.get("skipped_count", 0)
        + report.get("truncated_count", 0)
        - len(skipped)
        - len(truncated)
    )
    if hidden > 0:
        table.add_row(f"... and {hidden} more", "")
    out.print(table)


def run_command(
    goal_file: Path | None = typer.Argument(None, help="Goal spec, .json or .yaml."),
    as_json: bool = typer.Option(False, "--json", help="Print the whole job as JSON."),
    attach: str | None = typer.Option(
        None, "--attach", help="Follow a job already running on the fleet, by its id."
    ),
    outcomes_file: Path | None = typer.Option(
        None, "--out", help="Write every item's outcome to this file as JSON lines."
    ),
) -> None:
    """Run a goal spec file and print the job's outcome and a summary of each step.

    Exit codes: 0 succeeded, 3 partial (some items failed), 1 failed, 2 a bad goal or setting,
    4 the outcome is unknown (Redis unreachable; follow it again with --attach ID).
    """
    from orchestrator.core.goals import load_goal_file

    settings = _settings()
    if (goal_file is None) == (attach is None):
        raise typer.BadParameter("give a goal file, or --attach JOB_ID to follow a running job")
    if outcomes_file is not None and not outcomes_file.resolve().parent.is_dir():
        raise typer.BadParameter(
            f"--out {str(outcomes_file)!r}: its directory does not exist; create it first"
        )
    goal = load_goal_file(goal_file) if goal_file is not None else None
    job = run_goal_cli(
        goal, settings, quiet=as_json, attach=attach, with_steps=True, outcomes_file=outcomes_file
    )
    keys = ("job_id", "status", "done_tasks", "total_tasks", "items", "failed_items", "steps")
    shown = job if as_json else {key: job.get(key) for key in (*keys, "result", "error")}
    out.print_json(json.dumps(shown))
    if not as_json and job["status"] != "succeeded":
        print_outcome(job)
    exit_with_status(job)


def register(app: typer.Typer) -> None:
    """Add ``analyze`` and ``run`` to ``app``."""
    app.command()(analyze)
    app.command("run")(run_command)

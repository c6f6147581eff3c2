"""``victor analyze`` and ``victor run``: plan a goal, run it, show the outcome."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from orchestrator.cli.outcome import exit_with_status, print_outcome
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
                from orchestrator.cli.roots import check_served_roots  # imports redis

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


REPORT_FORMATS = ("table", "json", "sarif")


def analyze(
    path: Path = typer.Argument(Path("."), help="File or directory to analyze."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON (--format json)."),
    report_format: str = typer.Option(
        "table", "--format", help="table, json (schema_version'd) or sarif (SARIF 2.1.0)."
    ),
    top: int = typer.Option(10, "--top", min=1, max=1000, help="Rows in each top list."),
) -> None:
    """Analyze a code base: lines, functions, complexity hot spots, TODOs, per language.

    Exit codes: 0 every file analyzed, 3 some failed (listed), 1 the job failed.
    """
    from orchestrator.core.planner import analyze_goal

    if report_format not in REPORT_FORMATS:
        raise typer.BadParameter(
            f"--format {report_format!r}: use one of {', '.join(REPORT_FORMATS)}"
        )
    if as_json:
        report_format = "json"

    resolved = path.resolve()
    settings = _settings()
    if not any(resolved.is_relative_to(root.resolve()) for root in settings.allowed_roots):
        # The path named here may be listed by this process; on a fleet the roots the workers
        # serve decide whether it runs (checked before dispatch, never widened from here).
        settings = _settings(allowed_roots=[*settings.allowed_roots, resolved])
    quiet = report_format != "table"
    goal = analyze_goal(str(resolved), top=top)
    job = None
    if settings.mode is Mode.EMBEDDED:
        from orchestrator.cli.cached_goal import serve_from_cache

        job = serve_from_cache(goal, settings)
        if job is not None and not quiet:
            console.print(
                f"{job['items']} files, every one unchanged since it was analyzed: served from "
                "the cache (no worker started)",
                highlight=False,
            )
    if job is None:
        job = run_goal_cli(goal, settings, quiet=quiet)
    if report_format == "json":
        out.print_json(json.dumps(job if job["status"] != "succeeded" else job["result"]))
    elif report_format == "sarif":
        from orchestrator.cli.sarif import sarif_log

        out.print_json(json.dumps(sarif_log(job["result"] or {}, base=resolved)))
    elif job["result"] is not None:
        print_report(job["result"], str(path), base=resolved)
    if not quiet and job["status"] != "succeeded":
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
    print_languages(report)
    print_duplicates(report, shown)
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
    hot.add_column("language")
    for row in report.get("most_complex", []):
        hot.add_row(
            row["function"],
            f"{shown(row['path'])}:{row['line']}",
            str(row["complexity"]),
            str(row.get("language", "")),
        )
    out.print(hot)


def print_languages(report: dict[str, Any]) -> None:
    """One row per language; languages without a parser are marked as only counted."""
    by_language = report.get("by_language")
    table = Table(title="languages")
    for column in ("language", "files", "code", "comment", "blank", "functions"):
        table.add_column(column, justify="left" if column == "language" else "right")
    table.add_column("avg CCN", justify="right")
    table.add_column("worst CCN", justify="right")
    if not by_language:  # a report from before schema 2
        by_language = {name: {"files": count} for name, count in report["languages"].items()}
    for name, row in by_language.items():
        counted = row.get("counted_only")
        table.add_row(
            f"{name} (lines only)" if counted else name,
            *(f"{row.get(key, 0):,}" for key in ("files", "code", "comment", "blank")),
            "-" if counted else f"{row.get('functions', 0):,}",
            "-" if row.get("average_complexity") is None else str(row["average_complexity"]),
            "-" if row.get("worst_complexity") is None else str(row["worst_complexity"]),
        )
    out.print(table)
    if report.get("counted_only"):
        out.print(
            "only counted (no parser for these languages): " + ", ".join(report["counted_only"]),
            highlight=False,
        )


def print_duplicates(report: dict[str, Any], shown: Callable[[str], str]) -> None:
    """Files with identical content (same SHA-256), and how many generated files were seen."""
    if report.get("generated_count"):
        out.print(f"generated files (marked in their header): {report['generated_count']}")
    if not report.get("duplicate_files"):
        return
    table = Table(title=f"duplicate files ({report.get('duplicate_count', 0)} extra copies)")
    table.add_column("copies", justify="right")
    table.add_column("files")
    for row in report["duplicate_files"]:
        table.add_row(str(len(row["paths"])), ", ".join(shown(path) for path in row["paths"]))
    out.print(table)


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
    if attach is not None and not attach.strip():
        # An empty id (a shell variable that was never set) would fall through to planning
        # a goal that is not there (AttributeError).
        raise typer.BadParameter("--attach needs a job id (the one `victor run` printed first)")
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

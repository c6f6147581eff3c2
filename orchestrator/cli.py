"""The ``victor`` command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from orchestrator.cli_support import console, job_progress, out, settings_or_exit
from workers.errors import VictorError
from workers.settings import Settings

app = typer.Typer(
    name="victor",
    help="victor-fleet: a Celery worker fleet with lazy skills.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
_settings = settings_or_exit


def _fail(exc: Exception) -> typer.Exit:
    console.print(f"[red]error:[/red] {exc}")
    return typer.Exit(1)


def run_goal_cli(goal: Any, settings: Settings, *, quiet: bool) -> dict[str, Any]:
    """Plan, dispatch and follow one goal with a progress bar; return the finished job."""
    from orchestrator.dispatcher import dispatch_plan, wait_job
    from orchestrator.planner import plan_goal
    from orchestrator.session import Session
    from workers.factory import runtime_of

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


@app.command()
def analyze(
    path: Path = typer.Argument(Path("."), help="File or directory to analyze."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    top: int = typer.Option(10, "--top", min=1, max=1000, help="Rows in each top list."),
) -> None:
    """Analyze a code base: lines, functions, complexity hot spots, TODOs."""
    from orchestrator.planner import analyze_goal

    resolved = path.resolve()
    settings = _settings()
    if not any(resolved.is_relative_to(root.resolve()) for root in settings.allowed_roots):
        settings = _settings(allowed_roots=[*settings.allowed_roots, resolved])
    try:
        job = run_goal_cli(analyze_goal(str(resolved), top=top), settings, quiet=as_json)
    except VictorError as exc:
        raise _fail(exc) from exc
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


@app.command("run")
def run_command(
    goal_file: Path = typer.Argument(..., help="Goal spec, .json or .yaml."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Run a goal spec file and print the job's result."""
    from orchestrator.goals import load_goal_file

    settings = _settings()
    try:
        goal = load_goal_file(goal_file)
        job = run_goal_cli(goal, settings, quiet=as_json)
    except VictorError as exc:
        raise _fail(exc) from exc
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


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def worker(
    ctx: typer.Context,
    concurrency: int = typer.Option(None, "--concurrency", "-c", min=1, max=256),
    pool: str = typer.Option("prefork", "--pool", "-P", help="prefork, threads or solo."),
    hostname: str = typer.Option(None, "--hostname", "-n"),
    loglevel: str = typer.Option("WARNING", "--loglevel", "-l"),
) -> None:
    """Run a worker on the configured Redis (a thin wrapper over celery -A workers worker)."""
    from workers.factory import DEFAULT_QUEUE, create_app

    settings = _settings()
    if settings.mode.value != "distributed":
        console.print(
            "[red]error:[/red] victor worker needs a broker; set VICTOR_REDIS_URL "
            "(for example redis://127.0.0.1:6379/0). Without one, victor analyze runs an "
            "embedded worker by itself."
        )
        raise typer.Exit(2)
    celery_app = create_app(settings)
    argv = [
        "worker",
        "-l",
        loglevel,
        "-P",
        pool,
        "-Q",
        DEFAULT_QUEUE,
        "-c",
        str(concurrency or settings.effective_concurrency),
        "--without-mingle",
        "--without-gossip",
    ]
    if hostname:
        argv += ["-n", hostname]
    celery_app.worker_main([*argv, *ctx.args])


@app.command()
def skills(as_json: bool = typer.Option(False, "--json")) -> None:
    """List installed skills (imports no skill implementation)."""
    from workers.skills.registry import load_registry

    registry = load_registry()
    rows = [
        {
            "name": spec.name,
            "task": spec.task_name,
            "description": spec.description,
            "input": spec.input_model.model_json_schema(),
        }
        for spec in registry.specs()
    ]
    if as_json:
        out.print_json(json.dumps(rows))
        return
    table = Table(title="skills")
    table.add_column("name")
    table.add_column("description")
    table.add_column("input fields")
    for spec in registry.specs():
        table.add_row(spec.name, spec.description, ", ".join(spec.input_model.model_fields))
    out.print(table)


@app.command()
def bench(
    group: str = typer.Argument(..., help="A benchmark group, or 'list' to name them."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    size: str = typer.Option("default", "--size", help="tiny (CI), default or full."),
) -> None:
    """Run a benchmark group: ours beside the peer's, in one run, as a ratio."""
    from orchestrator.bench.runner import list_groups, run_group

    if group == "list":
        out.print("\n".join(list_groups()))
        return
    try:
        result = run_group(group, size)
    except VictorError as exc:
        raise _fail(exc) from exc
    if as_json:
        print(json.dumps(result))  # noqa: T201 - machine-readable output
    else:
        out.print_json(json.dumps(result))


from orchestrator import dlq_cli  # noqa: E402 - command groups register after the core ones

dlq_cli.register(app)

from orchestrator import cache_cli  # noqa: E402

cache_cli.register(app)

from orchestrator import beat, metrics_cli, profile_cli  # noqa: E402, F401 - registers them
from orchestrator import client_cli as _client_cli  # noqa: E402, F401 - submit, jobs
from orchestrator import flower_cli as _flower_cli  # noqa: E402, F401 - flower
from orchestrator.api import cli as _api_cli  # noqa: E402, F401 - registers api, api-key


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except VictorError as exc:
        console.print(f"[red]error:[/red] {exc}")
        sys.exit(1)

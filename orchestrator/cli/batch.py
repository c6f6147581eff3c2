"""``victor batch``: run one skill over every item of a file, directory or stream; resume it.

``victor batch INPUT --skill S --out results.jsonl [--report report.html]`` runs; ``victor
batch list``, ``show RUN_ID``, ``cancel RUN_ID`` and ``report RUN_ID --out report.html`` manage
runs (an input file named ``list`` is ``./list``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from orchestrator.cli.support import (
    EXIT_USAGE,
    console,
    exit_code_for_status,
    out,
    settings_or_exit,
)
from workers.core.errors import ConfigError, JobStateError
from workers.core.settings import Mode, Settings

ACTIONS = ("list", "show", "cancel", "report")


def _json_option(text: str | None, name: str) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ConfigError(
            f"{name} is not JSON ({exc}); pass an object: {name} '{{\"k\": 1}}'"
        ) from exc
    if not isinstance(value, dict):
        raise ConfigError(f"{name} must be a JSON object, got {type(value).__name__}")
    return value


def batch(
    target: str | None = typer.Argument(
        None, help="Input (JSONL, CSV, directory or -), or list/show/cancel."
    ),
    run_id: str | None = typer.Argument(None, help="The run id, for show and cancel."),
    skill: str | None = typer.Option(None, "--skill", help="The skill run on every item."),
    params: str | None = typer.Option(None, "--params", help="JSON object merged under each item."),
    reduce: str | None = typer.Option(None, "--reduce", help="A skill run over all results."),
    reduce_params: str | None = typer.Option(None, "--reduce-params", help="JSON for --reduce."),
    out_path: str | None = typer.Option(
        None, "--out", help="Output file (one JSON line an item); for report, the HTML file."
    ),
    report_path: str | None = typer.Option(
        None, "--report", help="Write the run's HTML report here when it ends."
    ),
    errors_path: str | None = typer.Option(
        None, "--errors", help="Errors file (default OUT.errors.jsonl)."
    ),
    id_field: str | None = typer.Option(
        None, "--id-field", help="Item field named in each output line."
    ),
    fmt: str = typer.Option(
        "auto", "--format", help="auto, jsonl or csv (stdin is JSONL unless csv)."
    ),
    include: list[str] = typer.Option([], "--include", help="Directory input: file patterns."),
    exclude: list[str] = typer.Option([], "--exclude", help="Directory input: patterns left out."),
    chunk_size: int | None = typer.Option(None, "--chunk-size", min=1, max=100_000),
    window: int | None = typer.Option(
        None, "--window", min=1, max=10_000, help="Chunks in flight."
    ),
    stale_after_s: float | None = typer.Option(
        None, "--stale-after", min=0.5, help="Resend a chunk unanswered this long (s)."
    ),
    resume: str | None = typer.Option(None, "--resume", help="Resume the run with this id."),
    new: bool = typer.Option(
        False, "--new", help="Start a new run even if this one is unfinished."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan; run nothing."),
    as_json: bool = typer.Option(False, "--json", help="JSON output (list, show, the summary)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Run a skill over every item of an input as a resumable batch run.

    Exit codes: 0 every item succeeded, 3 some failed (see the errors file), 1 the run failed
    or was cancelled, 2 a bad input, argument or setting.
    """
    settings = settings_or_exit()
    if target == "report":
        _write_report(run_id, out_path, settings)
        return
    if target in ACTIONS:
        _manage(target, run_id, settings, as_json)
        return
    if run_id is not None:
        raise typer.BadParameter(f"unexpected argument {run_id!r}; give one INPUT")
    from orchestrator.batch import BatchRequest, input_source
    from orchestrator.batch.chunking import explicit_chunk_size
    from workers.skills.registry import load_registry

    stored = _stored_request(resume, settings) if resume else {}
    skill = skill or stored.get("skill")
    out_path = out_path or stored.get("out")
    if not skill or not out_path:
        raise typer.BadParameter("give --skill and --out (or --resume RUN_ID)")
    registry = load_registry()
    spec = registry.get(skill)
    location = target or stored.get("input")
    if not location:
        raise typer.BadParameter("give an INPUT (a JSONL or CSV file, a directory or -)")
    if Path(location).is_dir():
        resolved = Path(location).resolve()
        if not any(resolved.is_relative_to(r.resolve()) for r in settings.allowed_roots):
            settings = settings_or_exit(allowed_roots=[*settings.allowed_roots, resolved])
    source = input_source(
        location,
        fmt,
        include=include or stored.get("include"),
        exclude=exclude or stored.get("exclude"),
        file_param=spec.file_param,
    )
    request = BatchRequest(
        source=source,
        skill=skill,
        out=out_path,
        params=_json_option(params, "--params") if params else stored.get("params", {}),
        reduce=reduce or stored.get("reduce"),
        reduce_params=_json_option(reduce_params, "--reduce-params")
        or stored.get("reduce_params", {}),
        errors=errors_path,
        id_field=id_field or stored.get("id_field"),
        chunk_size=chunk_size or stored.get("chunk_size") or explicit_chunk_size(settings),
        window=window or max(4, 2 * settings.effective_concurrency),
        stale_after_s=stale_after_s or float(settings.reconciler_stale_after_s),
    )
    from orchestrator.batch.runs import check_request

    check_request(request, registry)
    if dry_run:
        _print_plan(request, settings, registry, as_json)
        return
    _run(
        request,
        settings,
        resume=resume,
        new=new,
        as_json=as_json,
        quiet=quiet,
        report_path=report_path,
    )


def _stored_request(run_id: str, settings: Settings) -> dict[str, Any]:
    from orchestrator.batch import open_store

    store = open_store(settings)
    try:
        record = store.get(run_id)
    finally:
        store.close()
    return {**record.options, "skill": record.skill, "out": record.out}


def _workers_seen(settings: Settings) -> int:
    if settings.mode is Mode.EMBEDDED:
        return 1
    from workers.core.keys import Keys
    from workers.core.redis_client import redis_client, translated

    with translated("counting live workers"):
        client = redis_client(settings.state_url)
        return sum(1 for _ in client.scan_iter(Keys(settings.key_prefix).worker_ready_pattern()))


def _print_plan(request: Any, settings: Settings, registry: Any, as_json: bool) -> None:
    from orchestrator.batch.runs import plan_summary

    plan = plan_summary(request, settings, registry, _workers_seen(settings))
    if as_json:
        out.print_json(json.dumps(plan))
        return
    table = Table(title="victor batch --dry-run", show_header=False)
    for key, value in plan.items():
        table.add_row(key, "unknown" if value is None else str(value))
    out.print(table)


def _run(
    request: Any,
    settings: Settings,
    *,
    resume: str | None,
    new: bool,
    as_json: bool,
    quiet: bool,
    report_path: str | None = None,
) -> None:
    from orchestrator.batch import count_records, drive_run, open_run, open_store
    from orchestrator.core.session import Session

    total = count_records(request.source, settings)
    if total == 0:
        console.print(f"[red]error:[/red] input {request.source.location!r} holds no items")
        raise typer.Exit(EXIT_USAGE)
    from orchestrator.batch.record import RunFinishedError

    store = open_store(settings)
    try:
        try:
            record, resuming = open_run(request, settings, store, resume=resume, new=new)
        except RunFinishedError as exc:
            console.print(str(exc), highlight=False)
            raise typer.Exit(exit_code_for_status(exc.status)) from exc
        verb = "resuming" if resuming else "started"
        durable = "" if store.durable else " (no cache directory: not resumable)"
        console.print(
            f"batch run {record.run_id} {verb}: skill {request.skill} -> {record.out} "
            f"({settings.mode.value}){durable}",
            highlight=False,
        )
        with Session(settings) as session, _progress(quiet or as_json) as progress:
            bar = progress.add_task(
                f"run {record.run_id[:8]}",
                total=total,
                completed=record.done_items,
                rate="",
                failures=f"{record.failed_items} failed",
                hits="",
            )
            started, first = time.monotonic(), record.done_items

            def on_progress(done: int, failed: int, hits: int | None) -> None:
                elapsed = time.monotonic() - started
                rate = f"{(done - first) / elapsed:,.0f} items/s" if elapsed > 0 else ""
                progress.update(
                    bar,
                    completed=done,
                    rate=rate,
                    failures=f"{failed} failed",
                    hits="" if hits is None else f"{hits:,} cache hits",
                )

            tuner = session.tuner  # embedded: its decisions are in this process
            summary = drive_run(
                session.app,
                store,
                record,
                request,
                resuming=resuming,
                on_progress=on_progress,
                tuner_decisions=tuner.journal.decisions if tuner is not None else None,
            )
        if report_path is not None:
            from orchestrator.batch.report import write_report

            summary["report"] = write_report(store.get(record.run_id), report_path)
    finally:
        store.close()
    _print_summary(summary, as_json)
    code = exit_code_for_status(summary["status"])
    if code:
        raise typer.Exit(code)


def _progress(disabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TextColumn("[red]{task.fields[failures]}"),
        TextColumn("[cyan]{task.fields[hits]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        disable=disabled,
        transient=True,
    )


def _print_summary(summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        out.print_json(json.dumps(summary))
        return
    colour = {"succeeded": "green", "partial": "yellow"}.get(summary["status"], "red")
    console.print(
        f"[{colour}]batch run {summary['run_id']} {summary['status']}[/{colour}]: "
        f"{summary['items'] - summary['failed_items']} of {summary['items']} items succeeded, "
        f"{summary['items_per_s'] or 0:,} items/s"
        + (f", {summary['cache_hits']:,} cache hits" if summary.get("cache_hits") else "")
        + f"; output {summary['out']}"
        + (f", failures in {summary['errors']}" if summary["failed_items"] else "")
        + (f"; report {summary['report']}" if summary.get("report") else ""),
        highlight=False,
    )
    if summary.get("result") is not None:
        out.print_json(json.dumps(summary["result"], default=str))


def _write_report(run_id: str | None, path: str | None, settings: Settings) -> None:
    if run_id is None or path is None:
        raise typer.BadParameter("victor batch report needs a RUN_ID and --out report.html")
    from orchestrator.batch import open_store
    from orchestrator.batch.report import write_report

    store = open_store(settings)
    try:
        written = write_report(store.get(run_id), path)
    finally:
        store.close()
    console.print(f"report of batch run {run_id}: {written}", highlight=False)


def _manage(action: str, run_id: str | None, settings: Settings, as_json: bool) -> None:
    from orchestrator.batch import open_store
    from orchestrator.batch.record import ACTIVE, CANCELLED

    store = open_store(settings)
    try:
        if action == "list":
            records = store.runs(settings.tenant)
            if as_json:
                out.print_json(json.dumps([r.as_dict() for r in records], default=str))
                return
            table = Table(title="batch runs")
            for column in ("run", "status", "skill", "items", "failed", "input", "out"):
                table.add_column(column)
            for r in records:
                table.add_row(
                    r.run_id,
                    r.status,
                    r.skill,
                    str(r.done_items),
                    str(r.failed_items),
                    r.input,
                    r.out,
                )
            out.print(table)
            return
        if run_id is None:
            raise typer.BadParameter(
                f"victor batch {action} needs a RUN_ID (see victor batch list)"
            )
        record = store.get(run_id)
        if action == "cancel":
            if record.status not in ACTIVE:
                raise JobStateError(
                    f"batch run {run_id} is {record.status}; only unfinished runs cancel"
                )
            store.update(run_id, status=CANCELLED)
            console.print(f"batch run {run_id} cancelled; its driver stops at its next check")
            return
        out.print_json(json.dumps(record.as_dict(), default=str))
    finally:
        store.close()


def register(app: typer.Typer) -> None:
    """Add ``batch`` to ``app``."""
    app.command("batch")(batch)

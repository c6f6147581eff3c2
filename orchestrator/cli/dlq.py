"""``victor dlq list|replay`` and ``victor reconcile --once``: operate the ledger's safety net."""

from __future__ import annotations

import json
import time
from typing import Any

import typer
from rich.table import Table

from orchestrator.cli.support import console, out
from workers.core.settings import Mode, load_settings
from workers.runtime import runtime_of

dlq_app = typer.Typer(
    name="dlq", help="Dead-lettered tasks: list them, replay them.", no_args_is_help=True
)


DLQ_NEEDS_REDIS = (
    "the dead-letter queue lives in the fleet's Redis: set VICTOR_REDIS_URL "
    "(embedded mode keeps no ledger between runs)"
)
RECONCILE_NEEDS_REDIS = (
    "victor reconcile re-dispatches unfinished tasks from the fleet's ledger in Redis: set "
    "VICTOR_REDIS_URL (in embedded mode a job runs to its end inside one victor command; "
    "there is nothing to reconcile)"
)


def _app(needs_redis: str = DLQ_NEEDS_REDIS) -> Any:
    from workers.celery_app.factory import create_app

    settings = load_settings()
    if settings.mode is not Mode.DISTRIBUTED:
        console.print(f"[red]error:[/red] {needs_redis}")
        raise typer.Exit(2)
    return create_app(settings)


@dlq_app.command("list")
def list_dead_letters(
    as_json: bool = typer.Option(False, "--json", help="Print the entries as JSON."),
) -> None:
    """List dead-lettered tasks (past the delivery cap), oldest first."""
    entries = sorted(runtime_of(_app()).ledger.dead_letters(), key=lambda e: e.get("at", 0))
    if as_json:
        out.print_json(json.dumps(entries))
        return
    if not entries:
        out.print("no dead-lettered tasks")
        return
    table = Table("task id", "job id", "skill", "items", "deliveries", "dead-lettered at")
    for entry in entries:
        at = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry.get("at", 0)))
        table.add_row(
            entry["task_id"],
            entry["job_id"],
            entry["skill"],
            str(len(entry["items"])),
            str(entry["deliveries"]),
            at,
        )
    out.print(table)


@dlq_app.command("replay")
def replay(
    task_id: str | None = typer.Argument(None, help="The dead-lettered task to run again."),
    replay_all: bool = typer.Option(False, "--all", help="Replay every dead-lettered task."),
) -> None:
    """Publish dead-lettered tasks again with their own task ids (delivery count reset)."""
    from workers.maintenance.reconciler import replay_dead_letter

    if (task_id is None) == (not replay_all):
        console.print("[red]error:[/red] give a TASK_ID or --all (not both)")
        raise typer.Exit(2)
    app = _app()
    ids = [task_id] if task_id else [e["task_id"] for e in runtime_of(app).ledger.dead_letters()]
    for current in ids:
        entry = replay_dead_letter(app, current)
        out.print(f"replayed {current} (job {entry['job_id']}, skill {entry['skill']})")
    if not ids:
        out.print("no dead-lettered tasks")


def reconcile(
    once: bool = typer.Option(False, "--once", help="Run one pass and exit."),
    interval_s: float = typer.Option(
        0.0, "--interval", help="Seconds between passes (default: stale-after / 3)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print each pass as JSON."),
) -> None:
    """Re-dispatch ledger tasks accepted but not finished (what the beat task does)."""
    from workers.maintenance.reconciler import reconcile_once

    app = _app(RECONCILE_NEEDS_REDIS)
    pause = interval_s or max(1.0, runtime_of(app).settings.reconciler_stale_after_s / 3)
    while True:
        report = reconcile_once(app)
        if as_json:
            out.print_json(json.dumps(report.as_dict()))
        else:
            out.print(
                f"re-dispatched {len(report.redispatched)} task(s), "
                f"{len(report.reduces)} reduce(s); closed {len(report.closed)}; "
                f"{report.waiting} waiting"
                + (" (another reconciler holds the lock)" if report.locked else "")
            )
        if once:
            return
        time.sleep(pause)


def register(app: typer.Typer) -> None:
    """Add ``dlq`` and ``reconcile`` to the ``victor`` command."""
    app.add_typer(dlq_app, name="dlq")
    app.command("reconcile")(reconcile)

"""``victor tuner`` (the loop; ``--dry-run`` only prints) and ``victor tuner status``."""

from __future__ import annotations

import json
import signal
import threading
from typing import Any

import typer
from rich.table import Table

from orchestrator.cli.support import console, out, settings_or_exit

tuner_app = typer.Typer(
    name="tuner",
    help="Resize worker pools from throughput, latency and memory; one tuner acts per fleet.",
)


def _needs_fleet(settings: Any) -> None:
    if settings.mode.value != "distributed":
        console.print(
            "[red]error:[/red] the tuner resizes a fleet's workers; set VICTOR_REDIS_URL. "
            "Embedded mode is not tuned: its worker lives inside one short command."
        )
        raise typer.Exit(2)


@tuner_app.callback(invoke_without_command=True)
def run(
    ctx: typer.Context,
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print each decision; resize nothing, record nothing."
    ),
    iterations: int = typer.Option(
        None, "--iterations", min=1, help="Stop after this many intervals (default: run on)."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Also print hold decisions."),
) -> None:
    """Run the tuner loop every tuner_interval_s (Ctrl-C or SIGTERM stops it).

    Each interval: take or renew the fleet's tuner lease (a second tuner waits and says so),
    read every live worker's figures, pick its pool size (orchestrator.tuner.policy), resize
    it with pool_grow/pool_shrink (or autoscale bounds for --autoscale workers), and record
    the decision and its reason (see `victor tuner status`).
    """
    if ctx.invoked_subcommand is not None:
        return
    from orchestrator.tuner.actuation import ControlActuator
    from orchestrator.tuner.journal import TunerJournal
    from orchestrator.tuner.lease import Lease
    from orchestrator.tuner.runner import TunerRunner, lease_ttl_ms, tuner_interval
    from workers.telemetry.fleet import get_metrics

    settings = settings_or_exit()
    _needs_fleet(settings)
    if not settings.tuner_enabled and not dry_run:
        console.print("tuner_enabled is off (VICTOR_TUNER_ENABLED=false): not resizing anything")
        return
    journal = TunerJournal(settings)
    actuator = lease = None
    if not dry_run:
        from workers.celery_app.factory import create_app

        actuator = ControlActuator(create_app(settings))
        lease = Lease(journal.client, journal.keys.tuner_lease(), lease_ttl_ms(settings))

    def say(line: str) -> None:
        out.print(line, markup=False, highlight=False)

    runner = TunerRunner(
        settings,
        figures=lambda: get_metrics(settings),
        journal=journal,
        actuator=actuator,
        lease=lease,
        dry_run=dry_run,
        verbose=verbose,
        say=say,
    )
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    what = "dry run: printing decisions only" if dry_run else "resizing worker pools"
    console.print(f"victor tuner: {what}, every {tuner_interval(settings):g} s")
    try:
        runner.run(stop, iterations)
    except KeyboardInterrupt:
        stop.set()


def render(status: dict[str, Any]) -> Table:
    """One row per worker: how it is resized, its size and bounds, what it is doing."""
    holder = status["lease"]["holder"] or "nobody (no tuner is acting)"
    table = Table(title=f"victor tuner (every {status['interval_s']:g} s; lease: {holder})")
    for column in ("worker", "mode", "pool", "bounds", "active", "tasks/s", "RSS MB"):
        table.add_column(column, justify="left" if column in ("worker", "mode") else "right")
    for name, worker in status["workers"].items():
        bounds = worker["bounds"]
        table.add_row(
            name,
            f"{worker['mode']} ({worker['pool_type']})",
            str(worker["pool_size"]),
            f"{bounds['min']}-{bounds['max']}",
            str(worker["active"]),
            "-" if worker["throughput"] is None else f"{worker['throughput']:.2f}",
            "-" if worker["rss_mb"] is None else f"{worker['rss_mb']:,.1f}",
        )
    fleet = status["fleet"]
    if fleet:
        table.caption = (
            f"desired replicas {fleet['desired_replicas']:g} (raw {fleet['raw_replicas']:g}, "
            f"depth {fleet['depth']:g}, {fleet['capacity_per_replica']:g} slots a replica); "
            f"decisions {json.dumps(fleet['decisions'], sort_keys=True)}"
        )
    return table


def reasons(status: dict[str, Any], last: int = 3) -> list[str]:
    """Each worker's latest decisions (newest first) with why, or why it is not tuned."""
    lines = []
    for name, worker in status["workers"].items():
        if not worker["decisions"]:
            lines.append(f"{name}: {worker['note'] or 'no decision yet'}")
        for decision in worker["decisions"][:last]:
            lines.append(
                f"{name}: {decision['reason']} ({decision['rule']}; {decision['applied']})"
            )
    return lines


@tuner_app.command("status")
def status(as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
    """Each worker's pool size, bounds, last decisions and why (same as GET /v1/tuner)."""
    from orchestrator.tuner.status import tuner_status

    settings = settings_or_exit()
    _needs_fleet(settings)
    shown = tuner_status(settings)
    if as_json:
        print(json.dumps(shown))  # noqa: T201 - machine-readable output
        return
    out.print(render(shown))
    for line in reasons(shown):
        out.print(line, markup=False, highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add ``tuner`` and ``tuner status`` to ``app``."""
    app.add_typer(tuner_app, name="tuner")

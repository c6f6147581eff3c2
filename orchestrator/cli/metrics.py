"""``victor metrics [--json] [--watch]`` and ``victor metrics serve`` (a Prometheus endpoint)."""

from __future__ import annotations

import json
import time
from typing import Any

import typer
from rich.table import Table

from orchestrator.cli.support import console, out, settings_or_exit
from workers.core.settings import Mode

metrics_app = typer.Typer(
    name="metrics", help="Fleet figures: latency, throughput, errors, memory, queue depth."
)


_settings = settings_or_exit


def _ms(value: Any) -> str:
    return "-" if value is None else f"{value:,.1f}"


def render(metrics: dict[str, Any]) -> Table:
    """The figures as one table: fleet first, then each skill; workers and queue below."""
    table = Table(
        title=f"victor metrics ({metrics['mode']}, last {metrics['window_s']:.0f} s)",
        show_header=True,
    )
    for column in ("scope", "tasks", "tasks/s", "avg ms", "p50", "p95", "p99", "errors", "wait ms"):
        table.add_column(column, justify="left" if column == "scope" else "right")
    rows = [("fleet", metrics["fleet"]), *sorted(metrics["skills"].items())]
    for scope, figures in rows:
        table.add_row(
            scope,
            f"{figures['tasks']:,}",
            f"{figures['throughput']:.2f}",
            _ms(figures["avg_latency"]),
            _ms(figures["p50"]),
            _ms(figures["p95"]),
            _ms(figures["p99"]),
            f"{figures['error_rate']:.1%}",
            _ms(figures["queue_wait_avg_ms"]),
        )
    return table


def render_fleet(metrics: dict[str, Any]) -> Table:
    queue = metrics["queue"]
    table = Table(title="workers and queue")
    for column in ("worker", "pool", "active", "reserved", "processes", "RSS MB"):
        table.add_column(column, justify="left" if column == "worker" else "right")
    for name, worker in sorted(metrics["workers"].items()):
        table.add_row(
            name,
            str(worker["pool_size"]),
            str(worker["active"]),
            str(worker["reserved"]),
            str(len(worker["processes"])),
            f"{worker['rss_mb']:,.1f}",
        )
    oldest = queue["oldest_age_s"]
    table.caption = (
        f"queue depth {queue['depth']} = queued {queue['queued']} + reserved "
        f"{queue['reserved']} + active {queue['active']}; oldest queued "
        f"{'-' if oldest is None else f'{oldest:.1f} s'}; fleet RSS "
        f"{metrics['memory']['fleet_mb']:,.1f} MB"
    )
    return table


@metrics_app.callback(invoke_without_command=True)
def show(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (a line each)."),
    watch: bool = typer.Option(False, "--watch", help="Refresh until interrupted."),
    interval_s: float = typer.Option(2.0, "--interval", min=0.1, help="Seconds between views."),
    window_s: int = typer.Option(None, "--window", min=1, help="Seconds of history to sum."),
    alerts: bool = typer.Option(
        True, "--alerts/--no-alerts", help="With --watch: evaluate the alert rules each view."
    ),
) -> None:
    """Show the fleet's figures (the ``get_metrics()`` the API and the tuner read)."""
    if ctx.invoked_subcommand is not None:
        return
    from workers.telemetry.alerts import Monitor
    from workers.telemetry.fleet import get_metrics

    settings = _settings()
    if settings.mode is Mode.EMBEDDED and not as_json:
        console.print(
            "[yellow]embedded mode:[/yellow] no fleet to read; set VICTOR_REDIS_URL to see "
            "the workers of a fleet"
        )
    monitor = Monitor(settings) if watch and alerts else None
    while True:
        metrics = get_metrics(settings, window_s)
        events = monitor.check(metrics) if monitor is not None else []
        if as_json:
            print(json.dumps({**metrics, "alerts": events} if watch else metrics))  # noqa: T201
        else:
            if watch:
                out.clear()
            out.print(render(metrics))
            out.print(render_fleet(metrics))
            for event in events:
                colour = "red" if event["event"] == "alert" else "green"
                out.print(f"[{colour}]{event['event']}[/{colour}] {json.dumps(event)}")
        if not watch:
            return
        time.sleep(interval_s)


@metrics_app.command("serve")
def serve(
    host: str = typer.Option(None, "--host", help="Bind address (metrics_host, 127.0.0.1)."),
    port: int = typer.Option(None, "--port", min=1, max=65_535, help="Port (metrics_port)."),
) -> None:
    """Serve the fleet's figures for Prometheus at http://HOST:PORT/metrics."""
    from prometheus_client import start_http_server

    from workers.telemetry.fleet import fleet_collector_registry

    settings = _settings()
    bind = host or settings.metrics_host
    chosen = port or settings.metrics_port
    server, thread = start_http_server(
        chosen, addr=bind, registry=fleet_collector_registry(settings)
    )
    console.print(f"serving Prometheus metrics on http://{bind}:{chosen}/metrics (Ctrl-C stops)")
    try:
        while thread.is_alive():
            thread.join(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()


def register(app: typer.Typer) -> None:
    """Add this group's commands to ``app``."""
    app.add_typer(metrics_app, name="metrics")

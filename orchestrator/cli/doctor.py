"""``victor doctor``: findings from live metrics and settings, each with the setting to change."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.table import Table

from orchestrator.cli.support import console, out, settings_or_exit
from orchestrator.doctor import diagnose
from workers.core.settings import Mode


def doctor(
    as_json: bool = typer.Option(False, "--json", help="Print the findings as JSON."),
) -> None:
    """Check the fleet the way the guide's troubleshooting does: memory near the limit, lazy
    loading off, caches that miss and evict, high latency or error rate, a tuner pinned at a
    bound, --autoscale workers under a tuner. Each finding names the setting and a value."""
    from workers.cache import get_cache_stats
    from workers.telemetry.fleet import get_metrics

    settings = settings_or_exit()
    metrics = get_metrics(settings)
    cache = get_cache_stats(settings=settings)
    tuner: dict[str, Any] = {}
    if settings.mode is Mode.DISTRIBUTED:
        from orchestrator.tuner.status import tuner_status

        tuner = tuner_status(settings, metrics=metrics)
    findings = diagnose(settings, metrics, cache, tuner)
    if as_json:
        out.print_json(json.dumps([finding.as_dict() for finding in findings]))
        return
    if settings.mode is not Mode.DISTRIBUTED:
        console.print("embedded mode: only settings are checked (no fleet to read figures from)")
    if not findings:
        out.print(f"no findings ({len(metrics.get('workers') or {})} live workers checked)")
        return
    table = Table(title="victor doctor", show_lines=True)
    for column in ("", "check", "finding", "try"):
        table.add_column(column)
    for finding in findings:
        mark = "[yellow]warn[/yellow]" if finding.severity == "warning" else "info"
        hint = f"{finding.env}={json.dumps(finding.try_value)}" if finding.env else "-"
        table.add_row(mark, finding.check, finding.message, hint)
    out.print(table)


def register(app: typer.Typer) -> None:
    """Add ``doctor`` to ``app``."""
    app.command()(doctor)

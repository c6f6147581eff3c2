"""``victor cache stats|invalidate|clear-expired``: look at and operate the shared cache."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.table import Table

from orchestrator.cli.support import console, out, settings_or_exit
from workers.core.settings import Mode, Settings

cache_app = typer.Typer(
    name="cache",
    help="The shared cache: fleet-wide stats, invalidation, expiry.",
    no_args_is_help=True,
)

_COLUMNS = (
    "hits",
    "l1_hits",
    "l2_hits",
    "misses",
    "hit_rate",
    "current_size",
    "max_size",
    "evictions",
    "bytes",
    "errors",
)


_LABELS = {"current_size": "l1_entries", "max_size": "l1_max_entries"}

_settings = settings_or_exit


def _embedded_note(settings: Settings) -> None:
    from workers.cache.manager import l2_url

    url = l2_url(settings) or ""
    if url.startswith("sqlite:"):
        console.print(
            f"[yellow]embedded mode:[/yellow] the cache persists in {url} and is shared by the "
            "runs on this host; figures cover processes seen in the last 30 s"
        )
    elif settings.mode is Mode.EMBEDDED and not settings.cache_url:
        console.print(
            "[yellow]embedded mode:[/yellow] no cache Redis is configured, so the cache lives "
            "only inside the process running a job; set VICTOR_REDIS_URL to see a fleet, or "
            "VICTOR_CACHE_DIR to keep it between runs"
        )


def _print_json(payload: Any) -> None:
    print(json.dumps(payload))  # noqa: T201 - machine-readable output


@cache_app.command("stats")
def stats(as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
    """Hits and misses (L1/L2), hit rate, sizes, evictions and bytes, fleet-wide."""
    from workers.cache import get_cache_stats

    settings = _settings()
    figures = get_cache_stats(settings)
    if as_json:
        _print_json(figures)
        return
    _embedded_note(settings)
    processes = figures.get("processes", 1)
    noun = "process" if processes == 1 else "processes"
    table = Table(title=f"cache ({figures['scope']}, {processes} {noun}, L2 {figures['l2']})")
    # One row per figure and one column per cache: it fits 80 columns whatever the numbers.
    table.add_column("figure", no_wrap=True)
    caches = [*figures["caches"].items(), ("total", figures)]
    for name, _ in caches:
        table.add_column(name, justify="right", no_wrap=True)
    for column in _COLUMNS:
        label = _LABELS.get(column, column)
        table.add_row(label, *(_cell(values.get(column, 0)) for _, values in caches))
    out.print(table)


def _cell(value: Any) -> str:
    return f"{value:.1%}" if isinstance(value, float) else f"{value:,}"


@cache_app.command("invalidate")
def invalidate(
    cache_type: str = typer.Option(
        "all", "--type", "-t", help="tool_selection, response, embedding or all."
    ),
    pattern: str = typer.Option(
        "*", "--pattern", "-p", help="Glob over skill:version:digest, e.g. '*auth*'."
    ),
    tenant: str | None = typer.Option(None, "--tenant", help="Only this tenant's entries."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Remove matching entries from Redis (SCAN) and from every process's L1."""
    from workers.cache import invalidate_cache

    settings = _settings()
    result = invalidate_cache(cache_type, pattern, tenant=tenant, settings=settings)
    if as_json:
        _print_json(result)
        return
    _embedded_note(settings)
    out.print(
        f"invalidated {result['match']}: {result['l2_removed']} entries in Redis, "
        f"{result['processes_acknowledged']}/{result['processes_notified']} processes "
        "dropped theirs from L1"
    )
    if result.get("error"):
        console.print(f"[red]error:[/red] {result['error']}")
        raise typer.Exit(1)


@cache_app.command("clear-expired")
def clear_expired(as_json: bool = typer.Option(False, "--json")) -> None:
    """Drop expired entries from every process's L1 now (Redis expires its own)."""
    from workers.cache import clear_expired_cache

    settings = _settings()
    result = clear_expired_cache(settings)
    if as_json:
        _print_json(result)
        return
    _embedded_note(settings)
    out.print(
        f"cleared expired entries: {result['processes_acknowledged']}/"
        f"{result['processes_notified']} processes swept their L1"
    )
    if result.get("error"):
        console.print(f"[red]error:[/red] {result['error']}")
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``cache`` to the ``victor`` command."""
    app.add_typer(cache_app, name="cache")

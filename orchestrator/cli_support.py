"""What every ``victor`` command shares: consoles, settings that fail cleanly, progress bars."""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from workers.errors import VictorError
from workers.settings import Settings, load_settings

console = Console(stderr=True)
out = Console()


def settings_or_exit(**overrides: Any) -> Settings:
    """Settings from the environment plus non-None overrides; a bad value exits 2 with why."""
    try:
        return load_settings(**{k: v for k, v in overrides.items() if v is not None})
    except VictorError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc


def job_progress(quiet: bool) -> Progress:
    """The progress bar of a running job (tasks done of total), on stderr."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=quiet,
        transient=True,
    )

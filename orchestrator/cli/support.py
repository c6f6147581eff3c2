"""What every ``victor`` command shares: consoles, the error boundary, settings, progress bars."""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from typer.core import TyperGroup

from workers.core.errors import (
    AccessDeniedError,
    ApiRequestError,
    ConfigError,
    JobOutcomeUnknownError,
    PlanError,
    SkillInputError,
    UnknownSkillError,
    VictorError,
)
from workers.core.settings import Settings, load_settings

console = Console(stderr=True)
out = Console()

# Exit codes every command shares (README "Exit codes").
EXIT_FAILED = 1  # the job failed (every item, or the job itself), or a service it needs did
EXIT_USAGE = 2  # a setting, argument, goal or input is wrong: fix it and run again
EXIT_PARTIAL = 3  # the job finished, and some of its items failed
EXIT_UNKNOWN = 4  # the outcome is not known here (Redis unreachable); the job may still finish

_USAGE_ERRORS = (
    ConfigError,
    PlanError,
    SkillInputError,
    UnknownSkillError,
    AccessDeniedError,
    ApiRequestError,
)
_STATUS_CODES = {"succeeded": 0, "partial": EXIT_PARTIAL}


def exit_code_for(exc: VictorError) -> int:
    """The exit code for an error of the tree: usage for bad input, else failure."""
    if isinstance(exc, _USAGE_ERRORS):
        return EXIT_USAGE
    if isinstance(exc, JobOutcomeUnknownError):
        return EXIT_UNKNOWN
    return EXIT_FAILED


def exit_code_for_status(status: str) -> int:
    """0 for a succeeded job, 3 for a partial one, 1 for failed or revoked."""
    return _STATUS_CODES.get(status, EXIT_FAILED)


def fail(exc: VictorError) -> typer.Exit:
    """Print ``exc`` as one error line and return the ``typer.Exit`` to raise."""
    console.print(f"[red]error:[/red] {exc}")
    return typer.Exit(exit_code_for(exc))


class VictorGroup(TyperGroup):
    """The root command group: the one place a ``VictorError`` becomes a message and a code."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except VictorError as exc:
            raise fail(exc) from exc


def settings_or_exit(**overrides: Any) -> Settings:
    """Settings from the environment plus non-None overrides (a bad value is a ConfigError)."""
    return load_settings(**{k: v for k, v in overrides.items() if v is not None})


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

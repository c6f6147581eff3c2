"""The ``victor`` command line: the root app and its command groups.

Each group is a module with ``register(app)``; this package imports the groups, never the
other way round. Errors of the tree become a message and an exit code in one place
(``support.VictorGroup``).
"""

from __future__ import annotations

import sys

import typer

from orchestrator.cli import (
    analyze,
    api,
    batch,
    beat,
    cache,
    client,
    dlq,
    doctor,
    fleet,
    flower,
    metrics,
    profile,
    tuner,
)
from orchestrator.cli.support import VictorGroup, exit_code_for, fail
from workers.core.errors import VictorError

app = typer.Typer(
    name="victor",
    help="victor-fleet: a Celery worker fleet with lazy skills.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=VictorGroup,
)
groups = (analyze, fleet, dlq, cache, beat, metrics, profile, client, flower, api, tuner, doctor)
for group in groups:
    group.register(app)
batch.register(app)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except VictorError as exc:  # raised outside a command (while the app is built)
        fail(exc)
        sys.exit(exit_code_for(exc))


__all__ = ["app", "main"]

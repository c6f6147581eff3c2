"""The ``victor`` command line: the root app and its command groups.

Each group is a module with ``register(app)``; this package imports the groups, never the
other way round. Errors of the tree become a message and an exit code in one place
(``support.VictorGroup``).

Start-up stays fast: ``victor --help`` lists the commands from ``COMMANDS`` without importing
any group (nor settings, Redis or Celery), and ``victor NAME ...`` imports only the group that
defines NAME. ``app`` (every group) is built on first access, for tests and tools.
"""

from __future__ import annotations

import importlib
import sys
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import typer

GROUPS = (
    "analyze",
    "fleet",
    "dlq",
    "cache",
    "beat",
    "metrics",
    "profile",
    "client",
    "flower",
    "api",
    "tuner",
    "doctor",
    "batch",
    "ask",
)
HELP = "victor-fleet: a Celery worker fleet with lazy skills."
# Command -> (the group module that registers it, its one-line help). A test checks this
# table against the app every group builds.
COMMANDS: dict[str, tuple[str, str]] = {
    "analyze": (
        "analyze",
        "Analyze a code base: lines, functions, complexity hot spots, TODOs, per language.",
    ),
    "run": (
        "analyze",
        "Run a goal spec file and print the job's outcome and a summary of each step.",
    ),
    "worker": (
        "fleet",
        "Run a worker on the configured Redis (a thin wrapper over celery -A workers worker).",
    ),
    "skills": ("fleet", "List installed skills (imports no skill implementation)."),
    "bench": ("fleet", "Run a benchmark group: ours beside the peer's, in one run, as a ratio."),
    "reconcile": (
        "dlq",
        "Re-dispatch ledger tasks accepted but not finished (what the beat task does).",
    ),
    "beat": ("beat", "Run Celery beat with the schedule: alerts, memory consolidation, ..."),
    "submit": ("client", "Submit a goal spec to the API (VICTOR_API_URL, VICTOR_API_KEY)."),
    "flower": ("flower", "Run Flower (the Celery dashboard) for this fleet, with HTTP basic auth."),
    "api": ("api", "Serve the job submission API (needs VICTOR_REDIS_URL)."),
    "doctor": ("doctor", "Check the fleet the way the guide's troubleshooting does: ..."),
    "batch": ("batch", "Run a skill over every item of an input as a resumable batch run."),
    "dlq": ("dlq", "Dead-lettered tasks: list them, replay them."),
    "cache": ("cache", "The shared cache: fleet-wide stats, invalidation, expiry."),
    "metrics": ("metrics", "Fleet figures: latency, throughput, errors, memory, queue depth."),
    "profile": ("profile", "Profile one skill call or a whole job (CPU or memory)."),
    "jobs": ("client", "Your tenant's jobs: list them, show one."),
    "api-key": ("api", "Create and revoke API keys (only their sha256 hashes are stored)."),
    "tuner": (
        "tuner",
        "Resize worker pools from throughput, latency and memory; one tuner acts per fleet.",
    ),
    "ask": ("ask", "Plan a goal sentence, show the plan, and run it once you confirm (--yes ..."),
}


def build_app(groups: tuple[str, ...] = GROUPS) -> typer.Typer:
    """The root app with ``groups`` registered (every group by default)."""
    import typer

    from orchestrator.cli.support import VictorGroup

    app = typer.Typer(
        name="victor",
        help=HELP,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        cls=VictorGroup,
    )
    # A callback keeps the app a group even with one command registered (``victor beat``).
    app.callback()(_root)
    for group in groups:
        importlib.import_module(f"orchestrator.cli.{group}").register(app)
    return app


def _root() -> None:
    """victor-fleet: a Celery worker fleet with lazy skills."""


def listing_app() -> typer.Typer:
    """An app that only lists the commands (for ``victor`` and ``victor --help``)."""
    import typer

    app = typer.Typer(name="victor", help=HELP, no_args_is_help=True, add_completion=False)
    for name, (_, summary) in COMMANDS.items():
        app.command(name, help=summary)(_listed)
    return app


def _listed() -> None:
    """Never runs: ``main`` sends a named command to its own group."""


@cache
def _full_app() -> typer.Typer:
    return build_app()


def __getattr__(name: str) -> Any:
    if name == "app":
        return _full_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _command_of(arguments: list[str]) -> str | None:
    return next((argument for argument in arguments if not argument.startswith("-")), None)


def main() -> None:
    """Console-script entry point."""
    command = _command_of(sys.argv[1:])
    try:
        if command is None and set(sys.argv[1:]) <= {"--help", "-h"}:
            listing_app()()
        elif command in COMMANDS:
            build_app((COMMANDS[command][0],))()
        else:
            build_app()()  # an unknown command: the full app names the known ones
    except Exception as exc:
        from workers.core.errors import VictorError

        if not isinstance(exc, VictorError):  # raised outside a command (while the app is built)
            raise
        from orchestrator.cli.support import exit_code_for, fail

        fail(exc)
        sys.exit(exit_code_for(exc))


__all__ = ["COMMANDS", "GROUPS", "build_app", "main"]

"""``victor beat``: Celery beat with the fleet's maintenance schedule."""

from __future__ import annotations

import json
from typing import Any

import typer

from orchestrator.cli.support import console
from workers.core.settings import Mode, Settings, load_settings

# Scheduled jobs that --once leaves to their own command (they act on the fleet or the cache).
RUN_ELSEWHERE = {
    "victor-reconcile": "victor reconcile --once",
    "victor-clear-expired-cache": "victor cache clear-expired",
}


def run_once(settings: Settings) -> dict[str, Any]:
    """Run the monitor, memory consolidation and episode clean-up once, here.

    Returns what each did, and under ``skipped`` the other scheduled jobs with the command
    that runs each of them once.
    """
    from workers.maintenance.episodes import consolidate_memories, memories_for
    from workers.telemetry.alerts import Monitor

    episodic, _ = memories_for(settings)
    done: dict[str, Any] = {
        "clear_old_episodes": episodic.clear_old_episodes(settings.episodic_memory_retention_days),
        "consolidate_memories": {
            key: value for key, value in consolidate_memories(settings).items() if key != "by_skill"
        },
        "monitor": Monitor(settings).check(),
    }
    done["skipped"] = RUN_ELSEWHERE
    return done


def beat(
    loglevel: str = typer.Option("INFO", "--loglevel", "-l"),
    once: bool = typer.Option(
        False,
        "--once",
        help=(
            "Run the monitor, memory consolidation and episode clean-up once in this process; "
            "prints the command for the reconciler and cache clean-up."
        ),
    ),
    show: bool = typer.Option(False, "--show", help="Print the schedule as JSON and exit."),
) -> None:
    """Run Celery beat with the schedule: alerts, memory consolidation, episode and cache
    clean-up (the schedule lives in code; beat keeps its state in memory, no shelve file)."""
    from workers.maintenance.schedule import beat_schedule

    settings = load_settings()
    if show:
        from workers.celery_app.factory import create_app

        schedule = {**beat_schedule(settings), **create_app(settings).conf.beat_schedule}
        print(json.dumps(schedule, indent=2))  # noqa: T201 - machine-readable
        return
    if once:
        print(json.dumps(run_once(settings), indent=2))  # noqa: T201 - machine-readable
        return
    if settings.mode is not Mode.DISTRIBUTED:
        console.print(
            "[red]error:[/red] victor beat sends tasks to a fleet; set VICTOR_REDIS_URL "
            "(or run victor beat --once for one pass in this process)"
        )
        raise typer.Exit(2)
    from workers.celery_app.factory import create_app

    celery_app = create_app(settings)
    celery_app.start(["beat", "-l", loglevel, "--scheduler", "celery.beat:Scheduler"])


def register(app: typer.Typer) -> None:
    """Add this group's commands to ``app``."""
    app.command()(beat)

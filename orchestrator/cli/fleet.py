"""``victor worker``, ``victor skills`` and ``victor bench``: the fleet's own processes."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from orchestrator.cli.support import console, out, settings_or_exit

if TYPE_CHECKING:
    from workers.skills.registry import SkillRegistry

_settings = settings_or_exit
RESIZABLE_POOL = "workers.pools.threads:ResizableThreadPool"


def worker(
    ctx: typer.Context,
    concurrency: int = typer.Option(None, "--concurrency", "-c", min=1, max=256),
    pool: str = typer.Option(
        "prefork",
        "--pool",
        "-P",
        help=(
            "prefork, threads or solo. threads is victor's resizable threads pool "
            f"({RESIZABLE_POOL}): it answers pool_grow/pool_shrink, so `victor tuner` resizes "
            "it as it does prefork (Celery's own threads pool cannot be resized). solo is "
            "never resized."
        ),
    ),
    hostname: str = typer.Option(None, "--hostname", "-n"),
    loglevel: str = typer.Option("WARNING", "--loglevel", "-l"),
) -> None:
    """Run a worker on the configured Redis (a thin wrapper over celery -A workers worker)."""
    from workers.celery_app.factory import create_app
    from workers.core.names import DEFAULT_QUEUE

    settings = _settings()
    if settings.mode.value != "distributed":
        console.print(
            "[red]error:[/red] victor worker needs a broker; set VICTOR_REDIS_URL "
            "(for example redis://127.0.0.1:6379/0). Without one, victor analyze runs an "
            "embedded worker by itself."
        )
        raise typer.Exit(2)
    celery_app = create_app(settings)
    pool_args = ["-P", pool]
    if pool == "threads":
        # `-P` takes only Celery's aliases: name the class in the config and leave -P out.
        celery_app.conf.worker_pool = RESIZABLE_POOL
        pool_args = []
    argv = [
        "worker",
        "-l",
        loglevel,
        *pool_args,
        "-Q",
        DEFAULT_QUEUE,
        "-c",
        str(concurrency or settings.effective_concurrency),
        "--without-mingle",
        "--without-gossip",
    ]
    if hostname:
        argv += ["-n", hostname]
    celery_app.worker_main([*argv, *ctx.args])


def skills(as_json: bool = typer.Option(False, "--json")) -> None:
    """List installed skills (imports no skill implementation).

    A skill whose optional dependencies are missing is marked unavailable, with the extra
    that installs it.
    """
    from workers.skills.registry import load_registry

    rows = skill_rows(load_registry())
    if as_json:
        out.print_json(json.dumps(rows))
        return
    table = Table(title="skills")
    table.add_column("name")
    table.add_column("available")
    table.add_column("description")
    table.add_column("input fields")
    for row in rows:
        available = "yes" if row["available"] else f"no: pip install {row['install']}"
        fields = ", ".join(row["input"].get("properties", {}))
        table.add_row(row["name"], available, row["description"], fields)
    out.print(table)


def skill_rows(registry: SkillRegistry) -> list[dict[str, Any]]:
    """One row per declared skill; ``available`` is false when its extra is not installed."""
    rows = []
    for spec in registry.specs():
        extra = registry.missing_extra(spec.name)
        row: dict[str, Any] = {
            "name": spec.name,
            "task": spec.task_name,
            "description": spec.description,
            "input": spec.input_model.model_json_schema(),
            "available": extra is None,
        }
        if extra is not None:
            row["extra"] = extra
            row["install"] = f"'victor-fleet[{extra}]'"
        rows.append(row)
    return rows


def bench(
    group: str = typer.Argument(..., help="A benchmark group, or 'list' to name them."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    size: str = typer.Option("default", "--size", help="tiny (CI), default or full."),
) -> None:
    """Run a benchmark group: ours beside the peer's, in one run, as a ratio."""
    from orchestrator.bench.runner import list_groups, run_group

    if group == "list":
        out.print("\n".join(list_groups()))
        return
    result = run_group(group, size)
    if as_json:
        print(json.dumps(result))  # noqa: T201 - machine-readable output
    else:
        out.print_json(json.dumps(result))


def register(app: typer.Typer) -> None:
    """Add ``worker``, ``skills`` and ``bench`` to ``app``."""
    app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(worker)
    app.command()(skills)
    app.command()(bench)

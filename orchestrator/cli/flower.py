"""``victor flower``: Flower for our app, on loopback unless told, never without credentials."""

from __future__ import annotations

import ipaddress
import os
import re

import typer

from orchestrator.cli.support import console
from orchestrator.cli.support import settings_or_exit as _settings
from workers.celery_app.flower_defaults import require_auth_on_metrics

# user:password, several separated by commas (Flower's --basic-auth format).
_CREDENTIALS = re.compile(r"^[^:,\s]+:[^,\s]+(,[^:,\s]+:[^,\s]+)*$")


def is_loopback(address: str) -> bool:
    if address in ("localhost", ""):
        return address == "localhost"
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def flower_argv(address: str, port: int, url_prefix: str | None) -> list[str]:
    """The ``celery flower`` arguments (credentials travel in FLOWER_BASIC_AUTH, not argv)."""
    argv = ["flower", f"--address={address}", f"--port={port}"]
    if url_prefix:
        argv.append(f"--url_prefix={url_prefix}")
    return argv


def flower(
    address: str = typer.Option("127.0.0.1", "--address", help="Bind address (loopback)."),
    port: int = typer.Option(5555, "--port", min=1, max=65535),
    basic_auth: str = typer.Option(
        None, "--basic-auth", help="user:password[,user2:password2] (VICTOR_FLOWER_BASIC_AUTH)."
    ),
    insecure_local: bool = typer.Option(
        False, "--insecure-local", help="Allow no credentials, on a loopback address only."
    ),
    url_prefix: str = typer.Option(None, "--url-prefix", help="Serve under this path."),
) -> None:
    """Run Flower (the Celery dashboard) for this fleet, with HTTP basic auth."""
    settings = _settings()
    credentials = basic_auth or settings.flower_basic_auth.get_secret_value()
    if settings.mode.value != "distributed":
        console.print("[red]error:[/red] Flower watches a fleet; set VICTOR_REDIS_URL")
        raise typer.Exit(2)
    if credentials and not _CREDENTIALS.match(credentials):
        console.print(
            "[red]error:[/red] --basic-auth / VICTOR_FLOWER_BASIC_AUTH must look like "
            "user:password (several separated by commas)"
        )
        raise typer.Exit(2)
    if not credentials:
        if not insecure_local:
            console.print(
                "[red]error:[/red] Flower is a remote control plane (it can shut workers down); "
                "give credentials with --basic-auth user:password or VICTOR_FLOWER_BASIC_AUTH, "
                "or pass --insecure-local to run it without them on a loopback address"
            )
            raise typer.Exit(2)
        if not is_loopback(address):
            console.print(
                f"[red]error:[/red] --insecure-local binds loopback only, not {address!r}; "
                "give credentials to listen elsewhere"
            )
            raise typer.Exit(2)
    from workers.celery_app.factory import create_app

    celery_app = create_app(settings)
    if credentials:
        os.environ["FLOWER_BASIC_AUTH"] = credentials
    else:
        os.environ.pop("FLOWER_BASIC_AUTH", None)
    require_auth_on_metrics()
    celery_app.start(flower_argv(address, port, url_prefix))


def register(app: typer.Typer) -> None:
    """Add this group's commands to ``app``."""
    app.command()(flower)

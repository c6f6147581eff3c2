"""``victor api`` (serve the API with uvicorn) and ``victor api-key`` (create and revoke keys)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from orchestrator.cli.support import console, out
from orchestrator.cli.support import settings_or_exit as _settings

if TYPE_CHECKING:
    from orchestrator.api.keystore import KeyStore
    from workers.core.settings import Settings

keys_app = typer.Typer(
    help="Create and revoke API keys (only their sha256 hashes are stored).", no_args_is_help=True
)


def api(
    host: str = typer.Option(None, "--host", help="Bind address (VICTOR_API_HOST, 127.0.0.1)."),
    port: int = typer.Option(None, "--port", min=1, max=65535, help="VICTOR_API_PORT (8000)."),
    workers: int = typer.Option(1, "--workers", min=1, max=64, help="uvicorn processes."),
    log_level: str = typer.Option("warning", "--log-level"),
) -> None:
    """Serve the job submission API (needs VICTOR_REDIS_URL)."""
    import uvicorn

    settings = _settings(api_host=host, api_port=port)
    from orchestrator.api.app import create_api

    create_api(settings)  # fail here, with the setting's name, rather than in a worker
    uvicorn.run(
        "orchestrator.api.app:create_api",
        factory=True,
        host=settings.api_host,
        port=settings.api_port,
        workers=workers,
        log_level=log_level,
        proxy_headers=False,
    )


def _key_store(settings: Settings) -> KeyStore:
    """The key store the API reads: the keys file, else the Redis that holds the fleet's state
    (``state_url``, as the API's own), so a key is created where the API will look for it."""
    from orchestrator.api.keystore import KeyStore
    from workers.core.keys import Keys
    from workers.core.redis_client import redis_client
    from workers.core.settings import Mode

    distributed = settings.mode is Mode.DISTRIBUTED
    return KeyStore(
        Keys(settings.key_prefix),
        redis_client(settings.state_url) if distributed else None,
        settings.api_keys_file,
    )


@keys_app.command("create")
def create_key(
    tenant: str = typer.Option(..., "--tenant", help="The tenant the key acts for."),
    scopes: str = typer.Option("submit,read", "--scopes", help="Comma list: submit, read, admin."),
    name: str = typer.Option("", "--name", help="A label to recognise the key by."),
) -> None:
    """Create a key, store its hash (VICTOR_API_KEYS_FILE, else Redis) and print it once."""
    from orchestrator.api.keystore import hash_key, parse_scopes

    settings = _settings()
    settings.tenant = tenant  # validates the tenant with the setting's own rule
    store = _key_store(settings)
    token = store.create(tenant, parse_scopes(scopes), name)
    console.print(
        f"key for tenant {tenant!r} (hash {hash_key(token)[:16]}); it is not shown again:"
    )
    out.print(token, highlight=False)


@keys_app.command("revoke")
def revoke_key(
    key_hash: str = typer.Argument(..., help="The key's hash, or its first 8+ hex digits."),
) -> None:
    """Delete a stored key by its hash prefix."""
    store = _key_store(_settings())
    removed = store.revoke(key_hash)
    out.print(f"revoked {removed} key(s)")
    if not removed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add this group's commands to ``app``."""
    app.command()(api)
    app.add_typer(keys_app, name="api-key")

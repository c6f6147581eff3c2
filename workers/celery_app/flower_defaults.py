"""Safe defaults for plain ``celery -A workers flower`` (``victor flower`` checks its own).

Flower 2.2 reads its options from the environment (``FLOWER_*``), then the command line and
``flowerconfig.py``; with none given it listens on every interface without authentication.
``celery -A workers ...`` builds our app before Flower parses its options, so the app
registers a tornado parse callback that runs once the options are final:

- no ``--address`` / ``FLOWER_ADDRESS``: bind 127.0.0.1, not every interface;
- no ``--basic-auth`` / ``FLOWER_BASIC_AUTH`` / ``--auth``: take ``VICTOR_FLOWER_BASIC_AUTH``;
  with none of them Flower refuses to start (exit status 2) and says how to give credentials;
- ``/metrics`` asks for the credentials too (Flower serves it without them).

An address given explicitly is honoured: that is being told otherwise.
"""

from __future__ import annotations

import sys
from pathlib import Path

from workers.core.settings import Settings

_REGISTERED = False

REFUSAL = (
    "error: Flower is a remote control plane (it can shut workers down) and would run without "
    "credentials: give --basic-auth=user:password (or FLOWER_BASIC_AUTH, or "
    "VICTOR_FLOWER_BASIC_AUTH), or run `victor flower --insecure-local` for a loopback-only "
    "session without them\n"
)


def running_celery_flower(argv: list[str] | None = None) -> bool:
    """True in a ``celery ... flower`` process (the celery CLI with the flower subcommand)."""
    argv = sys.argv if argv is None else argv
    if not argv:
        return False
    program = Path(argv[0])
    is_celery = program.name == "celery" or (
        program.name == "__main__.py" and program.parent.name == "celery"
    )
    return is_celery and "flower" in argv[1:]


def require_auth_on_metrics() -> None:
    """Flower serves /metrics (worker and task names) without auth; ask for credentials there too.

    /healthcheck stays open: it answers "OK" and nothing else.
    """
    from flower.views.monitor import Metrics
    from tornado.web import authenticated

    if not getattr(Metrics.get, "victor_authenticated", False):
        guarded = authenticated(Metrics.get)
        guarded.victor_authenticated = True  # type: ignore[attr-defined]
        Metrics.get = guarded


def apply_safe_defaults(settings: Settings) -> None:
    """Adjust Flower's parsed options (loopback, credentials) or refuse to start."""
    from tornado.options import options

    if not options.address and not options.unix_socket:
        options.address = "127.0.0.1"
    if not options.basic_auth and not options.auth:
        fallback = settings.flower_basic_auth.get_secret_value()
        if fallback:
            options.basic_auth = fallback.split(",")
    if not options.basic_auth and not options.auth:
        sys.stderr.write(REFUSAL)
        raise SystemExit(2)
    require_auth_on_metrics()


def install(settings: Settings) -> None:
    """Register the callback in a ``celery ... flower`` process (once; a no-op elsewhere)."""
    global _REGISTERED
    if _REGISTERED or not running_celery_flower():
        return
    try:
        from tornado.options import options
    except ImportError:  # Flower (and tornado) not installed: nothing to guard
        return
    options.add_parse_callback(lambda: apply_safe_defaults(settings))
    _REGISTERED = True

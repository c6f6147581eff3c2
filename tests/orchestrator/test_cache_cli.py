"""``victor cache stats|invalidate|clear-expired`` against a Redis with this test's prefix."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from typer.testing import CliRunner

from orchestrator.cli import app
from workers.cache import MISSING, CacheManager
from workers.core.settings import Settings

pytestmark = [pytest.mark.redis]


def test_cache_commands_show_and_drop_entries(
    redis_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = redis_settings()
    monkeypatch.setenv("VICTOR_REDIS_URL", settings.redis_url or "")
    monkeypatch.setenv("VICTOR_KEY_PREFIX", settings.key_prefix)
    other = CacheManager(settings).start()
    try:
        key = other.response.key("check_auth", "1", {"x": 1})
        other.response.get_or_compute(key, lambda: {"v": 1})
        other.publish_stats()
        runner = CliRunner()

        shown = runner.invoke(app, ["cache", "stats", "--json"])
        assert shown.exit_code == 0, shown.output
        stats = json.loads(shown.stdout)
        assert stats["scope"] == "fleet" and stats["caches"]["response"]["computations"] == 1

        table = runner.invoke(app, ["cache", "stats"])
        assert table.exit_code == 0 and "response" in table.stdout

        dropped = runner.invoke(
            app, ["cache", "invalidate", "--type", "response", "--pattern", "*auth*", "--json"]
        )
        assert dropped.exit_code == 0, dropped.output
        result = json.loads(dropped.stdout)
        assert result["l2_removed"] == 1 and result["processes_acknowledged"] >= 1
        assert other.response.l1.get(key) is MISSING  # the broadcast reached this "process"

        cleared = runner.invoke(app, ["cache", "clear-expired", "--json"])
        assert cleared.exit_code == 0 and "processes_notified" in json.loads(cleared.stdout)

        wrong = runner.invoke(app, ["cache", "invalidate", "--type", "nope"])
        assert wrong.exit_code == 2 and "known caches" in wrong.output
    finally:
        other.close()

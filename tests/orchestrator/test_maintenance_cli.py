"""``victor beat --once`` and ``victor reconcile --once`` say what they do and do not do."""

from __future__ import annotations

from pathlib import Path

from orchestrator.cli.beat import run_once
from tests.orchestrator.test_cli import flat, victor
from workers.celery_app.factory import create_app
from workers.core.settings import Settings
from workers.maintenance.schedule import beat_schedule


def test_beat_once_runs_or_names_every_scheduled_job(tmp_path: Path) -> None:
    settings = Settings(cache_dir=str(tmp_path))
    fleet = Settings(redis_url="redis://127.0.0.1:1/0", cache_dir=str(tmp_path))
    scheduled = {*beat_schedule(fleet), *create_app(fleet).conf.beat_schedule}
    done = run_once(settings)
    ran = {f"victor-{name.replace('_', '-')}" for name in done if name != "skipped"}
    assert scheduled == ran | set(done["skipped"])
    assert done["skipped"]["victor-reconcile"] == "victor reconcile --once"


def test_reconcile_in_embedded_mode_says_why_without_the_dead_letter_queue(
    tmp_path: Path,
) -> None:
    result = victor("reconcile", "--once", cwd=tmp_path)
    assert result.returncode == 2
    error = flat(result.stderr)
    assert "dead-letter" not in error
    assert "victor reconcile" in error and "VICTOR_REDIS_URL" in error

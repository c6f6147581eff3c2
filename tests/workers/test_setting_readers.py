"""Every Settings field has a reader in the source, or is documented as having no effect."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from workers.core import setting_status
from workers.core.setting_status import COMPOSED_READERS, NO_EFFECT, warn_no_effect
from workers.core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SKIPPED = {"workers/core/settings.py", "workers/core/setting_status.py"}


def _source() -> str:
    files = [
        path
        for package in ("workers", "tasks", "orchestrator")
        for path in sorted((ROOT / package).rglob("*.py"))
        if path.relative_to(ROOT).as_posix() not in SKIPPED
    ]
    return "\n".join(path.read_text() for path in files)


def test_every_setting_has_a_reader_or_a_documented_no_effect() -> None:
    source = _source()
    orphans = []
    for name in Settings.model_fields:
        if re.search(rf"\b{name}\b", source) or name in NO_EFFECT:
            continue
        reader = COMPOSED_READERS.get(name)
        if reader is not None and reader[1] in (ROOT / reader[0]).read_text():
            continue
        orphans.append(name)
    assert orphans == [], "give each a reader, or list it in workers/core/setting_status.py"


def test_the_documented_lists_name_real_fields_only() -> None:
    fields = set(Settings.model_fields)
    assert set(NO_EFFECT) <= fields
    assert set(COMPOSED_READERS) <= fields


def test_a_no_effect_setting_warns_once_when_changed(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(setting_status, "_warned", set())
    caplog.set_level(logging.WARNING, logger="workers.core.setting_status")
    assert warn_no_effect(Settings()) == []
    settings = Settings(memory_pool_size=99)
    assert warn_no_effect(settings) == ["memory_pool_size"]
    assert warn_no_effect(settings) == []
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 1 and "memory_pool_size=99" in messages[0]

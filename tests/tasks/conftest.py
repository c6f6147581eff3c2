"""Fixtures for skill tests: a context confined to a temporary root."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from workers.core.settings import Settings
from workers.skills.spec import SkillContext


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """The allowed root of the skill under test (a directory inside tmp_path)."""
    allowed = tmp_path / "root"
    allowed.mkdir()
    return allowed


@pytest.fixture
def context(root: Path) -> SkillContext:
    return SkillContext(settings=Settings(allowed_roots=[root]))


@pytest.fixture
def context_for() -> Callable[..., SkillContext]:
    def build(**values: Any) -> SkillContext:
        return SkillContext(settings=Settings(**values))

    return build

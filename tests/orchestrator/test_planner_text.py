"""Goal sentences: a path outside the allowed roots is refused, not silently replaced."""

from __future__ import annotations

import pytest

from orchestrator.core.planner import goal_from_text
from workers.core.errors import AccessDeniedError
from workers.skills import load_registry


def test_goal_text_naming_a_path_outside_the_roots_is_refused(embedded_settings, tmp_path) -> None:
    inside = tmp_path / "inside"
    inside.mkdir()
    settings = embedded_settings(allowed_roots=[inside])
    with pytest.raises(AccessDeniedError, match="outside the allowed roots"):
        goal_from_text(f"analyze {tmp_path}/", settings, load_registry())

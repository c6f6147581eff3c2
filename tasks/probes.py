"""noop and sleep: probe skills for benchmarks, health checks and fault tests."""

from __future__ import annotations

import time
from typing import Any

from tasks.catalog import NoopInput, SleepInput
from workers.skills.spec import SkillContext


def noop(params: NoopInput, context: SkillContext) -> Any:
    """Return the value unchanged."""
    return params.value


def sleep(params: SleepInput, context: SkillContext) -> Any:
    """Sleep ``ms`` milliseconds (simulated I/O), then return the value."""
    time.sleep(params.ms / 1000)
    return params.value

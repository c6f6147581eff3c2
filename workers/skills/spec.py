"""SkillSpec: what a skill is, declared without importing its implementation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from workers.core.names import SKILL_TASK_PREFIX

if TYPE_CHECKING:
    from workers.core.settings import Settings

TASK_PREFIX = SKILL_TASK_PREFIX


@dataclass(frozen=True)
class SkillSpec:
    """A skill's declaration: the implementation is only named, as ``"module:function"``."""

    name: str
    description: str
    input_model: type[BaseModel]
    implementation: str
    version: str = "1"
    extra: str | None = None
    requires: tuple[str, ...] = ()
    cacheable: bool = False
    file_param: str | None = None
    keywords: tuple[str, ...] = field(default_factory=tuple)

    @property
    def task_name(self) -> str:
        """The stable Celery task name of this skill."""
        return f"{TASK_PREFIX}{self.name}"


@dataclass
class SkillContext:
    """What a running skill may use: the process's settings and shared services."""

    settings: Settings
    services: dict[str, Any] = field(default_factory=dict)

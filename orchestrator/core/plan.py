"""Goal specs (what users ask for) and plans (what the dispatcher runs)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_EXCLUDES = [
    ".git",
    ".hg",
    ".svn",
    ".venv",
    "venv",
    "node_modules",
    "__pycache__",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    "*.egg-info",
    "build",
    "dist",
    ".tox",
    ".victor",
]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StepSpec(_Spec):
    """One skill applied to many inputs: explicit ``items``, files under ``paths``, or both."""

    skill: str = Field(min_length=1, max_length=200)
    items: list[dict[str, Any]] = Field(default_factory=list)
    paths: list[str] = Field(default_factory=list, max_length=1000)
    include: list[str] = Field(default_factory=lambda: ["*"], max_length=100)
    exclude: list[str] = Field(default_factory=list, max_length=100)
    params: dict[str, Any] = Field(default_factory=dict)


class ReduceSpec(_Spec):
    """The fan-in step: a skill that receives every result of the steps."""

    skill: str = Field(min_length=1, max_length=200)
    params: dict[str, Any] = Field(default_factory=dict)


class GoalSpec(_Spec):
    """A job as submitted: steps, an optional reduce, and how to run the steps."""

    name: str = Field("job", min_length=1, max_length=200)
    steps: list[StepSpec] = Field(min_length=1, max_length=100)
    reduce: ReduceSpec | None = None
    strategy: Literal["parallel", "sequential"] = "parallel"
    chunk_size: int | None = Field(None, ge=1, le=100_000)


class PlannedStep(BaseModel):
    """A step with its inputs expanded."""

    skill: str
    items: list[dict[str, Any]]


class Plan(BaseModel):
    """What the dispatcher runs: steps with concrete items, chunking, and the fan-in."""

    name: str
    steps: list[PlannedStep]
    reduce: ReduceSpec | None = None
    strategy: Literal["parallel", "sequential"] = "parallel"
    chunk_size: int
    inline: bool = False

    @property
    def item_count(self) -> int:
        return sum(len(step.items) for step in self.steps)

    def chunks(self) -> list[tuple[int, str, list[dict[str, Any]]]]:
        """``(step index, skill, items)`` per task, in step order."""
        out = []
        for index, step in enumerate(self.steps):
            for start in range(0, len(step.items), self.chunk_size):
                out.append((index, step.skill, step.items[start : start + self.chunk_size]))
        return out

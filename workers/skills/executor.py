"""Run a skill by name in this process: validate input, load on first use, run, wrap outcomes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from workers.core.errors import SkillInputError
from workers.core.settings import Settings
from workers.skills.registry import SkillRegistry
from workers.skills.spec import SkillContext, SkillSpec
from workers.skills.streaming import streaming_item

# A cache hook: (spec, validated input, compute) -> value. The cache module plugs in here.
CacheHook = Callable[[SkillSpec, Any, Callable[[], Any]], Any]


class SkillExecutor:
    """The tool executor: runs skills in this process (always imported eagerly)."""

    def __init__(self, settings: Settings, registry: SkillRegistry) -> None:
        self.settings = settings
        self.registry = registry
        self.context = SkillContext(settings=settings, services={"registry": registry})
        self.cache_hook: CacheHook | None = None

    def validate(self, name: str, params: dict[str, Any]) -> tuple[SkillSpec, Any]:
        """Return the skill's spec and its validated input, or raise SkillInputError."""
        spec = self.registry.get(name)
        try:
            model = spec.input_model.model_validate(params)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in error['loc']) or 'input'}: {error['msg']}"
                for error in exc.errors()
            )
            raise SkillInputError(
                f"invalid input for skill {name!r}: {problems}; expected fields: "
                f"{', '.join(spec.input_model.model_fields)}"
            ) from exc
        return spec, model

    def run(self, name: str, params: dict[str, Any]) -> Any:
        """Run one skill call and return its JSON-ready result; errors propagate."""
        spec, model = self.validate(name, params)
        function = self.registry.load(name)

        def compute() -> Any:
            return function(model, self.context)

        if self.cache_hook is not None and spec.cacheable:
            return self.cache_hook(spec, model, compute)
        return compute()

    def run_batch(self, name: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Run a skill over many inputs; each outcome is ``{"ok": true, "value"}`` or an error."""
        outcomes: list[dict[str, Any]] = []
        for index, item in enumerate(items):
            try:
                with streaming_item(index):
                    outcomes.append({"ok": True, "value": self.run(name, item)})
            except Exception as exc:  # one bad item must not fail its batch; it is recorded
                outcomes.append(
                    {"ok": False, "error": str(exc), "type": type(exc).__name__, "item": item}
                )
        return outcomes

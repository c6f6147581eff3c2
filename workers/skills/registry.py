"""Find skills through entry points and import each implementation on first use."""

from __future__ import annotations

import importlib
import importlib.util
import threading
from collections.abc import Callable, Iterable
from importlib.metadata import entry_points
from typing import Any

from workers.core.errors import MissingExtraError, SkillError, UnknownSkillError
from workers.core.names import SKILLS_ENTRY_POINT_GROUP
from workers.skills.spec import SkillSpec

ENTRY_POINT_GROUP = SKILLS_ENTRY_POINT_GROUP

SkillFunction = Callable[..., Any]


class SkillRegistry:
    """Skill declarations by name; implementations are imported lazily and kept per process."""

    def __init__(self, specs: Iterable[SkillSpec]) -> None:
        self._specs: dict[str, SkillSpec] = {}
        for spec in specs:
            if spec.name in self._specs:
                raise SkillError(f"skill {spec.name!r} is declared twice; rename one of them")
            self._specs[spec.name] = spec
        self._loaded: dict[str, SkillFunction] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_entry_points(cls, group: str = ENTRY_POINT_GROUP) -> SkillRegistry:
        """Read every declaration in ``group``; imports only the declaring modules."""
        specs = []
        for entry in entry_points(group=group):
            spec = entry.load()
            if not isinstance(spec, SkillSpec):
                raise SkillError(
                    f"entry point {entry.name!r} = {entry.value!r} in {group!r} is not a SkillSpec"
                )
            specs.append(spec)
        return cls(specs)

    def names(self) -> list[str]:
        return sorted(self._specs)

    def specs(self) -> list[SkillSpec]:
        return [self._specs[name] for name in self.names()]

    def get(self, name: str) -> SkillSpec:
        """Return the declaration of ``name`` or raise an error listing the known skills."""
        try:
            return self._specs[name]
        except KeyError:
            known = ", ".join(self.names()) or "(none installed)"
            raise UnknownSkillError(f"no skill named {name!r}; known skills: {known}") from None

    def is_loaded(self, name: str) -> bool:
        return name in self._loaded

    def load(self, name: str) -> SkillFunction:
        """Import the implementation of ``name`` (once per process) and return it."""
        function = self._loaded.get(name)
        if function is not None:
            return function
        spec = self.get(name)
        with self._lock:
            function = self._loaded.get(name)
            if function is None:
                function = _import_implementation(spec)
                self._loaded[name] = function
        return function

    def missing_extra(self, name: str) -> str | None:
        """The extra that installs ``name`` when its dependencies are absent, else ``None``.

        Looks the required modules up without importing them or the implementation.
        """
        spec = self.get(name)
        return (spec.extra or spec.name) if _requirement_missing(spec) else None

    def load_all(self) -> None:
        """Import every implementation whose dependencies are installed (eager mode)."""
        for name in self.names():
            try:
                self.load(name)
            except MissingExtraError:
                continue


def _missing_extra(spec: SkillSpec) -> MissingExtraError:
    extra = spec.extra or spec.name
    return MissingExtraError(
        f"skill {spec.name!r} needs the {extra!r} extra; run pip install 'victor-fleet[{extra}]'"
    )


def _requirement_missing(spec: SkillSpec) -> bool:
    for module_name in spec.requires:
        try:
            if importlib.util.find_spec(module_name) is None:
                return True
        except ModuleNotFoundError:  # a dotted requirement whose parent is missing
            return True
    return False


def _import_implementation(spec: SkillSpec) -> SkillFunction:
    if _requirement_missing(spec):
        raise _missing_extra(spec)
    module_name, _, attribute = spec.implementation.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in {r.split(".")[0] for r in spec.requires}:
            raise _missing_extra(spec) from exc
        raise
    function = getattr(module, attribute, None)
    if not callable(function):
        raise SkillError(
            f"skill {spec.name!r}: {spec.implementation!r} does not name a callable; "
            "fix the implementation path in its SkillSpec"
        )
    return function  # type: ignore[no-any-return]


_default_registry: SkillRegistry | None = None
_default_lock = threading.Lock()


def load_registry() -> SkillRegistry:
    """The process-wide registry built from installed entry points."""
    global _default_registry
    with _default_lock:
        if _default_registry is None:
            _default_registry = SkillRegistry.from_entry_points()
        return _default_registry

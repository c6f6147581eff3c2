"""Skill registry: declarations from the ``victor.skills`` entry point group, loaded lazily."""

from workers.skills.registry import SkillRegistry, load_registry
from workers.skills.spec import SkillContext, SkillSpec

__all__ = ["SkillContext", "SkillRegistry", "SkillSpec", "load_registry"]

"""``victor skills``: skills whose extra is missing are listed as unavailable."""

from __future__ import annotations

from pydantic import BaseModel

from orchestrator.cli.fleet import skill_rows
from workers.skills import SkillRegistry, SkillSpec


class ProbeInput(BaseModel):
    text: str = ""


def spec(name: str, **fields: object) -> SkillSpec:
    return SkillSpec(
        name=name,
        description=f"{name} probe",
        input_model=ProbeInput,
        implementation="victor_no_such_module:run",
        **fields,  # type: ignore[arg-type]
    )


def test_a_skill_whose_extra_is_missing_is_unavailable_and_names_the_extra() -> None:
    registry = SkillRegistry(
        [spec("embed", extra="embed", requires=("victor_missing_dep",)), spec("plain")]
    )
    rows = {row["name"]: row for row in skill_rows(registry)}
    assert rows["embed"]["available"] is False
    assert rows["embed"]["extra"] == "embed"
    assert rows["embed"]["install"] == "'victor-fleet[embed]'"
    assert rows["plain"]["available"] is True
    assert "extra" not in rows["plain"]


def test_missing_extra_imports_nothing_and_defaults_to_the_skill_name() -> None:
    registry = SkillRegistry([spec("vectors", requires=("victor_missing_dep.sub",))])
    assert registry.missing_extra("vectors") == "vectors"
    assert not registry.is_loaded("vectors")


def test_installed_skills_are_available() -> None:
    registry = SkillRegistry([spec("json_user", extra="x", requires=("json",))])
    assert registry.missing_extra("json_user") is None

"""The analyze report per language, duplicates, counted-only languages, and its SARIF form."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from orchestrator.cli.sarif import sarif_log
from tasks.analyze import analyze_text
from tasks.catalog import ReportInput
from tasks.report import COMPLEXITY_THRESHOLD, SCHEMA_VERSION, report
from workers.core.settings import Settings
from workers.skills.spec import SkillContext

pytest.importorskip("tree_sitter_language_pack")

GO = (
    "package p\n\n// F branches.\nfunc F(a int) int {\n"
    + "".join(f"\tif a == {value} {{\n\t\treturn {value}\n\t}}\n" for value in range(12))
    + "\treturn 0\n}\n"
)
RUST = "fn small() {}\n/* a /* nested */ comment */\nfn other(x: i32) -> i32 { x }\n"


def analyzed(root: Path) -> list[dict[str, Any]]:
    files = {
        "a.go": GO,
        "copy_of_a.go": GO,
        "lib.rs": RUST,
        "q.sql": "-- c\nselect 1;\n",
    }
    values = []
    for name, text in files.items():
        digest = hashlib.sha256(text.encode()).hexdigest()
        values.append({"ok": True, "value": analyze_text(text, name, str(root / name), digest)})
    return values


def build(root: Path) -> dict[str, Any]:
    context = SkillContext(settings=Settings(allowed_roots=[root]))
    return report(ReportInput(results=[analyzed(root)], top=5), context)


def test_report_has_a_row_per_language_with_average_and_worst_complexity(tmp_path: Path) -> None:
    result = build(tmp_path)
    assert result["schema_version"] == SCHEMA_VERSION
    go = result["by_language"]["go"]
    assert (go["files"], go["functions"], go["worst_complexity"]) == (2, 2, 13)
    assert go["average_complexity"] == 13
    rust = result["by_language"]["rust"]
    assert (rust["files"], rust["code"], rust["comment"], rust["functions"]) == (1, 2, 1, 2)
    assert rust["average_complexity"] == 1


def test_languages_without_a_parser_are_named_as_only_counted(tmp_path: Path) -> None:
    result = build(tmp_path)
    assert result["counted_only"] == ["sql"]
    assert result["by_language"]["sql"]["counted_only"] is True
    assert result["by_language"]["sql"]["average_complexity"] is None


def test_files_with_the_same_content_are_listed_as_duplicates(tmp_path: Path) -> None:
    result = build(tmp_path)
    assert result["duplicate_count"] == 1
    [duplicate] = result["duplicate_files"]
    assert duplicate["paths"] == [str(tmp_path / "a.go"), str(tmp_path / "copy_of_a.go")]


def test_hot_spots_span_languages_and_findings_pass_the_threshold(tmp_path: Path) -> None:
    result = build(tmp_path)
    assert {row["language"] for row in result["most_complex"]} == {"go", "rust"}
    assert [row["complexity"] for row in result["complexity_findings"]] == [13, 13]
    assert all(row["complexity"] > COMPLEXITY_THRESHOLD for row in result["complexity_findings"])


def test_sarif_log_has_one_result_per_finding_with_its_region(tmp_path: Path) -> None:
    log = sarif_log(build(tmp_path), base=tmp_path)
    assert log["version"] == "2.1.0"
    [run] = log["runs"]
    assert [rule["id"] for rule in run["tool"]["driver"]["rules"]] == [
        "victor/cyclomatic-complexity"
    ]
    first = run["results"][0]
    location = first["locations"][0]["physicalLocation"]
    assert location["artifactLocation"] == {"uri": "a.go", "uriBaseId": "SRCROOT"}
    assert location["region"] == {"startLine": 4, "endLine": 4 + 12 * 3 + 2}
    assert first["level"] == "warning"
    assert len(run["results"]) == 2

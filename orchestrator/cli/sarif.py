"""The analyze report's complexity findings as a SARIF 2.1.0 log, for code-scanning tools."""

from __future__ import annotations

from pathlib import Path
from typing import Any

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
RULE_ID = "victor/cyclomatic-complexity"
# Above the report's threshold a finding is a warning; at twice the threshold, an error.
ERROR_FACTOR = 2


def sarif_log(report: dict[str, Any], base: Path | None = None) -> dict[str, Any]:
    """One run, one rule, one result per function over the report's complexity threshold."""
    threshold = int(report.get("complexity_threshold", 10))
    results = [
        {
            "ruleId": RULE_ID,
            "level": "error" if row["complexity"] >= ERROR_FACTOR * threshold else "warning",
            "message": {
                "text": f"{row['function']} has cyclomatic complexity {row['complexity']} "
                f"(threshold {threshold})"
            },
            "locations": [
                {
                    "physicalLocation": {
                        "artifactLocation": _artifact(row["path"], base),
                        "region": {
                            "startLine": row["line"],
                            "endLine": max(row.get("end_line", row["line"]), row["line"]),
                        },
                    },
                    "logicalLocations": [{"name": row["function"], "kind": "function"}],
                }
            ],
            "properties": {"complexity": row["complexity"], "language": row.get("language")},
        }
        for row in report.get("complexity_findings", [])
    ]
    run: dict[str, Any] = {
        "tool": {
            "driver": {
                "name": "victor analyze",
                "informationUri": "https://example.invalid/victor-fleet",
                "rules": [
                    {
                        "id": RULE_ID,
                        "name": "CyclomaticComplexity",
                        "shortDescription": {"text": "Function is too complex"},
                        "fullDescription": {
                            "text": "Cyclomatic complexity counted on the syntax tree: one "
                            "plus each branch, loop, case, catch and boolean operator."
                        },
                        "defaultConfiguration": {"level": "warning"},
                        "properties": {"threshold": threshold},
                    }
                ],
            }
        },
        "results": results,
    }
    if base is not None:
        run["originalUriBaseIds"] = {"SRCROOT": {"uri": base.resolve().as_uri() + "/"}}
    return {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}


def _artifact(path: str, base: Path | None) -> dict[str, str]:
    if base is not None and Path(path).is_relative_to(base):
        return {"uri": Path(path).relative_to(base).as_posix(), "uriBaseId": "SRCROOT"}
    return {"uri": Path(path).as_posix()}

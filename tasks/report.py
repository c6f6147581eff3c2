"""report: the reduce step of ``victor analyze``, and of searches (matches by file).

The analyze report's shape is versioned by ``SCHEMA_VERSION`` (documented in the README's
analyze section): bump it when a field changes meaning or goes away, not when one is added.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

from tasks.catalog import ReportInput
from workers.skills.spec import SkillContext

SCHEMA_VERSION = 2
# Functions above this complexity are findings (``complexity_findings``, SARIF results).
COMPLEXITY_THRESHOLD = 10
MAX_FINDINGS = 1000


def iter_outcomes(results: Iterable[Any]) -> Iterator[dict[str, Any]]:
    """Flatten batch outputs (lists of ``{"ok", "value"|"error"}``) and bare results."""
    for item in results:
        if isinstance(item, list):
            yield from iter_outcomes(item)
        elif isinstance(item, dict) and "ok" in item:
            yield item
        elif isinstance(item, dict):
            yield {"ok": True, "value": item}


def report(params: ReportInput, context: SkillContext) -> dict[str, Any]:
    """Totals, languages, largest files, most complex functions and TODO/FIXME counts.

    ``search_code`` results are reported as matches: their count, and by file (most matches
    first) with the line numbers and the first lines matched.
    """
    totals = Counter[str]()
    languages = Counter[str]()
    largest: list[tuple[int, str]] = []
    complex_functions: list[tuple[int, str, str, int, str]] = []
    errors: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    truncated: list[dict[str, Any]] = []
    searched: list[tuple[int, str, list[list[Any]]]] = []
    by_language: dict[str, Counter[str]] = {}
    counted_only: set[str] = set()
    hashes: dict[str, list[str]] = {}
    generated: list[str] = []
    findings: list[dict[str, Any]] = []
    parse_errors = 0
    top = params.top
    for outcome in iter_outcomes(params.results):
        if not outcome.get("ok"):
            errors.append({"error": outcome.get("error"), "item": outcome.get("item")})
            continue
        totals["items"] += 1
        value = outcome.get("value")
        if not isinstance(value, dict) or "path" not in value:
            continue
        path = str(value["path"])
        if isinstance(value.get("matches"), list):
            totals["searched_files"] += 1
            totals["matches"] += len(value["matches"])
            if value["matches"]:
                heapq.heappush(searched, (len(value["matches"]), path, value["matches"]))
                if len(searched) > top:
                    heapq.heappop(searched)
            continue
        if value.get("binary"):
            totals["binary"] += 1
            skipped.append({"path": path, "reason": "binary"})
            continue
        if value.get("truncated"):
            truncated.append(
                {
                    "path": path,
                    "size_bytes": value.get("size_bytes"),
                    "analyzed_bytes": value.get("analyzed_bytes"),
                }
            )
        totals["files"] += 1
        for field in ("lines", "code", "comment", "blank", "docstring", "todos", "classes"):
            totals[field] += int(value.get(field, 0))
        functions = value.get("functions") or []
        totals["functions"] += len(functions)
        language = str(value.get("language", "other"))
        languages[language] += 1
        complexities = [int(function[2]) for function in functions]
        _add_language(by_language.setdefault(language, Counter()), value, complexities)
        if value.get("parser") == "lines":
            counted_only.add(language)
        if value.get("sha256") and int(value.get("lines", 0)):
            hashes.setdefault(str(value["sha256"]), []).append(path)
        if value.get("generated"):
            generated.append(path)
        parse_errors += "parse_error" in value
        _keep_top(largest, (int(value.get("code", 0)), path), top)
        for function, complexity in zip(functions, complexities, strict=True):
            # Below the smallest of a full top-N it cannot enter: skip building its row.
            if len(complex_functions) < top or complexity >= complex_functions[0][0]:
                row = (complexity, path, str(function[0]), int(function[1]), language)
                _keep_top(complex_functions, row, top)
            if complexity > COMPLEXITY_THRESHOLD:
                totals["complexity_findings"] += 1
                if len(findings) < MAX_FINDINGS:
                    findings.append(_finding(function, path, language))
    if totals["searched_files"] and not totals["files"]:  # a search report only
        return {
            "totals": dict(totals),
            "matches_by_file": _matches_by_file(searched),
            "errors": errors[:top],
            "error_count": len(errors),
        }
    search = {"matches_by_file": _matches_by_file(searched)} if totals["searched_files"] else {}
    duplicates = sorted(
        ({"sha256": digest, "paths": sorted(paths)} for digest, paths in hashes.items()),
        key=lambda row: (-len(row["paths"]), row["paths"][0]),
    )
    duplicates = [row for row in duplicates if len(row["paths"]) > 1]
    return {
        "schema_version": SCHEMA_VERSION,
        **search,
        "totals": dict(totals),
        "languages": dict(languages.most_common()),
        "by_language": {
            name: _language_row(by_language[name], name in counted_only)
            for name, _ in languages.most_common()
        },
        "counted_only": sorted(counted_only),
        "duplicate_files": duplicates[:top],
        "duplicate_count": sum(len(row["paths"]) - 1 for row in duplicates),
        "generated_files": sorted(generated)[:top],
        "generated_count": len(generated),
        "largest_files": [
            {"path": path, "code": code} for code, path in sorted(largest, reverse=True)
        ],
        "most_complex": [
            {
                "path": path,
                "function": name,
                "line": line,
                "complexity": complexity,
                "language": language,
            }
            for complexity, path, name, line, language in sorted(complex_functions, reverse=True)
        ],
        "complexity_threshold": COMPLEXITY_THRESHOLD,
        "complexity_findings": sorted(findings, key=lambda row: (-row["complexity"], row["path"])),
        "parse_errors": parse_errors,
        "skipped_files": skipped[:top],
        "skipped_count": len(skipped),
        "truncated_files": truncated[:top],
        "truncated_count": len(truncated),
        "errors": errors[:top],
        "error_count": len(errors),
    }


def _finding(function: list[Any], path: str, language: str) -> dict[str, Any]:
    end_line = int(function[3]) if len(function) > 3 else int(function[1])
    return {
        "path": path,
        "function": str(function[0]),
        "line": int(function[1]),
        "end_line": end_line,
        "complexity": int(function[2]),
        "language": language,
    }


def _add_language(row: Counter[str], value: dict[str, Any], complexities: list[int]) -> None:
    row["files"] += 1
    for field in ("code", "comment", "blank", "docstring"):
        row[field] += int(value.get(field, 0))
    row["functions"] += len(complexities)
    if complexities:
        row["complexity_sum"] += sum(complexities)
        row["worst_complexity"] = max(row["worst_complexity"], max(complexities))


def _language_row(row: Counter[str], counted_only: bool) -> dict[str, Any]:
    """One language's totals, with average and worst complexity over its functions."""
    functions = row["functions"]
    return {
        **{
            field: row[field]
            for field in ("files", "code", "comment", "blank", "docstring", "functions")
        },
        "average_complexity": round(row["complexity_sum"] / functions, 2) if functions else None,
        "worst_complexity": row["worst_complexity"] if functions else None,
        "counted_only": counted_only,
    }


SHOWN_MATCH_LINES = 5


def _keep_top(heap: list[Any], row: Any, top: int) -> None:
    """Keep the ``top`` largest rows in the min-heap ``heap``.

    Once the heap is full, a row below its smallest (most functions, most files) costs one
    comparison, not a push and a pop.
    """
    if len(heap) < top:
        heapq.heappush(heap, row)
    else:
        heapq.heappushpop(heap, row)


def _matches_by_file(searched: list[tuple[int, str, list[list[Any]]]]) -> list[dict[str, Any]]:
    """Files with the most matches first: the line numbers, and the first lines matched."""
    return [
        {
            "path": path,
            "count": count,
            "lines": [int(match[0]) for match in matches],
            "first": [{"line": int(line), "text": str(text)} for line, text in matches][
                :SHOWN_MATCH_LINES
            ],
        }
        for count, path, matches in sorted(searched, key=lambda row: (-row[0], row[1]))
    ]

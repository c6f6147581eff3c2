"""report: the reduce step of ``victor analyze``, and of searches (matches by file)."""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

from tasks.catalog import ReportInput
from workers.skills.spec import SkillContext


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
    complex_functions: list[tuple[int, str, str, int]] = []
    errors: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    truncated: list[dict[str, Any]] = []
    searched: list[tuple[int, str, list[list[Any]]]] = []
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
        languages[str(value.get("language", "other"))] += 1
        parse_errors += "parse_error" in value
        heapq.heappush(largest, (int(value.get("code", 0)), path))
        if len(largest) > top:
            heapq.heappop(largest)
        for name, line, complexity in functions:
            heapq.heappush(complex_functions, (int(complexity), path, str(name), int(line)))
            if len(complex_functions) > top:
                heapq.heappop(complex_functions)
    if totals["searched_files"] and not totals["files"]:  # a search report only
        return {
            "totals": dict(totals),
            "matches_by_file": _matches_by_file(searched),
            "errors": errors[:top],
            "error_count": len(errors),
        }
    search = {"matches_by_file": _matches_by_file(searched)} if totals["searched_files"] else {}
    return {
        **search,
        "totals": dict(totals),
        "languages": dict(languages.most_common()),
        "largest_files": [
            {"path": path, "code": code} for code, path in sorted(largest, reverse=True)
        ],
        "most_complex": [
            {"path": path, "function": name, "line": line, "complexity": complexity}
            for complexity, path, name, line in sorted(complex_functions, reverse=True)
        ],
        "parse_errors": parse_errors,
        "skipped_files": skipped[:top],
        "skipped_count": len(skipped),
        "truncated_files": truncated[:top],
        "truncated_count": len(truncated),
        "errors": errors[:top],
        "error_count": len(errors),
    }


SHOWN_MATCH_LINES = 5


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

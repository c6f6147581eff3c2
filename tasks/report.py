"""report: the reduce step of ``victor analyze``."""

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
    """Totals, languages, largest files, most complex functions and TODO/FIXME counts."""
    totals = Counter[str]()
    languages = Counter[str]()
    largest: list[tuple[int, str]] = []
    complex_functions: list[tuple[int, str, str, int]] = []
    errors: list[dict[str, Any]] = []
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
    return {
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
        "errors": errors[:top],
        "error_count": len(errors),
    }

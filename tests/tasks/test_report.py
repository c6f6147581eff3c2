"""report: the reduce step of analyze (totals, top lists, errors)."""

from __future__ import annotations

from typing import Any

from tasks.analyze import analyze_text
from tasks.catalog import ReportInput
from tasks.report import iter_outcomes, report
from workers.skills.spec import SkillContext


def analysis(path: str, code: int, functions: list[list[Any]], **extra: Any) -> dict[str, Any]:
    value = {
        "path": path,
        "language": "python",
        "lines": code + 2,
        "code": code,
        "comment": 1,
        "blank": 1,
        "docstring": 0,
        "todos": 0,
        "classes": 0,
        "functions": functions,
    }
    value.update(extra)
    return value


def ok(value: Any) -> dict[str, Any]:
    return {"ok": True, "value": value}


def run(results: list[Any], context: SkillContext, top: int = 10) -> dict[str, Any]:
    return report(ReportInput(results=results, top=top), context)


def test_totals_add_up_over_batches(context: SkillContext) -> None:
    batches = [
        [ok(analysis("a.py", 10, [["f", 1, 3]], todos=2, classes=1))],
        [ok(analysis("b.py", 20, [["g", 1, 1], ["h", 5, 7]]))],
    ]
    result = run(batches, context)
    totals = result["totals"]
    assert totals["files"] == 2
    assert totals["items"] == 2
    assert totals["code"] == 30
    assert totals["lines"] == 34
    assert totals["comment"] == 2
    assert totals["functions"] == 3
    assert totals["classes"] == 1
    assert totals["todos"] == 2
    assert result["languages"] == {"python": 2}
    assert result["error_count"] == 0


def test_top_lists_are_ordered_and_limited(context: SkillContext) -> None:
    batch = [
        ok(analysis(f"f{index}.py", index * 10, [[f"fn{index}", index, index]]))
        for index in range(1, 8)
    ]
    result = run([batch], context, top=3)
    assert [row["path"] for row in result["largest_files"]] == ["f7.py", "f6.py", "f5.py"]
    assert [row["code"] for row in result["largest_files"]] == [70, 60, 50]
    assert result["most_complex"] == [
        {"path": "f7.py", "function": "fn7", "line": 7, "complexity": 7, "language": "python"},
        {"path": "f6.py", "function": "fn6", "line": 6, "complexity": 6, "language": "python"},
        {"path": "f5.py", "function": "fn5", "line": 5, "complexity": 5, "language": "python"},
    ]


def test_errors_are_counted_and_listed(context: SkillContext) -> None:
    failures = [
        {
            "ok": False,
            "error": f"denied {index}",
            "type": "AccessDeniedError",
            "item": {"path": f"../x{index}"},
        }
        for index in range(5)
    ]
    result = run([[ok(analysis("a.py", 1, [])), *failures]], context, top=2)
    assert result["error_count"] == 5
    assert len(result["errors"]) == 2
    assert result["errors"][0] == {"error": "denied 0", "item": {"path": "../x0"}}
    assert result["totals"]["files"] == 1


def test_parse_errors_and_languages_are_counted(context: SkillContext) -> None:
    results = [
        ok(analyze_text("def f(:\n", "bad.py", "bad.py")),
        ok(analyze_text("// c\nint x;\n", "a.c", "a.c")),
        ok(analyze_text("x = 1\n", "ok.py", "ok.py")),
    ]
    result = run(results, context)
    assert result["parse_errors"] == 1
    assert result["languages"] == {"python": 2, "c": 1}


def test_values_without_a_path_count_as_items_not_files(context: SkillContext) -> None:
    result = run([[ok(3), ok({"something": "else"})]], context)
    assert result["totals"] == {"items": 2}
    assert result["largest_files"] == []


def test_bare_results_and_nested_batches_are_flattened() -> None:
    bare = analysis("a.py", 1, [])
    outcomes = list(iter_outcomes([bare, [[ok(2)], {"ok": False, "error": "x"}]]))
    assert outcomes == [ok(bare), ok(2), {"ok": False, "error": "x"}]


def test_empty_report(context: SkillContext) -> None:
    result = run([], context)
    assert result["totals"] == {}
    assert (result["largest_files"], result["most_complex"], result["error_count"]) == ([], [], 0)

"""analyze_code: line metrics, functions, classes and complexity; agreement with radon."""

from __future__ import annotations

import hashlib
import importlib
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from radon.complexity import cc_visit
from radon.raw import analyze as radon_raw
from radon.visitors import Function

from tasks.analyze import analyze_code, analyze_text
from tasks.catalog import AnalyzeCodeInput
from workers.core.errors import AccessDeniedError
from workers.skills.spec import SkillContext

SAMPLE = '''\
"""Module docstring."""

import os  # trailing comment


# a comment line
def f(x):
    """Doc."""
    if x and os.sep:
        return 1
    for i in range(3):
        pass
    else:
        pass
    return [y for y in range(x) if y]


class A:
    """Class doc
    on two lines."""

    def m(self):
        try:
            pass
        except ValueError:
            pass
        except KeyError:
            pass
        return 1 if self else 2

    async def n(self):
        def inner():
            while True:
                break
        return inner


value = (
    1,
    2,
)
# TODO: one FIXME two, todo not, TODOS not
'''


def test_python_line_metrics() -> None:
    result = analyze_text(SAMPLE, "sample.py", "sample.py")
    assert result["language"] == "python"
    assert result["lines"] == 42
    assert result["code"] == 27  # a trailing comment leaves its line code
    assert result["comment"] == 2
    assert result["docstring"] == 4  # module, function, and a two-line class docstring
    assert result["blank"] == 9
    assert result["lines"] == sum(result[k] for k in ("code", "comment", "docstring", "blank"))


def test_python_functions_classes_and_complexity() -> None:
    result = analyze_text(SAMPLE, "sample.py", "sample.py")
    assert result["classes"] == 1
    # [name, line, complexity, end line, parameters]
    assert [row[:3] for row in result["functions"]] == [
        ["f", 7, 7],  # if, and, for, for-else, comprehension, comprehension if
        ["A.m", 22, 4],  # two excepts, a ternary
        ["A.n", 31, 1],  # the nested function's loop is not n's
        ["A.n.inner", 32, 2],
    ]


@pytest.mark.parametrize(
    ("source", "complexity"),
    [
        ("def f():\n    return 1\n", 1),
        ("def f(a, b, c):\n    return a and b or c\n", 3),
        ("def f(x):\n    while x:\n        x -= 1\n    else:\n        pass\n", 3),
        ("def f(x):\n    assert x\n", 2),
        (
            "def f(x):\n    try:\n        pass\n    except E:\n        pass\n    else:\n"
            "        pass\n",
            3,
        ),
        (
            "def f(x):\n    match x:\n        case 1:\n            pass\n        case 2:\n"
            "            pass\n        case _:\n            pass\n",
            3,
        ),
        ("def f(x):\n    return {k: v for k in x for v in k if v if k}\n", 5),
        ("def f(x):\n    g = lambda y: y if y else 0\n    return g\n", 2),  # lambdas count
    ],
)
def test_cyclomatic_complexity_decision_points(source: str, complexity: int) -> None:
    [(name, line, found, *_)] = analyze_text(source, "m.py", "m.py")["functions"]
    assert (name, line, found) == ("f", 1, complexity)
    [block] = [b for b in cc_visit(source) if isinstance(b, Function)]
    assert block.complexity == complexity, "radon disagrees with the expected value"


def test_nested_classes_are_counted_and_scoped() -> None:
    source = textwrap.dedent(
        """
        class Outer:
            class Inner:
                def method(self):
                    pass

        def factory():
            class Local:
                pass
            return Local
        """
    )
    result = analyze_text(source, "m.py", "m.py")
    assert result["classes"] == 3
    names = [name for name, *_ in result["functions"]]
    assert names == ["Outer.Inner.method", "factory"]


def test_javascript_line_metrics_by_extension() -> None:
    source = textwrap.dedent(
        """\
        // header comment
        /* block
           comment */
        function f(x) {
          return x; // trailing
        }

        /* one-line block */
        const y = 2;
        """
    )
    result = analyze_text(source, "app.js", "app.js")
    assert result["language"] == "javascript"
    assert (result["lines"], result["code"], result["comment"], result["blank"]) == (9, 4, 4, 1)
    assert [row[0] for row in result["functions"]] == ["f"]


@pytest.mark.parametrize(
    ("filename", "language", "source", "counts"),
    [
        ("lib.rs", "rust", "// c\nfn main() {}\n\n", (3, 1, 1, 1)),
        ("q.sql", "sql", "-- c\nSELECT 1;\n/* a\nb */\n", (4, 1, 3, 0)),
        ("run.sh", "shell", "#!/bin/sh\necho hi\n# c\n", (3, 1, 2, 0)),
        ("conf.ini", "ini", "; c\n# c\nkey = 1\n", (3, 1, 2, 0)),
        ("page.html", "html", "<!-- a\nb -->\n<p>x</p>\n", (3, 1, 2, 0)),
        ("Makefile", "make", "all:\n\t# c\n\techo hi\n", (3, 2, 1, 0)),
        ("Dockerfile", "dockerfile", "# c\nFROM python\n", (2, 1, 1, 0)),
        ("data.weird", "weird", "foo\n\n# not a comment here\n", (3, 2, 0, 1)),
        ("README", "other", "text\n", (1, 1, 0, 0)),
        ("MAIN.C", "c", "/* c */\nint x;\n", (2, 1, 1, 0)),
    ],
)
def test_line_metrics_follow_the_extension(
    filename: str, language: str, source: str, counts: tuple[int, int, int, int]
) -> None:
    result = analyze_text(source, filename, filename)
    assert result["language"] == language
    assert (result["lines"], result["code"], result["comment"], result["blank"]) == counts


def test_python_that_does_not_parse_still_gets_line_metrics() -> None:
    result = analyze_text("def f(:\n    pass\n# c\n", "bad.py", "bad.py")
    assert "parse_error" in result
    assert (result["lines"], result["code"], result["comment"]) == (3, 2, 1)
    assert result["functions"] == []


def test_todo_and_fixme_are_counted_as_whole_words() -> None:
    source = "# TODO: a\n# FIXME b\nx = 'TODO'  # todo lower, TODOS, XFIXME not counted\n"
    assert analyze_text(source, "m.py", "m.py")["todos"] == 3


def test_docstring_with_a_trailing_comment_is_still_a_docstring() -> None:
    # radon counts such a string as code (its one known disagreement with us on line counts,
    # seen in redis-py's command modules, whose docstrings end in a noqa comment).
    source = 'def f():\n    """Doc\n    more."""  # keep\n    return 1\n'
    result = analyze_text(source, "m.py", "m.py")
    assert (result["code"], result["docstring"]) == (2, 2)
    assert radon_raw(source).sloc == 4


def test_empty_file() -> None:
    result = analyze_text("", "empty.py", "empty.py")
    assert (result["lines"], result["code"], result["functions"]) == (0, 0, [])


# --- the skill: files inside the allowed roots ----------------------------------------------


def test_analyze_code_reads_a_file_inside_the_root(root: Path, context: SkillContext) -> None:
    path = root / "pkg" / "sample.py"
    path.parent.mkdir()
    path.write_text(SAMPLE)
    result = analyze_code(AnalyzeCodeInput(path="pkg/sample.py"), context)
    assert result["path"] == str(path)
    assert result["sha256"] == hashlib.sha256(SAMPLE.encode()).hexdigest()
    assert result["code"] == 27
    assert len(result["functions"]) == 4


def test_analyze_code_refuses_paths_outside_the_root(
    root: Path, tmp_path: Path, context: SkillContext
) -> None:
    (tmp_path / "secret.py").write_text("x = 1\n")
    with pytest.raises(AccessDeniedError):
        analyze_code(AnalyzeCodeInput(path="../secret.py"), context)
    (root / "link.py").symlink_to(tmp_path / "secret.py")
    with pytest.raises(AccessDeniedError):
        analyze_code(AnalyzeCodeInput(path="link.py"), context)


def test_analyze_code_refuses_a_directory(root: Path, context: SkillContext) -> None:
    (root / "pkg").mkdir()
    with pytest.raises(AccessDeniedError, match="not a regular file"):
        analyze_code(AnalyzeCodeInput(path="pkg"), context)


def test_analyze_code_reads_at_most_max_file_bytes(root: Path, context_for) -> None:  # type: ignore[no-untyped-def]
    (root / "big.txt").write_text("line\n" * 1000)
    context = context_for(allowed_roots=[root], max_file_bytes=50)
    assert analyze_code(AnalyzeCodeInput(path="big.txt"), context)["lines"] == 10


def test_analyze_code_survives_undecodable_bytes(root: Path, context: SkillContext) -> None:
    (root / "latin.py").write_bytes(b"x = '\xe9t\xe9'\n")
    result = analyze_code(AnalyzeCodeInput(path="latin.py"), context)
    assert result["code"] == 1


# --- agreement with radon on installed third-party code -------------------------------------


@dataclass
class Agreement:
    """Per-file and per-function agreement of analyze_code with radon."""

    files: int = 0
    code_equal: int = 0
    function_count_equal: int = 0
    complexities: int = 0
    complexity_equal: int = 0
    disagreements: list[str] = field(default_factory=list)


def radon_functions(blocks: list[object]) -> list[Function]:
    """radon's functions and methods with their nested functions (classes left out)."""
    found: list[Function] = []
    for block in blocks:
        if isinstance(block, Function):
            found.append(block)
            found.extend(radon_functions(list(block.closures)))
    return found


def compare_with_radon(files: list[Path]) -> Agreement:
    agreement = Agreement()
    for path in files:
        text = path.read_text(encoding="utf-8")
        try:
            radon_code = radon_raw(text).sloc
            radon_blocks = cc_visit(text)
        except SyntaxError:
            continue
        ours = analyze_text(text, path.name, str(path))
        agreement.files += 1
        if ours["code"] == radon_code:
            agreement.code_equal += 1
        else:
            agreement.disagreements.append(f"{path}: code {ours['code']} vs sloc {radon_code}")
        theirs = radon_functions(radon_blocks)
        if len(ours["functions"]) == len(theirs):
            agreement.function_count_equal += 1
        by_line: dict[int, list[int]] = {}
        for function in theirs:
            by_line.setdefault(function.lineno, []).append(function.complexity)
        for name, line, complexity, *_ in ours["functions"]:
            if len(by_line.get(line, [])) != 1:
                continue  # not matched one to one (for example two lambdas' hosts on a line)
            agreement.complexities += 1
            if by_line[line][0] == complexity:
                agreement.complexity_equal += 1
            else:
                agreement.disagreements.append(f"{path}:{line} {name} {complexity} vs {by_line}")
    return agreement


def package_files(name: str) -> list[Path]:
    module = importlib.import_module(name)
    assert module.__file__ is not None
    return sorted(Path(module.__file__).parent.rglob("*.py"))


def assert_agrees(agreement: Agreement, min_files: int) -> None:
    assert agreement.files >= min_files
    assert agreement.code_equal / agreement.files >= 0.98, agreement.disagreements[:20]
    assert agreement.function_count_equal / agreement.files >= 0.95, agreement
    assert agreement.complexities >= 5 * agreement.files // 2
    assert agreement.complexity_equal / agreement.complexities >= 0.98, agreement.disagreements[:20]


def test_agrees_with_radon_on_installed_packages() -> None:
    # Every other file of celery and kombu (the installed versions): about 130 files.
    sample = package_files("celery")[::2] + package_files("kombu")[::2]
    assert_agrees(compare_with_radon(sample), min_files=100)


@pytest.mark.soak
@pytest.mark.parametrize("package", ["celery", "kombu", "httpx", "pydantic", "typer"])
def test_agrees_with_radon_on_every_file_of(package: str) -> None:
    assert_agrees(compare_with_radon(package_files(package)), min_files=20)

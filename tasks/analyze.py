"""analyze_code: line metrics for any source file; functions and complexity for Python."""

from __future__ import annotations

import ast
import hashlib
import io
import re
import tokenize
from pathlib import Path
from typing import Any

from tasks.catalog import AnalyzeCodeInput
from workers.core.errors import AccessDeniedError
from workers.core.paths import confine
from workers.skills.spec import SkillContext

TODO_PATTERN = re.compile(r"\b(TODO|FIXME)\b")

# Comment syntax by extension: (line comment prefixes, block comment (open, close) or None).
_C_LIKE = (("//",), ("/*", "*/"))
_HASH = (("#",), None)
LANGUAGES: dict[str, tuple[str, tuple[tuple[str, ...], tuple[str, str] | None]]] = {
    ".py": ("python", _HASH),
    ".pyi": ("python", _HASH),
    ".js": ("javascript", _C_LIKE),
    ".jsx": ("javascript", _C_LIKE),
    ".mjs": ("javascript", _C_LIKE),
    ".ts": ("typescript", _C_LIKE),
    ".tsx": ("typescript", _C_LIKE),
    ".c": ("c", _C_LIKE),
    ".h": ("c", _C_LIKE),
    ".cc": ("cpp", _C_LIKE),
    ".cpp": ("cpp", _C_LIKE),
    ".hpp": ("cpp", _C_LIKE),
    ".go": ("go", _C_LIKE),
    ".rs": ("rust", _C_LIKE),
    ".java": ("java", _C_LIKE),
    ".kt": ("kotlin", _C_LIKE),
    ".swift": ("swift", _C_LIKE),
    ".cs": ("csharp", _C_LIKE),
    ".css": ("css", (("//",), ("/*", "*/"))),
    ".sh": ("shell", _HASH),
    ".bash": ("shell", _HASH),
    ".rb": ("ruby", _HASH),
    ".pl": ("perl", _HASH),
    ".r": ("r", _HASH),
    ".yml": ("yaml", _HASH),
    ".yaml": ("yaml", _HASH),
    ".toml": ("toml", _HASH),
    ".cfg": ("ini", (("#", ";"), None)),
    ".ini": ("ini", (("#", ";"), None)),
    ".sql": ("sql", (("--",), ("/*", "*/"))),
    ".lua": ("lua", (("--",), None)),
    ".md": ("markdown", ((), ("<!--", "-->"))),
    ".html": ("html", ((), ("<!--", "-->"))),
    ".xml": ("xml", ((), ("<!--", "-->"))),
    ".json": ("json", ((), None)),
    ".txt": ("text", ((), None)),
}
_SPECIAL_NAMES = {"Makefile": (".sh", "make"), "Dockerfile": (".sh", "dockerfile")}


def analyze_code(params: AnalyzeCodeInput, context: SkillContext) -> dict[str, Any]:
    """Measure one file; Python files get functions, classes and cyclomatic complexity."""
    path = confine(params.path, context.settings.allowed_roots)
    if not path.is_file():
        raise AccessDeniedError(f"path {params.path!r} is not a regular file")
    limit = context.settings.max_file_bytes
    with path.open("rb") as handle:
        data = handle.read(limit)
        size_bytes = len(data) + len(handle.read(1))  # one byte past the limit tells a cut
    digest = hashlib.sha256(data).hexdigest()
    if is_binary(data):
        return {"path": str(path), "language": "binary", "binary": True, "sha256": digest}
    result = analyze_text(data.decode("utf-8", errors="replace"), path.name, str(path), digest)
    if size_bytes > limit:
        result["truncated"] = True
        result["size_bytes"] = path.stat().st_size
        result["analyzed_bytes"] = limit
    return result


BINARY_SAMPLE_BYTES = 8192
_TEXT_CONTROLS = frozenset(b"\t\n\r\f\b\x1b")


def is_binary(data: bytes) -> bool:
    """True for content that is not text: a NUL byte or over 30% control bytes in its head.

    The same rule as git's and grep's: text files essentially never hold NUL bytes.
    """
    sample = data[:BINARY_SAMPLE_BYTES]
    if b"\0" in sample:
        return True
    if not sample:
        return False
    controls = sum(1 for byte in sample if byte < 32 and byte not in _TEXT_CONTROLS)
    return controls / len(sample) > 0.3


def analyze_text(text: str, filename: str, shown_path: str, digest: str = "") -> dict[str, Any]:
    """Analyze source text as if it came from ``filename``."""
    language, syntax = _language_of(filename)
    result: dict[str, Any] = {
        "path": shown_path,
        "language": language,
        "sha256": digest,
        "bytes": len(text.encode("utf-8", errors="replace")),
        "todos": len(TODO_PATTERN.findall(text)),
        "functions": [],
        "classes": 0,
    }
    if language == "python":
        try:
            result.update(python_line_metrics(text))
            tree = ast.parse(text)
        except (SyntaxError, tokenize.TokenError, ValueError) as exc:
            result.update(generic_line_metrics(text, _HASH))
            result["parse_error"] = f"{type(exc).__name__}: {exc}"
            return result
        functions, classes = python_functions(tree)
        result["functions"] = functions
        result["classes"] = classes
    else:
        result.update(generic_line_metrics(text, syntax))
    return result


def _language_of(
    filename: str,
) -> tuple[str, tuple[tuple[str, ...], tuple[str, str] | None]]:
    if filename in _SPECIAL_NAMES:
        extension, name = _SPECIAL_NAMES[filename]
        return name, LANGUAGES[extension][1]
    suffix = Path(filename).suffix.lower()
    if suffix in LANGUAGES:
        return LANGUAGES[suffix]
    return (suffix.lstrip(".") or "other"), ((), None)


def generic_line_metrics(
    text: str, syntax: tuple[tuple[str, ...], tuple[str, str] | None]
) -> dict[str, int]:
    """Count total, code, comment and blank lines from comment syntax alone."""
    prefixes, block = syntax
    code = comment = blank = 0
    in_block = False
    lines = text.splitlines()
    for raw in lines:
        line = raw.strip()
        if in_block:
            comment += 1
            if block and block[1] in line:
                in_block = False
            continue
        if not line:
            blank += 1
        elif prefixes and line.startswith(prefixes):
            comment += 1
        elif block and line.startswith(block[0]):
            comment += 1
            in_block = block[1] not in line[len(block[0]) :]
        else:
            code += 1
    return {"lines": len(lines), "code": code, "comment": comment, "blank": blank, "docstring": 0}


_SKIP = {tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER}


def python_line_metrics(text: str) -> dict[str, int]:
    """Count Python lines by token: code, comment-only, docstring (standalone strings), blank.

    A logical line made of a single string is a docstring; comment-only lines are comments;
    every other non-blank physical line of a logical line is code.
    """
    lines = text.splitlines()
    code_lines: set[int] = set()
    doc_lines: set[int] = set()
    comment_lines: set[int] = set()
    logical: list[tokenize.TokenInfo] = []
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type == tokenize.COMMENT:
            comment_lines.add(token.start[0])
            continue
        if token.type == tokenize.NEWLINE or token.type == tokenize.ENDMARKER:
            _classify(logical, lines, code_lines, doc_lines)
            logical = []
            continue
        if token.type in _SKIP:
            continue
        logical.append(token)
    _classify(logical, lines, code_lines, doc_lines)
    comment_only = comment_lines - code_lines - doc_lines
    blank = sum(
        1
        for number, line in enumerate(lines, start=1)
        if not line.strip() and number not in code_lines and number not in doc_lines
    )
    return {
        "lines": len(lines),
        "code": len(code_lines),
        "comment": len(comment_only),
        "docstring": len(doc_lines),
        "blank": blank,
    }


def _classify(
    tokens: list[tokenize.TokenInfo], lines: list[str], code: set[int], docs: set[int]
) -> None:
    if not tokens:
        return
    first, last = tokens[0].start[0], tokens[-1].end[0]
    target = docs if len(tokens) == 1 and tokens[0].type == tokenize.STRING else code
    for number in range(first, last + 1):
        if number - 1 < len(lines) and lines[number - 1].strip():
            target.add(number)


def python_functions(tree: ast.AST) -> tuple[list[list[Any]], int]:
    """Return ``[[qualified name, line, complexity], ...]`` and the number of classes."""
    functions: list[list[Any]] = []
    classes = 0

    def walk(node: ast.AST, scope: str) -> None:
        nonlocal classes
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = f"{scope}{child.name}"
                functions.append([name, child.lineno, cyclomatic_complexity(child)])
                walk(child, f"{name}.")
            elif isinstance(child, ast.ClassDef):
                classes += 1
                walk(child, f"{scope}{child.name}.")
            else:
                walk(child, scope)

    walk(tree, "")
    return functions, classes


def cyclomatic_complexity(function: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """McCabe complexity of one function body, nested functions and classes excluded.

    A lambda's decision points count toward the function that holds it (as radon counts them).

    Decision points: if/elif/ternary, loops (+1 for an ``else``), each ``except`` and a
    ``try``'s ``else``, each extra operand of ``and``/``or``, each comprehension ``for`` and
    ``if``, ``assert``, and each non-wildcard ``case``.
    """
    complexity = 1
    stack: list[ast.AST] = list(function.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        if isinstance(node, ast.If | ast.IfExp | ast.Assert):
            complexity += 1
        elif isinstance(node, ast.For | ast.AsyncFor | ast.While):
            complexity += 1 + bool(node.orelse)
        elif isinstance(node, ast.Try | ast.TryStar):
            complexity += len(node.handlers) + bool(node.orelse)
        elif isinstance(node, ast.BoolOp):
            complexity += len(node.values) - 1
        elif isinstance(node, ast.comprehension):
            complexity += 1 + len(node.ifs)
        elif isinstance(node, ast.Match):
            wildcard = any(
                isinstance(case.pattern, ast.MatchAs) and case.pattern.pattern is None
                for case in node.cases
            )
            complexity += max(0, len(node.cases) - wildcard)
        stack.extend(ast.iter_child_nodes(node))
    return complexity

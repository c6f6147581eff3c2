"""Code, comment and blank lines from comment spans, the way cloc counts them.

A line is blank when it holds only whitespace (even inside a block comment), a comment line
when everything else on it lies inside comments, and a code line otherwise (code with a
trailing comment is code). Spans come from the syntax tree, so comment markers inside strings
and nested block comments are already resolved.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tree_sitter import Node

# (start row, start column, end row, end column); columns are byte offsets, end exclusive.
Span = tuple[int, int, int, int]


def split_lines(source: bytes) -> list[bytes]:
    """Rows as tree-sitter numbers them: split on LF, no empty row after a final newline."""
    if not source:
        return []
    lines = source.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    return lines


def count_lines(lines: list[bytes], comment_spans: Iterable[Span]) -> dict[str, int]:
    """Count ``lines``, ``code``, ``comment``, ``blank`` (and ``docstring`` = 0)."""
    whole: set[int] = set()
    partial: dict[int, list[tuple[int, int]]] = {}
    last = len(lines) - 1
    for start_row, start_column, end_row, end_column in comment_spans:
        if start_row > last:
            continue
        end_row = min(end_row, last)
        if start_row == end_row:
            partial.setdefault(start_row, []).append((start_column, end_column))
            continue
        partial.setdefault(start_row, []).append((start_column, len(lines[start_row])))
        whole.update(range(start_row + 1, end_row))
        partial.setdefault(end_row, []).append((0, end_column))
    # Blank first (even inside a comment), then comment rows; every other row is code.
    blank = sum(1 for line in lines if not line.strip())
    comment = sum(1 for row in whole if lines[row].strip())
    for row, spans in partial.items():
        if row in whole:
            continue
        line = lines[row]
        if len(spans) == 1:  # the common case, without sorting
            start, end = spans[0]
            if line[end:].strip() or line[:start].strip() or not line.strip():
                continue
        elif not line.strip() or _code_outside(line, spans):
            continue
        comment += 1
    code = len(lines) - blank - comment
    return {"lines": len(lines), "code": code, "comment": comment, "blank": blank, "docstring": 0}


def _code_outside(line: bytes, spans: list[tuple[int, int]]) -> bool:
    """True when ``line`` has a non-space byte outside every span."""
    position = 0
    for start, end in sorted(spans):
        if line[position:start].strip():
            return True
        position = max(position, end)
    return bool(line[position:].strip())


def count_comment_lines(source: bytes, comments: Iterable[Node]) -> dict[str, int]:
    """``count_lines`` of ``source`` with the spans of the syntax tree's comment ``nodes``.

    The same counts, from bytes: with each comment cut out (its newlines kept, so rows stay
    rows), a row holding anything but whitespace is code; the other non-blank rows are
    comment rows. Slicing and splitting in C instead of a Python loop over every span.
    """
    lines = split_lines(source)
    pieces: list[bytes] = []
    position = 0
    # Captures come in document order; sorting an ordered list is one pass.
    for start, end in sorted((node.start_byte, node.end_byte) for node in comments):
        if start < position:  # nested in (or overlapping) a comment already cut out
            if end <= position:
                continue
            start = position
        pieces.append(source[position:start])
        newlines = source.count(b"\n", start, end)
        if newlines:
            pieces.append(b"\n" * newlines)
        position = end
    if not pieces:
        return count_lines(lines, ())
    pieces.append(source[position:])
    code_lines = split_lines(b"".join(pieces))
    blank = len(lines) - sum(map(bool, map(bytes.strip, lines)))
    code = sum(map(bool, map(bytes.strip, code_lines)))
    comment = len(lines) - blank - code
    return {"lines": len(lines), "code": code, "comment": comment, "blank": blank, "docstring": 0}

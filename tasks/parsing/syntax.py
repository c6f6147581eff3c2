"""Measure one source file from its tree-sitter syntax tree.

Functions (qualified name, first and last line, parameter count, cyclomatic complexity),
classes and types, and cloc-style line counts from the comment nodes. A decision belongs to
the innermost function around it, so a nested function's branches are its own; a lambda or
closure that the language's spec does not list as a function adds to the function holding it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from tasks.parsing.grammars import Grammar
from tasks.parsing.lines import count_comment_lines

if TYPE_CHECKING:
    from tree_sitter import Node, Range, Tree

# A generated data table: a bracketed run of at least 4 KiB holding only numbers (decimal or
# hex, with C's integer suffixes), commas and whitespace. It is left out of the parse: each
# number and comma is a node, so one table (a compressed dictionary, a font) can cost more
# than the rest of a code base, and none of it can be a function, a decision or a comment
# (those need letters, brackets or markers outside this set). Its lines are counted from the
# text, as every line is. (The pattern starts with the bracket so the regex engine can skip
# ahead to brackets: twice as fast as a lookbehind.)
DATA_TABLE = re.compile(rb"[{\[]([0-9a-fA-FxXuUlL,\s]{4096,})[}\]]")
DATA_TABLE_MIN_BYTES = 4096
# The regex's own scan tries every bracket; most files hold no run of table bytes that long,
# which one translate and one substring search (both in C) tell first.
_TABLE_BYTE_MASK = bytes(
    0 if byte in b"0123456789abcdefABCDEFxXuUlL, \t\n\r\x0b\x0c" else 1 for byte in range(256)
)
_TABLE_RUN = bytes(DATA_TABLE_MIN_BYTES)

ANONYMOUS = "(anonymous)"
_NAME_KINDS = frozenset(
    {
        "identifier",
        "field_identifier",
        "property_identifier",
        "private_property_identifier",
        "simple_identifier",
        "type_identifier",
        "constant",
        "name",
        "operator_name",
        "destructor_name",
        "qualified_identifier",
        "scoped_identifier",
        "word",
    }
)
_PARAMETER_LISTS = (
    "parameters",
    "formal_parameters",
    "parameter_list",
    "function_value_parameters",
    "method_parameters",
    "lambda_parameters",
)
_NAMING_PARENTS = {
    "variable_declarator": "name",
    "pair": "key",
    "assignment_expression": "left",
    "public_field_definition": "name",
    "field_definition": "property",
}


def measure_source(source: bytes, grammar: Grammar) -> dict[str, Any]:
    """Lines, functions (``[name, line, complexity, end_line, parameters]``) and classes."""
    from tree_sitter import QueryCursor

    spec = grammar.spec
    tree = parse_without_data_tables(source, grammar)
    captures = QueryCursor(grammar.query).captures(tree.root_node)
    function_nodes = [
        node
        for node in captures.get("function", ())
        if node.type not in spec.needs_body or _has_body(node)
    ]
    class_nodes = captures.get("class", [])
    # Nesting from byte ranges, not parent links: a node's parent is found by a walk down
    # from the root, so walking up from every decision cost more than the query.
    starts = [node.start_byte for node in function_nodes]
    ends = [node.end_byte for node in function_nodes]
    # Outer before inner where two start at the same byte.
    function_spans = sorted(
        zip(starts, ends, range(len(function_nodes)), strict=True),
        key=lambda span: (span[0], -span[1], span[2]),
    )
    decisions = [0] * (len(function_nodes) + 1)  # the last slot is file level
    decision_nodes = captures.get("decision", ())
    counted = [
        (node.start_byte, node.end_byte)
        for node in decision_nodes
        if node.type != "case_item" or not _is_catch_all(node)
    ]
    for owner in _innermost(counted, function_spans, len(function_nodes)):
        decisions[owner] += 1
    arm_nodes = captures.get("arms", ())
    if arm_nodes:
        arm_ranges = [(node.start_byte, node.end_byte) for node in arm_nodes]
        owners = _innermost(arm_ranges, function_spans, len(function_nodes))
        for node, owner in zip(arm_nodes, owners, strict=True):
            arms = sum(1 for child in node.named_children if child.type in _ARM_KINDS)
            if arms > 1:
                decisions[owner] += arms - 1
    names = _qualified_names(function_nodes, class_nodes)
    functions: list[list[Any]] = [
        [
            names[index],
            function_nodes[index].start_point[0] + 1,
            1 + decisions[index],
            function_nodes[index].end_point[0] + 1,
            _parameter_count(function_nodes[index]),
        ]
        for index in sorted(range(len(function_nodes)), key=starts.__getitem__)
    ]
    result: dict[str, Any] = count_comment_lines(source, captures.get("comment", ()))
    result["functions"] = functions
    result["classes"] = sum(
        1
        for node in class_nodes
        if node.type not in spec.class_needs_body or node.child_by_field_name("body") is not None
    )
    if tree.root_node.has_error:
        result["parse_error"] = "syntax errors (tree-sitter recovered; measures are partial)"
    return result


def _innermost(
    ranges: list[tuple[int, int]], spans: list[tuple[int, int, int]], outside: int
) -> list[int]:
    """For each node's ``(start, end)`` byte range, the index of the innermost span around it.

    ``spans`` are ``(start, end, index)`` sorted by start, outer first, nested as syntax-tree
    nodes are (two are disjoint or one holds the other); ``outside`` for a node in none. A span
    that starts with the node but ends inside it is the node's child (``function(){}() ? a :
    b``), not its owner.
    """
    owners = [outside] * len(ranges)
    if not spans:
        return owners
    order = sorted(range(len(ranges)), key=ranges.__getitem__)
    stack: list[tuple[int, int]] = []  # (end, index), innermost last
    next_span = 0
    for position in order:
        start, end = ranges[position]
        while next_span < len(spans) and spans[next_span][0] <= start:
            span_start, span_end, index = spans[next_span]
            while stack and stack[-1][0] <= span_start:
                stack.pop()
            stack.append((span_end, index))
            next_span += 1
        while stack and stack[-1][0] <= start:
            stack.pop()
        depth = len(stack) - 1
        while depth >= 0 and stack[depth][0] < end:
            depth -= 1
        if depth >= 0:
            owners[position] = stack[depth][1]
    return owners


def _qualified_names(function_nodes: list[Node], class_nodes: list[Node]) -> list[str]:
    """``Outer.method`` style per function: the enclosing classes and functions, then its own."""
    scopes = sorted(
        [(node.start_byte, -node.end_byte, 0, index) for index, node in enumerate(function_nodes)]
        + [(node.start_byte, -node.end_byte, 1, index) for index, node in enumerate(class_nodes)]
    )
    names = [ANONYMOUS] * len(function_nodes)
    stack: list[tuple[int, str]] = []  # (end, qualified name), innermost last
    for start, negative_end, is_class, index in scopes:
        while stack and stack[-1][0] <= start:
            stack.pop()
        node = class_nodes[index] if is_class else function_nodes[index]
        own = _name_of(node)
        qualified = f"{stack[-1][1]}.{own}" if stack else own
        if not is_class:
            names[index] = qualified
        stack.append((-negative_end, qualified))
    return names


def parse_without_data_tables(source: bytes, grammar: Grammar) -> Tree:
    """The syntax tree of ``source``, its data tables (``DATA_TABLE``) left out.

    Positions stay those of the whole source. A file with a table gets a parser of its own
    (the language's shared one keeps its ranges unset for other threads).
    """
    tables = (
        [match.span(1) for match in DATA_TABLE.finditer(source)]
        if len(source) > DATA_TABLE_MIN_BYTES and _TABLE_RUN in source.translate(_TABLE_BYTE_MASK)
        else []
    )
    if not tables:
        return grammar.parser.parse(source)
    from tree_sitter import Parser

    ranges: list[Range] = []
    start = 0
    for table_start, table_end in tables:
        ranges.append(_range(source, start, table_start))
        start = table_end
    ranges.append(_range(source, start, len(source)))
    return Parser(grammar.parser.language, included_ranges=ranges).parse(source)


def _range(source: bytes, start: int, end: int) -> Range:
    from tree_sitter import Point, Range

    def point(offset: int) -> Point:
        return Point(source.count(b"\n", 0, offset), offset - source.rfind(b"\n", 0, offset) - 1)

    return Range(point(start), point(end), start, end)


_ARM_KINDS = frozenset({"match_arm", "when_entry"})


def _has_body(node: Node) -> bool:
    if node.child_by_field_name("body") is not None:
        return True
    return any(child.type in {"function_body", "block"} for child in node.children)


def _is_catch_all(case_item: Node) -> bool:
    value = case_item.child_by_field_name("value")
    return value is not None and value.text == b"*"


def _name_of(node: Node) -> str:
    named = node.child_by_field_name("name")
    if named is not None:
        return _text(named)
    declarator = node.child_by_field_name("declarator")
    while declarator is not None:  # C/C++: function_declarator -> identifier / qualified name
        if declarator.type in _NAME_KINDS:
            return _text(declarator)
        inner = declarator.child_by_field_name("declarator")
        if inner is None:
            return _first_name(declarator)
        declarator = inner
    for child in node.named_children:  # grammars without a ``name`` field (Kotlin)
        if child.type in ("simple_identifier", "type_identifier"):
            return _text(child)
        if child.type in _PARAMETER_LISTS:
            break
    parent = node.parent
    if parent is not None and parent.type in _NAMING_PARENTS:
        target = parent.child_by_field_name(_NAMING_PARENTS[parent.type])
        if target is not None:
            return _text(target)
    return ANONYMOUS


def _first_name(node: Node) -> str:
    for child in node.named_children:
        if child.type in _NAME_KINDS:
            return _text(child)
    return ANONYMOUS


def _parameter_count(node: Node) -> int:
    parameters = node.child_by_field_name("parameters")
    declarator = node.child_by_field_name("declarator")
    while parameters is None and declarator is not None:
        parameters = declarator.child_by_field_name("parameters")
        declarator = declarator.child_by_field_name("declarator")
    if parameters is None:
        parameters = next(
            (child for child in node.named_children if child.type in _PARAMETER_LISTS), None
        )
    if parameters is None and node.child_by_field_name("parameter") is not None:
        return 1  # a bare arrow-function parameter: ``x => x``
    if parameters is None:  # Swift lists ``parameter`` nodes directly under the function
        return sum(1 for child in node.named_children if child.type == "parameter")
    # Go's ``a, b int`` is one declaration naming two parameters.
    return sum(
        max(1, len(child.children_by_field_name("name")))
        for child in parameters.named_children
        if "comment" not in child.type
    )


def _text(node: Node) -> str:
    return (node.text or b"").decode("utf-8", errors="replace")

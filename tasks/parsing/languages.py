"""What each language's syntax tree means: function, class, comment and decision nodes.

Data only (no tree-sitter import), so a worker can pick a language's spec without loading a
grammar. Decision counting follows lizard's convention, so the numbers compare with it: one
for each ``if``/``for``/``while``/``catch``/``case`` keyword, each ``&&``/``||`` (and the
language's null-coalescing operator where lizard counts it), each ternary, and for Rust's
``match`` and Kotlin's ``when`` one per arm after the first. ``else`` and ``default`` count
nothing.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class LanguageSpec:
    """How to read one grammar's tree: node kinds by role, decision tokens by name."""

    name: str
    grammar: str
    functions: frozenset[str]
    classes: frozenset[str]
    comments: frozenset[str]
    decision_tokens: frozenset[str]
    decision_nodes: frozenset[str] = frozenset()
    # Nodes whose children after the first each add one (Rust match arms, Kotlin when entries).
    arms: frozenset[str] = frozenset()
    # Function kinds that count only with a body (prototypes, abstract and interface methods).
    needs_body: frozenset[str] = frozenset()
    # Class kinds that count only with a body (C's ``struct s *p;`` names a type, not defines).
    class_needs_body: frozenset[str] = frozenset()
    extensions: tuple[str, ...] = field(default=())


_KEYWORDS = frozenset({"if", "for", "while", "catch", "case", "&&", "||"})
# Preprocessor conditionals inside a function: each is another variant of the code to follow
# (lizard counts #if, #ifdef and #elif; we count #ifndef too).
_PREPROCESSOR = frozenset({"#if", "#ifdef", "#ifndef", "#elif", "#elifdef", "#elifndef"})
_JS_FUNCTIONS = frozenset(
    {
        "function_declaration",
        "function_expression",
        "function",
        "generator_function_declaration",
        "generator_function",
        "arrow_function",
        "method_definition",
    }
)
_JS_CLASSES = frozenset(
    {
        "class_declaration",
        "class",
        "abstract_class_declaration",
        "interface_declaration",
        "enum_declaration",
    }
)
_C_COMMENTS = frozenset({"comment", "line_comment", "block_comment", "multiline_comment"})

SPECS: tuple[LanguageSpec, ...] = (
    LanguageSpec(
        name="javascript",
        grammar="javascript",
        functions=_JS_FUNCTIONS,
        classes=_JS_CLASSES,
        comments=frozenset({"comment", "html_comment"}),
        decision_tokens=_KEYWORDS | {"??"},
        decision_nodes=frozenset({"ternary_expression"}),
        extensions=(".js", ".jsx", ".mjs", ".cjs"),
    ),
    LanguageSpec(
        name="typescript",
        grammar="typescript",
        functions=_JS_FUNCTIONS,
        classes=_JS_CLASSES,
        comments=frozenset({"comment", "html_comment"}),
        decision_tokens=_KEYWORDS | {"??"},
        decision_nodes=frozenset({"ternary_expression"}),
        extensions=(".ts", ".mts", ".cts"),
    ),
    LanguageSpec(
        name="tsx",
        grammar="tsx",
        functions=_JS_FUNCTIONS,
        classes=_JS_CLASSES,
        comments=frozenset({"comment", "html_comment"}),
        decision_tokens=_KEYWORDS | {"??"},
        decision_nodes=frozenset({"ternary_expression"}),
        extensions=(".tsx",),
    ),
    LanguageSpec(
        name="go",
        grammar="go",
        functions=frozenset({"function_declaration", "method_declaration", "func_literal"}),
        classes=frozenset({"type_spec", "type_alias"}),
        comments=frozenset({"comment"}),
        decision_tokens=_KEYWORDS,
        needs_body=frozenset({"function_declaration"}),
        extensions=(".go",),
    ),
    LanguageSpec(
        name="rust",
        grammar="rust",
        functions=frozenset({"function_item"}),
        classes=frozenset({"struct_item", "enum_item", "union_item", "trait_item"}),
        comments=frozenset({"line_comment", "block_comment"}),
        decision_tokens=_KEYWORDS,
        decision_nodes=frozenset({"try_expression"}),
        arms=frozenset({"match_block"}),
        extensions=(".rs",),
    ),
    LanguageSpec(
        name="java",
        grammar="java",
        functions=frozenset(
            {"method_declaration", "constructor_declaration", "compact_constructor_declaration"}
        ),
        classes=frozenset(
            {
                "class_declaration",
                "interface_declaration",
                "enum_declaration",
                "record_declaration",
                "annotation_type_declaration",
            }
        ),
        comments=frozenset({"line_comment", "block_comment"}),
        decision_tokens=_KEYWORDS,
        decision_nodes=frozenset({"ternary_expression"}),
        needs_body=frozenset({"method_declaration"}),
        extensions=(".java",),
    ),
    LanguageSpec(
        name="c",
        grammar="c",
        functions=frozenset({"function_definition"}),
        classes=frozenset({"struct_specifier", "union_specifier", "enum_specifier"}),
        comments=frozenset({"comment"}),
        decision_tokens=_KEYWORDS | _PREPROCESSOR,
        decision_nodes=frozenset({"conditional_expression"}),
        class_needs_body=frozenset({"struct_specifier", "union_specifier", "enum_specifier"}),
        extensions=(".c", ".h"),
    ),
    LanguageSpec(
        name="cpp",
        grammar="cpp",
        functions=frozenset({"function_definition"}),
        classes=frozenset(
            {"class_specifier", "struct_specifier", "union_specifier", "enum_specifier"}
        ),
        comments=frozenset({"comment"}),
        decision_tokens=_KEYWORDS | _PREPROCESSOR,
        decision_nodes=frozenset({"conditional_expression"}),
        class_needs_body=frozenset(
            {"class_specifier", "struct_specifier", "union_specifier", "enum_specifier"}
        ),
        extensions=(".cc", ".cpp", ".cxx", ".c++", ".hh", ".hpp", ".hxx", ".h++", ".ipp", ".tcc"),
    ),
    LanguageSpec(
        name="csharp",
        grammar="csharp",
        functions=frozenset(
            {
                "method_declaration",
                "constructor_declaration",
                "destructor_declaration",
                "operator_declaration",
                "conversion_operator_declaration",
                "local_function_statement",
            }
        ),
        classes=frozenset(
            {
                "class_declaration",
                "struct_declaration",
                "interface_declaration",
                "enum_declaration",
                "record_declaration",
            }
        ),
        comments=frozenset({"comment"}),
        decision_tokens=_KEYWORDS | {"??"},
        decision_nodes=frozenset({"conditional_expression"}),
        needs_body=frozenset({"method_declaration"}),
        extensions=(".cs",),
    ),
    LanguageSpec(
        name="ruby",
        grammar="ruby",
        functions=frozenset({"method", "singleton_method"}),
        classes=frozenset({"class", "module", "singleton_class"}),
        comments=frozenset({"comment"}),
        decision_tokens=frozenset(
            {"if", "elsif", "unless", "until", "for", "while", "rescue", "ensure", "when"}
            | {"and", "or", "&&", "||", "||=", "&&="}
        ),
        decision_nodes=frozenset({"conditional"}),
        extensions=(".rb", ".rake", ".gemspec"),
    ),
    LanguageSpec(
        name="php",
        grammar="php",
        functions=frozenset({"function_definition", "method_declaration"}),
        classes=frozenset(
            {"class_declaration", "interface_declaration", "trait_declaration", "enum_declaration"}
        ),
        comments=frozenset({"comment"}),
        decision_tokens=frozenset(
            {"if", "elseif", "for", "foreach", "while", "catch", "match", "case", "&&", "||"}
        ),
        decision_nodes=frozenset({"conditional_expression"}),
        needs_body=frozenset({"method_declaration"}),
        extensions=(".php",),
    ),
    LanguageSpec(
        name="kotlin",
        grammar="kotlin",
        functions=frozenset({"function_declaration", "secondary_constructor", "getter", "setter"}),
        classes=frozenset({"class_declaration", "object_declaration"}),
        comments=frozenset({"comment", "line_comment", "multiline_comment"}),
        decision_tokens=frozenset({"if", "for", "while", "catch", "&&", "||", "?:"}),
        arms=frozenset({"when_expression"}),
        needs_body=frozenset({"function_declaration", "getter", "setter"}),
        extensions=(".kt", ".kts"),
    ),
    LanguageSpec(
        name="swift",
        grammar="swift",
        functions=frozenset(
            {
                "function_declaration",
                "init_declaration",
                "deinit_declaration",
                "subscript_declaration",
            }
        ),
        classes=frozenset({"class_declaration", "protocol_declaration"}),
        comments=frozenset({"comment", "multiline_comment"}),
        decision_tokens=frozenset({"if", "for", "while", "guard", "case", "&&", "||"}),
        # The Swift grammar's ``catch`` is a named node, not a token.
        decision_nodes=frozenset({"ternary_expression", "catch_keyword"}),
        needs_body=frozenset({"function_declaration"}),
        extensions=(".swift",),
    ),
    LanguageSpec(
        name="shell",
        grammar="bash",
        functions=frozenset({"function_definition"}),
        classes=frozenset(),
        comments=frozenset({"comment"}),
        decision_tokens=frozenset({"if", "elif", "for", "while", "until", "&&", "||"}),
        decision_nodes=frozenset({"case_item"}),
        extensions=(".sh", ".bash"),
    ),
)

BY_NAME: dict[str, LanguageSpec] = {spec.name: spec for spec in SPECS}
BY_EXTENSION: dict[str, LanguageSpec] = {
    extension: spec for spec in SPECS for extension in spec.extensions
}

# C++ that only C++ can mean, for headers named ``.h``: a class or namespace definition, a
# template, an access label, a qualified name. ``extern "C"`` is not one of them: C headers
# write it for C++ callers.
_CPP_MARKERS = re.compile(
    r"^\s*(?:class\s+\w+\s*[:{;]|namespace\s+\w*\s*\{|template\s*<|"
    r"(?:public|private|protected)\s*:)|\b\w+::\w",
    re.MULTILINE,
)


def spec_for(filename: str, text: str) -> LanguageSpec | None:
    """The language of ``filename``; a ``.h`` header that holds C++ is read as C++."""
    spec = BY_EXTENSION.get(os.path.splitext(filename)[1].lower())
    if spec is not None and spec.name == "c" and filename.lower().endswith(".h"):
        if _CPP_MARKERS.search(text):
            return BY_NAME["cpp"]
    return spec

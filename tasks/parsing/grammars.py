"""Grammars loaded on first use: one parser and one query per language, per process.

Nothing here imports tree-sitter until a file of a language with a grammar is analyzed, so a
worker that never sees Rust never maps the Rust grammar, and importing ``tasks.analyze`` stays
cheap. ``load_all`` is the eager alternative (for the lazy-loading benchmark).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tasks.parsing.languages import SPECS, LanguageSpec

if TYPE_CHECKING:
    from tree_sitter import Parser, Query


@dataclass(frozen=True)
class Grammar:
    """A loaded grammar: its parser, and one query capturing every node the measures need."""

    spec: LanguageSpec
    parser: Parser
    query: Query


_GRAMMARS: dict[str, Grammar | None] = {}
_LOCK = threading.Lock()


def grammar_for(spec: LanguageSpec) -> Grammar | None:
    """The language's grammar, loaded on first call; None when the ``analyze`` extra is absent."""
    if spec.name in _GRAMMARS:
        return _GRAMMARS[spec.name]
    with _LOCK:  # thread pools: load once, not once per thread
        if spec.name not in _GRAMMARS:
            _GRAMMARS[spec.name] = _load(spec)
    return _GRAMMARS[spec.name]


def loaded_languages() -> list[str]:
    """Languages whose grammar this process has loaded, in load order."""
    return [name for name, grammar in _GRAMMARS.items() if grammar is not None]


def load_all() -> int:
    """Load every grammar now (the eager mode); returns how many loaded."""
    return sum(grammar_for(spec) is not None for spec in SPECS)


def _load(spec: LanguageSpec) -> Grammar | None:
    try:
        from tree_sitter import Parser, Query
        from tree_sitter_language_pack import get_language
    except ImportError:
        return None
    language = get_language(spec.grammar)  # type: ignore[arg-type]
    return Grammar(spec, Parser(language), Query(language, _query_source(spec, language)))


def _query_source(spec: LanguageSpec, language: Any) -> str:
    """One pattern per node kind the grammar knows; kinds it lacks are left out, not errors."""
    patterns: list[str] = []

    def add(kinds: frozenset[str], capture: str, named: bool) -> None:
        for kind in sorted(kinds):
            if language.id_for_node_kind(kind, named):
                escaped = kind.replace("\\", "\\\\").replace('"', '\\"')
                patterns.append(f"({kind}) @{capture}" if named else f'"{escaped}" @{capture}')

    add(spec.functions, "function", True)
    add(spec.classes, "class", True)
    add(spec.comments, "comment", True)
    add(spec.decision_nodes, "decision", True)
    add(spec.decision_tokens, "decision", False)
    add(spec.arms, "arms", True)
    return "\n".join(patterns)

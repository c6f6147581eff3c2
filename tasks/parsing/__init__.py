"""Syntax-tree measures for languages other than Python, with grammars loaded on first use."""

from tasks.parsing.grammars import grammar_for, load_all, loaded_languages
from tasks.parsing.languages import BY_EXTENSION, BY_NAME, SPECS, LanguageSpec, spec_for
from tasks.parsing.lines import count_lines, split_lines

__all__ = [
    "BY_EXTENSION",
    "BY_NAME",
    "SPECS",
    "LanguageSpec",
    "count_lines",
    "grammar_for",
    "load_all",
    "loaded_languages",
    "spec_for",
    "split_lines",
]

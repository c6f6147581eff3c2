"""Compare our analyzer with lizard (functions, CCN) and cloc (lines) on one corpus.

Run as ``python -m tests.analysis.agreement [size]`` for the table per language, and the
kinds of disagreement with an example of each.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.bench.corpus import Corpus, build_corpus
from tasks.analyze import analyze_text

# cloc's names for the languages of the corpus (by the canonical extension it is given).
CLOC_LANGUAGES = {
    "javascript": "JavaScript",
    "typescript": "TypeScript",
    "go": "Go",
    "rust": "Rust",
    "java": "Java",
    "c": "C",
    "cpp": "C++",
    "ruby": "Ruby",
    "php": "PHP",
    "csharp": "C#",
    "kotlin": "Kotlin",
    "swift": "Swift",
    "shell": "Bourne Shell",
}


@dataclass
class LanguageAgreement:
    """One language's figures: ours against lizard's and cloc's."""

    language: str
    files: int = 0
    # False where lizard has no reader for the language (Bash): only cloc is compared.
    lizard_reads: bool = True
    ours_functions: int = 0
    lizard_functions: int = 0
    matched: int = 0
    ccn_equal: int = 0
    ours_lines: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    cloc_lines: dict[str, int] = field(default_factory=dict)
    ccn_mismatches: list[str] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)

    @property
    def function_diff(self) -> float:
        return abs(self.ours_functions - self.lizard_functions) / max(self.lizard_functions, 1)

    @property
    def ccn_equal_share(self) -> float:
        return self.ccn_equal / max(self.matched, 1)

    def line_diff(self, kind: str) -> float:
        theirs = self.cloc_lines.get(kind, 0)
        return abs(self.ours_lines[kind] - theirs) / max(theirs, 1)

    def row(self) -> dict[str, Any]:
        return {
            "language": self.language,
            "files": self.files,
            "functions_ours": self.ours_functions,
            "functions_lizard": self.lizard_functions if self.lizard_reads else None,
            "function_diff_pct": round(100 * self.function_diff, 2) if self.lizard_reads else None,
            "matched": self.matched,
            "ccn_equal_pct": round(100 * self.ccn_equal_share, 2) if self.lizard_reads else None,
            **{
                f"{kind}_diff_pct": round(100 * self.line_diff(kind), 2)
                for kind in ("code", "comment", "blank")
            },
            "lines_ours": dict(self.ours_lines),
            "lines_cloc": self.cloc_lines,
        }


def compare(corpus: Corpus) -> dict[str, LanguageAgreement]:
    """Agreement per language over every file of ``corpus``."""
    import lizard
    from lizard_languages import get_reader_for

    cloc = _cloc(corpus.root)
    results: dict[str, LanguageAgreement] = {}
    for language in corpus.languages:
        agreement = LanguageAgreement(language)
        for path in corpus.files(language):
            text = path.read_bytes().decode("utf-8", errors="replace")
            ours = analyze_text(text, path.name, str(path))
            agreement.files += 1
            for kind in ("code", "comment", "blank"):
                agreement.ours_lines[kind] += int(ours[kind])
            agreement.ours_functions += len(ours["functions"])
            # Without a reader of its own lizard falls back to its C reader: no comparison.
            if get_reader_for(path.name) is None:
                agreement.lizard_reads = False
                continue
            theirs = lizard.analyze_file.analyze_source_code(str(path), text).function_list
            agreement.lizard_functions += len(theirs)
            _match(agreement, path.name, ours["functions"], theirs)
        agreement.cloc_lines = cloc.get(CLOC_LANGUAGES[language], {})
        results[language] = agreement
    return results


def _match(
    agreement: LanguageAgreement, name: str, ours: list[list[Any]], theirs: list[Any]
) -> None:
    """Pair functions by last line (both tools agree where a body ends), then compare CCN."""
    by_end: dict[int, list[list[Any]]] = defaultdict(list)
    for function in ours:
        by_end[int(function[3])].append(function)
    for function in theirs:
        candidates = by_end.get(function.end_line)
        if not candidates:
            agreement.unmatched.append(f"{name}:{function.start_line} lizard {function.name}")
            continue
        same_start = [row for row in candidates if row[1] == function.start_line]
        mine = same_start[0] if same_start else candidates[0]
        candidates.remove(mine)
        agreement.matched += 1
        if mine[2] == function.cyclomatic_complexity:
            agreement.ccn_equal += 1
        else:
            agreement.ccn_mismatches.append(
                f"{name}:{function.start_line} {function.name} "
                f"ours={mine[2]} lizard={function.cyclomatic_complexity}"
            )
    for rest in by_end.values():
        agreement.unmatched.extend(f"{name}:{function[1]} ours {function[0]}" for function in rest)


def _cloc(root: Path) -> dict[str, dict[str, int]]:
    """cloc's totals per language (its names) for every file under ``root``."""
    if shutil.which("cloc") is None:
        return {}
    output = subprocess.run(
        ["cloc", "--json", "--quiet", "--skip-uniqueness", str(root)],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    ).stdout
    data = json.loads(output)
    return {
        name: {kind: int(values[kind]) for kind in ("code", "comment", "blank")}
        for name, values in data.items()
        if name not in ("header", "SUM")
    }


def main() -> None:
    size = sys.argv[1] if len(sys.argv) > 1 else "small"
    corpus = build_corpus(size)
    results = compare(corpus)
    for agreement in results.values():
        print(json.dumps(agreement.row()))
        for example in agreement.ccn_mismatches[:6]:
            print("   ccn", example)
        for example in agreement.unmatched[:6]:
            print("   unmatched", example)
    if corpus.missing:
        print("missing:", corpus.missing)


if __name__ == "__main__":
    main()

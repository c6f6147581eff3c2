"""analyze_code and report on binary and oversized files: skipped or cut, and said so."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from tasks.analyze import analyze_code, is_binary
from tasks.catalog import AnalyzeCodeInput, ReportInput
from tasks.report import report
from workers.skills.spec import SkillContext

ELF_HEAD = b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 8 + b"\x02\x00>\x00\x01\x00\x00\x00"


def test_random_bytes_and_an_elf_header_are_binary() -> None:
    assert is_binary(os.urandom(200_000))
    assert is_binary(ELF_HEAD + b"main\nprintf\n" * 100)
    assert not is_binary(b"def f():\n\treturn 1\n")
    assert not is_binary("caf\u00e9 = 1\n".encode())
    assert not is_binary(b"")


def test_a_binary_file_is_skipped_not_counted_as_code(root: Path, context: SkillContext) -> None:
    (root / "blob.bin").write_bytes(os.urandom(200_000))
    result = analyze_code(AnalyzeCodeInput(path="blob.bin"), context)
    assert result["binary"] is True
    assert "code" not in result and "lines" not in result


def test_a_file_over_max_file_bytes_is_marked_truncated(
    root: Path, context_for: Callable[..., SkillContext]
) -> None:
    (root / "big.py").write_text("x = 1\n" * 100)
    (root / "exact.py").write_text("x = 1\n" * 5)
    context = context_for(allowed_roots=[root], max_file_bytes=30)
    big = analyze_code(AnalyzeCodeInput(path="big.py"), context)
    assert big["truncated"] is True
    assert big["size_bytes"] == 600 and big["analyzed_bytes"] == 30
    assert big["lines"] == 5
    assert "truncated" not in analyze_code(AnalyzeCodeInput(path="exact.py"), context)


def test_report_counts_binary_files_apart_and_names_skipped_and_truncated_files(
    root: Path, context_for: Callable[..., SkillContext]
) -> None:
    (root / "a.py").write_text("x = 1\n")
    (root / "big.py").write_text("y = 2\n" * 100)
    (root / "blob.bin").write_bytes(ELF_HEAD * 10)
    context = context_for(allowed_roots=[root], max_file_bytes=60)
    results = [
        {"ok": True, "value": analyze_code(AnalyzeCodeInput(path=name), context)}
        for name in ("a.py", "big.py", "blob.bin")
    ]
    summary = report(ReportInput(results=results), context)
    assert summary["totals"]["files"] == 2
    assert summary["totals"]["binary"] == 1
    assert summary["totals"]["code"] == 11
    assert "binary" not in summary["languages"]
    assert summary["skipped_count"] == 1
    assert summary["skipped_files"] == [{"path": str(root / "blob.bin"), "reason": "binary"}]
    assert summary["truncated_count"] == 1
    assert summary["truncated_files"] == [
        {"path": str(root / "big.py"), "size_bytes": 600, "analyzed_bytes": 60}
    ]

"""``victor analyze`` names the files it skipped (binary) or cut (over max_file_bytes)."""

from __future__ import annotations

import os
from pathlib import Path

from tests.orchestrator.test_cli import clean_env, flat, victor

BORDERS = str.maketrans("", "", "│┃┏┓┗┛┡┩└┘━─┳┻╇┴┬├┤┼╭╮╰╯")


def words(text: str) -> str:
    """The table's cells in order, single-spaced, without rich's borders."""
    return flat(text.translate(BORDERS))


def test_analyze_names_binary_and_truncated_files_in_its_report(tmp_path: Path) -> None:
    tree = tmp_path / "repo"
    tree.mkdir()
    (tree / "small.py").write_text("x = 1\n")
    (tree / "huge.py").write_text("def f():\n    return 1\n" * 200)
    (tree / "blob.bin").write_bytes(os.urandom(50_000))
    result = victor("analyze", ".", cwd=tree, env=clean_env(VICTOR_MAX_FILE_BYTES="1000"))
    assert result.returncode == 0, result.stderr
    output = words(result.stdout)
    assert "binary files (skipped) 1" in output
    assert "truncated files 1" in output
    assert "blob.bin skipped: binary" in output
    assert "huge.py truncated: 1,000 of 4,400 bytes analyzed" in output
    assert "files 2 lines" in output  # the binary file is not counted as code

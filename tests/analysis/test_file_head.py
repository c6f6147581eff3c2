"""read_head: one open per file, a size that says a file was cut, and no waiting on a FIFO."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tasks.file_head import read_head
from workers.core.errors import AccessDeniedError


def test_a_file_under_the_limit_is_read_whole_with_its_size(tmp_path: Path) -> None:
    path = tmp_path / "a.py"
    path.write_bytes(b"x = 1\n")
    assert read_head(path, 100, "a.py") == (b"x = 1\n", 6)


def test_a_file_over_the_limit_is_cut_and_its_whole_size_reported(tmp_path: Path) -> None:
    path = tmp_path / "big.py"
    path.write_bytes(b"y" * 70_000)
    data, size = read_head(path, 65_537, "big.py")
    assert (len(data), size) == (65_537, 70_000)


def test_a_file_whose_size_says_nothing_is_read_to_its_end() -> None:
    status = Path("/proc/self/status")
    if not status.exists():
        pytest.skip("no /proc on this system")
    data, size = read_head(status, 1_000_000, "status")
    assert b"Pid:" in data and size == len(data)


@pytest.mark.parametrize("kind", ["directory", "fifo", "missing"])
def test_anything_but_a_regular_file_is_refused_at_once(tmp_path: Path, kind: str) -> None:
    path = tmp_path / kind
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)  # opening it for reading without a writer would block
    expected = "does not exist" if kind == "missing" else "not a regular file"
    with pytest.raises(AccessDeniedError, match=expected):
        read_head(path, 100, kind)

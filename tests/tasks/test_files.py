"""read_file and path confinement: escapes, symlinks and NUL bytes are refused."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest

from tasks.catalog import ReadFileInput
from tasks.files import read_file
from workers.core.errors import AccessDeniedError, SkillInputError
from workers.core.paths import confine
from workers.core.settings import Settings
from workers.skills import load_registry
from workers.skills.executor import SkillExecutor
from workers.skills.spec import SkillContext


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    secret = tmp_path / "secret.txt"
    secret.write_text("do not read\n")
    return secret


def test_relative_path_resolves_against_the_first_root(root: Path) -> None:
    (root / "a.txt").write_text("a")
    assert confine("a.txt", [root]) == (root / "a.txt").resolve()


def test_absolute_path_inside_a_root_is_allowed(root: Path) -> None:
    (root / "a.txt").write_text("a")
    assert confine(str(root / "a.txt"), [root]) == (root / "a.txt").resolve()


def test_the_root_itself_is_allowed(root: Path) -> None:
    assert confine(str(root), [root]) == root.resolve()


@pytest.mark.parametrize("escape", ["../secret.txt", "sub/../../secret.txt", "./../secret.txt"])
def test_dot_dot_escapes_are_refused(root: Path, outside: Path, escape: str) -> None:
    (root / "sub").mkdir()
    with pytest.raises(AccessDeniedError) as caught:
        confine(escape, [root])
    message = str(caught.value)
    assert escape in message
    assert "VICTOR_ALLOWED_ROOTS" in message


def test_dot_dot_that_stays_inside_is_allowed(root: Path) -> None:
    (root / "sub").mkdir()
    (root / "a.txt").write_text("a")
    assert confine("sub/../a.txt", [root]) == (root / "a.txt").resolve()


def test_absolute_path_outside_is_refused(root: Path, outside: Path) -> None:
    with pytest.raises(AccessDeniedError):
        confine(str(outside), [root])
    with pytest.raises(AccessDeniedError):
        confine("/etc/passwd", [root])


def test_sibling_with_a_common_prefix_is_refused(root: Path, tmp_path: Path) -> None:
    sibling = tmp_path / "root-other"
    sibling.mkdir()
    (sibling / "x.txt").write_text("x")
    with pytest.raises(AccessDeniedError):
        confine(str(sibling / "x.txt"), [root])


def test_symlinked_file_pointing_out_is_refused(root: Path, outside: Path) -> None:
    (root / "link.txt").symlink_to(outside)
    with pytest.raises(AccessDeniedError, match="outside the allowed roots"):
        confine("link.txt", [root])


def test_symlinked_directory_pointing_out_is_refused(root: Path, outside: Path) -> None:
    (root / "linkdir").symlink_to(outside.parent, target_is_directory=True)
    with pytest.raises(AccessDeniedError):
        confine("linkdir/secret.txt", [root])


def test_symlink_inside_the_root_is_followed(root: Path) -> None:
    (root / "real.txt").write_text("r")
    (root / "alias.txt").symlink_to(root / "real.txt")
    assert confine("alias.txt", [root]) == (root / "real.txt").resolve()


def test_nul_byte_is_refused(root: Path) -> None:
    with pytest.raises(AccessDeniedError, match="NUL"):
        confine("a.txt\x00/../../etc/passwd", [root])


def test_no_roots_means_nothing_is_allowed(root: Path) -> None:
    with pytest.raises(AccessDeniedError, match="VICTOR_ALLOWED_ROOTS"):
        confine("a.txt", [])


def test_any_of_several_roots_allows(root: Path, tmp_path: Path) -> None:
    second = tmp_path / "second"
    second.mkdir()
    (second / "b.txt").write_text("b")
    assert confine(str(second / "b.txt"), [root, second]) == (second / "b.txt").resolve()


# --- read_file --------------------------------------------------------------------------------


def test_read_file_returns_text_size_and_digest(root: Path, context: SkillContext) -> None:
    (root / "a.txt").write_text("hello\nworld\n")
    result = read_file(ReadFileInput(path="a.txt"), context)
    assert result["text"] == "hello\nworld\n"
    assert result["size"] == 12
    assert result["sha256"] == hashlib.sha256(b"hello\nworld\n").hexdigest()
    assert result["truncated"] is False
    assert result["path"] == str((root / "a.txt").resolve())


def test_read_file_truncates_at_max_bytes(root: Path, context: SkillContext) -> None:
    (root / "a.txt").write_text("0123456789")
    result = read_file(ReadFileInput(path="a.txt", max_bytes=4), context)
    assert (result["text"], result["truncated"], result["size"]) == ("0123", True, 10)


def test_read_file_never_reads_past_max_file_bytes(
    root: Path, context_for: Callable[..., SkillContext]
) -> None:
    (root / "a.txt").write_text("0123456789")
    context = context_for(allowed_roots=[root], max_file_bytes=3)
    result = read_file(ReadFileInput(path="a.txt", max_bytes=100), context)
    assert (result["text"], result["truncated"]) == ("012", True)


def test_read_file_replaces_undecodable_bytes(root: Path, context: SkillContext) -> None:
    (root / "b.bin").write_bytes(b"ok \xff\xfe end")
    assert read_file(ReadFileInput(path="b.bin"), context)["text"] == "ok \ufffd\ufffd end"


@pytest.mark.parametrize("path", ["../secret.txt", "link.txt"])
def test_read_file_refuses_escapes(
    root: Path, outside: Path, context: SkillContext, path: str
) -> None:
    (root / "link.txt").symlink_to(outside)
    with pytest.raises(AccessDeniedError):
        read_file(ReadFileInput(path=path), context)


def test_read_file_refuses_a_directory_and_a_missing_file(
    root: Path, context: SkillContext
) -> None:
    (root / "dir").mkdir()
    with pytest.raises(AccessDeniedError, match="not a regular file"):
        read_file(ReadFileInput(path="dir"), context)
    with pytest.raises(AccessDeniedError, match=r"'missing\.txt' does not exist"):
        read_file(ReadFileInput(path="missing.txt"), context)


def test_executor_validates_read_file_input(root: Path) -> None:
    executor = SkillExecutor(Settings(allowed_roots=[root]), load_registry())
    with pytest.raises(SkillInputError, match="path"):
        executor.run("read_file", {"path": ""})
    with pytest.raises(SkillInputError, match="expected fields: path, max_bytes"):
        executor.run("read_file", {"path": "a.txt", "mode": "w"})


def test_executor_reports_escapes_per_item(root: Path, outside: Path) -> None:
    (root / "a.txt").write_text("a")
    executor = SkillExecutor(Settings(allowed_roots=[root]), load_registry())
    good, bad, nul = executor.run_batch(
        "read_file", [{"path": "a.txt"}, {"path": "../secret.txt"}, {"path": "a\x00"}]
    )
    assert good["ok"] is True and good["value"]["text"] == "a"
    assert (bad["ok"], bad["type"]) == (False, "AccessDeniedError")
    assert bad["item"] == {"path": "../secret.txt"}
    assert (nul["ok"], nul["type"]) == (False, "AccessDeniedError")

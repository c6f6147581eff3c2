"""search_code: literal and regular-expression search inside the allowed roots."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.catalog import SearchCodeInput
from tasks.search import search_code
from workers.core.errors import AccessDeniedError, SkillInputError
from workers.skills.spec import SkillContext

SOURCE = """\
import re
# TODO: tidy
def a_b():
    return "a.b"  # todo later
axb = 1
"""


@pytest.fixture
def source(root: Path) -> str:
    (root / "m.py").write_text(SOURCE)
    return "m.py"


def search(context: SkillContext, path: str, pattern: str, **options: object) -> dict:  # type: ignore[type-arg]
    return search_code(SearchCodeInput(path=path, pattern=pattern, **options), context)  # type: ignore[arg-type]


def test_literal_search_treats_metacharacters_literally(context: SkillContext, source: str) -> None:
    result = search(context, source, "a.b")
    assert result["matches"] == [[4, '    return "a.b"  # todo later']]
    assert result["truncated"] is False


def test_regex_search(context: SkillContext, source: str) -> None:
    result = search(context, source, r"a.b", regex=True)
    assert [line for line, _ in result["matches"]] == [3, 4, 5]


def test_search_is_case_sensitive_unless_asked(context: SkillContext, source: str) -> None:
    assert [line for line, _ in search(context, source, "TODO")["matches"]] == [2]
    insensitive = search(context, source, "TODO", ignore_case=True)
    assert [line for line, _ in insensitive["matches"]] == [2, 4]


def test_max_matches_truncates(context: SkillContext, root: Path) -> None:
    (root / "many.txt").write_text("hit\n" * 50)
    result = search(context, "many.txt", "hit", max_matches=10)
    assert len(result["matches"]) == 10
    assert result["matches"][-1][0] == 10
    assert result["truncated"] is True


def test_exactly_max_matches_is_not_truncated(context: SkillContext, root: Path) -> None:
    (root / "some.txt").write_text("hit\n" * 10)
    assert search(context, "some.txt", "hit", max_matches=10)["truncated"] is False


def test_no_match(context: SkillContext, source: str) -> None:
    assert search(context, source, "nowhere")["matches"] == []


def test_long_lines_are_clipped(context: SkillContext, root: Path) -> None:
    (root / "long.txt").write_text("x" * 2000 + "needle\n")
    [[line, text]] = search(context, "long.txt", "needle")["matches"]
    assert (line, len(text)) == (1, 500)


def test_bad_regex_names_the_pattern(context: SkillContext, source: str) -> None:
    with pytest.raises(SkillInputError) as caught:
        search(context, source, "(unclosed", regex=True)
    message = str(caught.value)
    assert "'(unclosed'" in message
    assert "regex=false" in message


def test_the_same_pattern_is_fine_as_a_literal(context: SkillContext, root: Path) -> None:
    (root / "p.txt").write_text("call(unclosed\n")
    assert search(context, "p.txt", "(unclosed")["matches"] == [[1, "call(unclosed"]]


def test_search_is_confined(context: SkillContext, root: Path, tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("password\n")
    (root / "link.txt").symlink_to(tmp_path / "secret.txt")
    for path in ("../secret.txt", "link.txt", str(tmp_path / "secret.txt")):
        with pytest.raises(AccessDeniedError):
            search(context, path, "password")

"""run_tests: pytest in a subprocess, confined to the roots, bounded by a timeout."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tasks.catalog import RunTestsInput
from tasks.run_tests import _node_id, run_tests
from workers.core.errors import AccessDeniedError, SkillError, SkillInputError
from workers.core.settings import Settings
from workers.skills import load_registry
from workers.skills.executor import SkillExecutor
from workers.skills.spec import SkillContext

MIXED = """import pytest


def test_passes():
    pass


def test_fails():
    assert 1 == 2


@pytest.fixture
def broken():
    raise RuntimeError("fixture")


def test_errors(broken):
    pass


@pytest.mark.skip(reason="not today")
def test_skipped():
    pass


class TestGroup:
    @pytest.mark.parametrize("value", [1, "a.b"])
    def test_value(self, value):
        assert value == 1
"""


def test_counts_each_outcome_and_names_the_failing_tests(root: Path, context: SkillContext) -> None:
    (root / "test_mixed.py").write_text(MIXED)
    (root / "sub").mkdir()
    (root / "sub" / "test_broken.py").write_text("import not_a_module\n")

    result = run_tests(RunTestsInput(path="."), context)

    assert (result["passed"], result["failed"], result["errors"], result["skipped"]) == (2, 2, 2, 1)
    assert result["total"] == 7 and result["exit_code"] == 1
    assert result["failing"] == [
        "sub/test_broken.py",
        "test_mixed.py::test_fails",
        "test_mixed.py::test_errors",
        "test_mixed.py::TestGroup::test_value[a.b]",
    ]
    assert "1 == 2" in result["output"]


def test_the_child_sees_no_secrets_and_no_configuration_above_the_root(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VICTOR_CACHE_HMAC_KEY", "not-for-tests")
    monkeypatch.setenv("SOME_API_TOKEN", "not-for-tests")
    # Above the allowed root: if pytest read it, the test below would be deselected.
    (root.parent / "pytest.ini").write_text("[pytest]\naddopts = -k nothing_matches\n")
    (root / "test_env.py").write_text(
        "import os\n\n\ndef test_environment():\n"
        "    assert not [name for name in os.environ if 'VICTOR' in name or 'TOKEN' in name]\n"
    )
    settings = Settings(allowed_roots=[root], task_soft_time_limit_s=60, task_time_limit_s=70)

    result = run_tests(
        RunTestsInput(file="test_env.py", timeout_s=86_400), SkillContext(settings=settings)
    )

    assert (result["passed"], result["failed"], result["errors"]) == (1, 0, 0), result["output"]
    assert result["timeout_s"] == 59  # capped one second under the soft time limit


def test_pytest_is_killed_at_the_timeout(root: Path, context: SkillContext) -> None:
    (root / "test_slow.py").write_text("import time\n\n\ndef test_slow():\n    time.sleep(60)\n")
    started = time.monotonic()
    with pytest.raises(SkillError, match="did not finish within 2 s"):
        run_tests(RunTestsInput(path="test_slow.py", timeout_s=2), context)
    assert time.monotonic() - started < 30


def test_paths_outside_the_roots_or_missing_are_refused(root: Path, context: SkillContext) -> None:
    with pytest.raises(AccessDeniedError, match="outside the allowed roots"):
        run_tests(RunTestsInput(path="../elsewhere"), context)
    with pytest.raises(AccessDeniedError, match="does not exist"):
        run_tests(RunTestsInput(path="missing_test.py"), context)


def test_file_is_another_name_for_path_in_the_file_skills(root: Path) -> None:
    executor = SkillExecutor(Settings(allowed_roots=[root]), load_registry())
    for skill in ("read_file", "analyze_code", "run_tests"):
        _, model = executor.validate(skill, {"file": "main.py"})
        assert model.path == "main.py"
    with pytest.raises(SkillInputError, match="path: Field required"):
        executor.validate("read_file", {})


def test_run_tests_is_never_cached() -> None:
    spec = load_registry().get("run_tests")
    assert not spec.cacheable and spec.file_param is None


@pytest.mark.parametrize(
    ("attributes", "node_id"),
    [
        ({"file": "test_a.py", "classname": "test_a", "name": "test_x"}, "test_a.py::test_x"),
        (
            {"file": "pkg/test_a.py", "classname": "pkg.test_a.TestC", "name": "test_x[a.b]"},
            "pkg/test_a.py::TestC::test_x[a.b]",
        ),
        ({"file": "pkg/test_b.py", "classname": "", "name": "pkg.test_b"}, "pkg/test_b.py"),
        ({"classname": "odd", "name": "test_y"}, "odd::test_y"),
    ],
)
def test_node_ids_come_back_from_junit_attributes(attributes: dict[str, str], node_id: str) -> None:
    assert _node_id(attributes) == node_id

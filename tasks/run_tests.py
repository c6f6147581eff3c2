"""run_tests: pytest on a path inside the allowed roots, in a subprocess with a timeout.

The child is ``sys.executable -m pytest`` (never a shell) in its own process group, started in
the allowed root that holds the path, with that root as rootdir and conftest boundary, pytest's
configuration taken only from inside the root, and an environment without the worker's
secrets. Outcomes come from the JUnit XML file pytest writes into a temporary directory.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from tasks.catalog import RunTestsInput
from workers.core.errors import AccessDeniedError, SkillError
from workers.core.paths import confine
from workers.skills.spec import SkillContext

# Variables the child may see; everything else (VICTOR_*, credentials, tokens) stays behind.
KEPT_ENVIRONMENT = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "SYSTEMROOT")
# pytest's configuration files, in the order pytest itself prefers them in one directory.
CONFIG_FILES = (
    ("pytest.ini", None),
    (".pytest.ini", None),
    ("pyproject.toml", "[tool.pytest.ini_options]"),
    ("tox.ini", "[pytest]"),
    ("setup.cfg", "[tool:pytest]"),
)
OUTPUT_TAIL_CHARS = 4000
MARGIN_S = 1.0  # the child must end before the task's soft time limit does


def run_tests(params: RunTestsInput, context: SkillContext) -> dict[str, Any]:
    """Run pytest on ``path``; counts by outcome, the failing test ids and the output's tail.

    Failing tests are a result, not an error: the call fails only when pytest cannot run or
    does not finish within the timeout.
    """
    settings = context.settings
    target = confine(params.path, settings.allowed_roots)
    if not target.exists():
        raise AccessDeniedError(f"path {params.path!r} does not exist; pass a test file or folder")
    root = _root_of(target, settings.allowed_roots)
    limit = max(MARGIN_S, settings.task_soft_time_limit_s - MARGIN_S)
    timeout_s = min(params.timeout_s or limit, limit)
    with tempfile.TemporaryDirectory(prefix="victor-run-tests-") as scratch:
        report = Path(scratch) / "junit.xml"
        command = [
            sys.executable,
            "-m",
            "pytest",
            str(target),
            "-q",
            "-p",
            "no:cacheprovider",
            "--continue-on-collection-errors",
            f"--rootdir={root}",
            f"--confcutdir={root}",
            "-c",
            str(_config_file(target, root, Path(scratch))),
            f"--junitxml={report}",
            "-o",
            "junit_family=xunit1",
        ]
        if params.keyword:
            command += ["-k", params.keyword]
        started = time.monotonic()
        exit_code, output = _run(command, root, timeout_s, params.path)
        duration_s = round(time.monotonic() - started, 3)
        if not report.is_file():
            raise SkillError(
                f"pytest could not run on {params.path!r} (exit code {exit_code}): "
                f"{output[-1000:].strip() or 'no output'}"
            )
        counts, failing = _outcomes(report)
    return {
        "path": str(target),
        "exit_code": exit_code,
        **counts,
        "failing": failing,
        "duration_s": duration_s,
        "timeout_s": timeout_s,
        "output": output[-OUTPUT_TAIL_CHARS:],
    }


def _root_of(target: Path, roots: list[Path]) -> Path:
    """The allowed root that holds ``target`` (the innermost, when roots nest)."""
    holding = [
        Path(root).resolve()
        for root in roots
        if target == Path(root).resolve() or target.is_relative_to(Path(root).resolve())
    ]
    return max(holding, key=lambda root: len(root.parts))


def _config_file(target: Path, root: Path, scratch: Path) -> Path:
    """The nearest pytest configuration between ``target`` and ``root``, else an empty one:
    a file above the allowed root never configures the run."""
    directory = target if target.is_dir() else target.parent
    while True:
        for name, section in CONFIG_FILES:
            candidate = directory / name
            if candidate.is_file() and (
                section is None or section in candidate.read_text(errors="replace")
            ):
                return candidate
        if directory == root or directory.parent == directory:
            break
        directory = directory.parent
    empty = scratch / "pytest.ini"
    empty.write_text("[pytest]\n")
    return empty


def _environment() -> dict[str, str]:
    kept = {name: os.environ[name] for name in KEPT_ENVIRONMENT if name in os.environ}
    return {**kept, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"}


def _run(command: list[str], cwd: Path, timeout_s: float, shown: str) -> tuple[int, str]:
    """Run the child in its own process group; on timeout (or any interruption, such as the
    task's soft time limit) the whole group is killed."""
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=_environment(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        stdout, _ = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        raise SkillError(
            f"pytest on {shown!r} did not finish within {timeout_s:g} s; pass a larger "
            "timeout_s (at most the task's soft time limit less 1 s) or a narrower path"
        ) from None
    except BaseException:
        _kill_group(process)
        raise
    return process.returncode, stdout.decode("utf-8", errors="replace")


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.communicate()


def _outcomes(report: Path) -> tuple[dict[str, int], list[str]]:
    """Counts by outcome and the ids of failed or erroring tests, from pytest's JUnit XML."""
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0, "total": 0}
    failing: list[str] = []
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        counts["total"] += 1
        kinds = {child.tag for child in case}
        if "failure" in kinds:
            counts["failed"] += 1
        if "error" in kinds:
            counts["errors"] += 1
        if kinds & {"failure", "error"}:
            node_id = _node_id(case.attrib)
            if node_id not in failing:
                failing.append(node_id)
        elif "skipped" in kinds:
            counts["skipped"] += 1
        else:
            counts["passed"] += 1
    return counts, failing


def _node_id(attributes: dict[str, str]) -> str:
    """pytest's node id (``file::Class::test[param]``) from a JUnit ``testcase``'s attributes."""
    file, classname, name = (attributes.get(key, "") for key in ("file", "classname", "name"))
    if not file:
        return f"{classname}::{name}" if classname else name
    if not classname:
        return file  # a module that failed to collect
    module = file.removesuffix(".py").replace("/", ".")
    classes = classname[len(module) + 1 :] if classname.startswith(module + ".") else ""
    return "::".join([file, *filter(None, classes.split(".")), name])

"""Every shell and goal example in README.md: run where embedded mode can, checked otherwise.

Each ``victor`` command line in a ``sh`` block must name a real command and only options it
has; the commands that run without a fleet are run and their output is checked; the goal-spec
example is run as written. The Python example is tests/orchestrator/test_guide_calls.py.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer

from orchestrator.cli import app
from tasks.catalog import SearchCodeInput
from tasks.search import search_code
from tests.conftest import ROOT
from tests.orchestrator.test_cli import clean_env, victor
from workers.core.settings import Settings
from workers.skills.spec import SkillContext

README = (ROOT / "README.md").read_text()
# Lines of sh blocks that are not victor commands, and why they are not run here.
NOT_VICTOR = {
    "make run": "the Makefile's own target (installs, then runs victor analyze .)",
    "make test": "the suite itself",
    "curl": "needs a running API and a key (tests/orchestrator/api cover the route)",
}


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, re.S)


def command_lines() -> list[str]:
    """Each command of the sh blocks, comments dropped, continuation lines joined."""
    lines: list[str] = []
    for block in blocks("sh"):
        text = re.sub(r"\\\n\s*", " ", block)
        for raw in text.splitlines():
            line = raw.split("  #", 1)[0].split(" # ", 1)[0].strip()
            line = re.sub(r"^(?:[A-Z_]+=\S+ )+", "", line)  # VICTOR_API_URL=... victor submit
            if line.startswith("#") or not line:
                continue
            if not line.startswith(("victor", "make", "curl")):
                lines[-1] += " " + line  # a synopsis wrapped onto the next line
                continue
            lines.append(line)
    return lines


def victor_commands() -> list[list[str]]:
    """Each ``victor ...`` synopsis split at ``|`` into one word list per alternative."""
    commands: list[list[str]] = []
    for line in command_lines():
        if not line.startswith("victor"):
            continue
        for part in line.split(" | "):
            words = shlex.split(part.replace("[", " ").replace("]", " ").replace("'", ""))
            if words and words[0] == "victor":
                commands.append(words[1:])
            elif commands:
                commands[-1].extend(words)  # "| src/ --include ..." belongs to the one before
    return commands


def resolve(words: list[str]) -> tuple[str, Any]:
    """The command path the words name, and its command (typer vendors click: duck-typed)."""
    command: Any = typer.main.get_command(app)
    path: list[str] = []
    for word in words:
        subcommands = getattr(command, "commands", None)
        if subcommands is None or word not in subcommands:
            break
        command = subcommands[word]
        path.append(word)
    return " ".join(path), command


def test_every_sh_line_of_the_readme_is_a_victor_command_or_accounted_for() -> None:
    lines = command_lines()
    assert len(lines) > 30
    for line in lines:
        if not line.startswith("victor"):
            assert any(line.startswith(prefix) for prefix in NOT_VICTOR), line


@pytest.mark.parametrize("words", victor_commands(), ids=" ".join)
def test_each_victor_synopsis_names_a_command_and_only_its_options(words: list[str]) -> None:
    path, command = resolve(words)
    assert path, f"victor {' '.join(words)}: no such command"
    options = {name for param in command.params for name in (*param.opts, *param.secondary_opts)}
    named = {word.split("=")[0] for word in words if re.fullmatch(r"--?[a-zA-Z][\w-]*(=.*)?", word)}
    assert named <= options, f"victor {path} has no {sorted(named - options)}"


def test_the_goal_spec_example_runs_and_reports_its_matches(tmp_path: Path) -> None:
    [spec] = blocks("yaml")
    goal = tmp_path / "goal.yaml"
    goal.write_text(spec)
    outcomes = tmp_path / "outcomes.jsonl"
    result = victor("run", str(goal), "--out", str(outcomes), cwd=ROOT, env=clean_env())
    assert result.returncode == 0, result.stderr
    job = json.loads(result.stdout)
    files = sorted(
        str(path) for root in ("workers", "tasks") for path in (ROOT / root).rglob("*.py")
    )
    context = SkillContext(settings=Settings(allowed_roots=[ROOT]))
    expected: dict[str, list[int]] = {}
    for file in files:
        found = search_code(SearchCodeInput(path=file, pattern="TODO"), context)
        if found["matches"]:
            expected[file] = [int(line) for line, _ in found["matches"]]
    assert expected, "the example's search finds nothing: pick a pattern that occurs"
    report = job["result"]
    assert report["totals"]["matches"] == sum(len(lines) for lines in expected.values())
    shown = {row["path"]: row["lines"] for row in report["matches_by_file"]}
    assert len(shown) == min(5, len(expected))  # top: 5
    for path, lines in shown.items():
        assert lines == expected[path]
    [step] = job["steps"]
    assert (step["skill"], step["failed"]) == ("search_code", 0)
    assert step["items"] == step["succeeded"] == len(files)
    assert len(outcomes.read_text().splitlines()) == len(files)


def test_the_using_it_commands_run_embedded_as_written(tmp_path: Path) -> None:
    analyzed = victor("analyze", "tasks", "--json", "--top", "2", cwd=ROOT, env=clean_env())
    assert analyzed.returncode == 0, analyzed.stderr
    report = json.loads(analyzed.stdout)
    assert report["totals"]["files"] > 5 and len(report["largest_files"]) == 2
    listed = victor("skills", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert {"analyze_code", "search_code", "report"} <= set(rows)
    assert all(isinstance(row["available"], bool) for row in rows.values())
    groups = victor("bench", "list", cwd=tmp_path)
    assert groups.returncode == 0 and groups.stdout.split(), groups.stderr


def test_the_api_client_commands_name_the_settings_they_need() -> None:
    for block in blocks("sh"):
        for line in block.splitlines():
            if re.search(r"\bvictor (submit|jobs)\b", line):
                assert "VICTOR_API_URL=" in line and "VICTOR_API_KEY=" in line, line


def test_the_imports_the_readme_names_in_its_prose_work() -> None:
    statements = re.findall(r"`(from [\w.]+ import \w+)`", README)
    assert "from orchestrator.bench.runner import run_benchmark" in statements
    for statement in statements:
        exec(statement, {})  # the README's own import lines

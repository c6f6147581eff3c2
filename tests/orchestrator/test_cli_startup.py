"""``victor --help`` lists commands without importing the groups; the list matches the app."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import click
import typer.main

from orchestrator.cli import COMMANDS, GROUPS, build_app

HEAVY = ("workers", "celery", "redis", "fastapi", "flower", "openai", "anthropic", "tree_sitter")


def test_the_command_table_matches_every_groups_commands_and_help() -> None:
    group: Any = typer.main.get_command(build_app())
    context = click.Context(group)
    found = {}
    for name in group.list_commands(context):
        command = group.get_command(context, name)
        assert command is not None
        found[name] = command.get_short_help_str(limit=1000)
    assert set(found) == set(COMMANDS)
    for name, (_, summary) in COMMANDS.items():
        shown = summary.removesuffix("...").rstrip(" ,.:")
        assert found[name].startswith(shown), name


def test_each_command_is_registered_by_the_group_the_table_names() -> None:
    for name, (module, _) in COMMANDS.items():
        assert module in GROUPS
        group: Any = typer.main.get_command(build_app((module,)))
        assert group.get_command(click.Context(group), name) is not None, name


def test_help_imports_no_group_settings_redis_or_sdk() -> None:
    code = (
        "import sys\n"
        "sys.argv = ['victor', '--help']\n"
        "from orchestrator.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "analyze" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "[]"

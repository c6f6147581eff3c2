"""``python -m orchestrator.cli``: the ``victor`` command."""

from orchestrator.cli import main

main()

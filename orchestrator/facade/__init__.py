"""The async Python facade of the performance guide: ``from orchestrator.facade import
Orchestrator``. It sits above ``core`` and ``batch``, whose calls it offers."""

from orchestrator.facade.orchestrator import Orchestrator

__all__ = ["Orchestrator"]

"""``victor doctor``: the guide's troubleshooting, read from live metrics and settings."""

from orchestrator.doctor.rules import Finding, diagnose

__all__ = ["Finding", "diagnose"]

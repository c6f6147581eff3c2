"""Errors raised by victor-fleet.

Tree::

    VictorError
    ├── ConfigError            bad or inconsistent settings
    ├── SkillError
    │   ├── UnknownSkillError  no skill with that name
    │   ├── MissingExtraError  a skill's optional dependency is not installed
    │   └── SkillInputError    a skill's parameters do not match its input model
    ├── AccessDeniedError      a path is outside the allowed roots
    ├── PlanError              a goal cannot be turned into a plan
    ├── JobError
    │   └── JobNotFoundError   no job with that id
    └── BackendUnavailableError  Redis (broker, backend or cache) cannot be reached
"""

from __future__ import annotations


class VictorError(Exception):
    """Raised for any error of victor-fleet; the root of the tree."""


class ConfigError(VictorError):
    """Raised when a setting is invalid or settings contradict each other."""


class SkillError(VictorError):
    """Raised when a skill cannot be found, loaded or run."""


class UnknownSkillError(SkillError):
    """Raised when no skill has the requested name."""


class MissingExtraError(SkillError):
    """Raised when a skill needs an optional dependency that is not installed."""


class SkillInputError(SkillError):
    """Raised when a skill's parameters do not validate against its input model."""


class AccessDeniedError(VictorError):
    """Raised when a path lies outside the allowed roots (or escapes through a symlink)."""


class PlanError(VictorError):
    """Raised when a goal cannot be turned into a plan."""


class JobError(VictorError):
    """Raised when a job cannot be recorded, read or followed."""


class JobNotFoundError(JobError):
    """Raised when no job has the requested id."""


class BackendUnavailableError(VictorError):
    """Raised when Redis (broker, result backend or cache) cannot be reached."""

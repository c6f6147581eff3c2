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
    │   └── GoalInputError     items or reduce parameters do not fit their skill
    ├── JobError
    │   ├── JobNotFoundError   no job with that id
    │   ├── JobStateError      the job's state does not allow the request
    │   └── JobOutcomeUnknownError  a client lost sight of a running job (Redis away too long)
    ├── ApiError                 an API request is refused
    │   ├── AuthenticationError  no API key, or an unknown one
    │   ├── ScopeError           the key lacks the scope a route needs
    │   ├── RateLimitError       the key is past its request rate
    │   ├── IdempotencyError     an Idempotency-Key is reused with another body, or in flight
    │   ├── BadRequestError      a request body is not valid JSON
    │   └── UnsupportedMediaTypeError  a request body is not application/json
    ├── ApiClientError           the API answered the CLI client with an error, or is unreachable
    │   └── ApiRequestError      the API refused the request itself (400, 413, 415, 422)
    └── BackendUnavailableError  Redis (broker, backend or cache) cannot be reached
"""

from __future__ import annotations

from typing import Any


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


class GoalInputError(PlanError):
    """Raised when a goal's items or reduce parameters do not fit their skills' input models.

    ``problems`` lists each as ``{"loc": (...), "msg", "type"}`` from the goal's root, so the API
    can name the fields.
    """

    def __init__(self, message: str, problems: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.problems = problems


class JobError(VictorError):
    """Raised when a job cannot be recorded, read or followed."""


class JobNotFoundError(JobError):
    """Raised when no job has the requested id."""


class JobStateError(JobError):
    """Raised when a job's state does not allow the request (revoking a finished job)."""


class JobOutcomeUnknownError(JobError):
    """Raised when a client stops following a job it cannot reach; the job may still finish."""


class ApiError(VictorError):
    """Raised when the API refuses a request (mapped to a 4xx status in one handler)."""


class AuthenticationError(ApiError):
    """Raised when a request carries no API key or one that is not known."""


class ScopeError(ApiError):
    """Raised when an API key lacks the scope a route needs."""


class RateLimitError(ApiError):
    """Raised when an API key is past its request rate; ``retry_after_s`` says when to retry."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class IdempotencyError(ApiError):
    """Raised when an Idempotency-Key is reused with another body (or is still in flight)."""

    def __init__(self, message: str, in_flight: bool = False) -> None:
        super().__init__(message)
        self.in_flight = in_flight


class BadRequestError(ApiError):
    """Raised when a request body does not parse as JSON."""


class UnsupportedMediaTypeError(ApiError):
    """Raised when a request body is sent with a content type other than application/json."""


class ApiClientError(VictorError):
    """Raised when the API answers the command-line client with an error or cannot be reached."""


class ApiRequestError(ApiClientError):
    """Raised when the API refuses the client's request as wrong (a bad goal or body): the
    same mistake ``victor run`` refuses with exit code 2."""


class BackendUnavailableError(VictorError):
    """Raised when Redis (broker, result backend or cache) cannot be reached."""

"""Errors of provider calls (a branch of the tree in ``workers.core.errors``).

Tree::

    SkillError
    └── ProviderError                 a model provider call failed
        ├── ProviderConfigError       no provider, no key, or no base URL for a local server
        ├── ProviderTimeoutError      no answer within the provider's timeout setting
        ├── ProviderUnavailableError  429/5xx or no connection, still so after the retries
        ├── ProviderRequestError      the provider refused the request (4xx other than 429)
        └── ProviderBusyError         no fleet-wide slot freed up in time

Messages name the provider and the setting to change; they never carry an API key.
"""

from __future__ import annotations

from workers.core.errors import SkillError


class ProviderError(SkillError):
    """Raised when a call to a model provider fails."""


class ProviderConfigError(ProviderError):
    """Raised when the provider settings do not allow a call (no provider, key or base URL)."""


class ProviderTimeoutError(ProviderError):
    """Raised when a provider does not answer within its timeout setting."""


class ProviderUnavailableError(ProviderError):
    """Raised when a provider keeps answering 429/5xx, or cannot be reached, past max_retries."""


class ProviderRequestError(ProviderError):
    """Raised when a provider refuses a request (authentication, bad request, unknown model)."""


class ProviderBusyError(ProviderError):
    """Raised when no fleet-wide slot for a provider frees up within the wait allowed."""

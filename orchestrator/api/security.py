"""Route dependencies: authenticate the key, check the scope, count the request against the rate."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from orchestrator.api.fast_submit import authorize
from orchestrator.api.keystore import KeyStore, Principal
from orchestrator.api.quotas import rate_limited
from orchestrator.api.services import Services, get_services
from workers.core.errors import ScopeError
from workers.core.redis_client import translated

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key from `victor api-key create`, sent as `Authorization: Bearer <key>`.",
)


async def get_key_store(request: Request) -> KeyStore:
    return request.app.state.key_store  # type: ignore[no-any-return]


def check_rate(services: Services, principal: Principal) -> None:
    """Fixed window per key in Redis: INCR the window's counter; past the limit, 429."""
    settings = services.settings
    now = time.time()
    window = int(now // settings.api_rate_window_s)
    key = services.keys.rate_limit(principal.key_id, window)
    with translated("counting a request against the rate limit"):
        pipe = services.redis.pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, settings.api_rate_window_s + 1)
        count, _ = pipe.execute()
    if int(count) > settings.api_rate_limit:
        raise rate_limited(settings, principal, now)


def require(scope: str) -> Callable[..., Principal]:
    """A dependency that lets a request through only with a key holding ``scope``."""

    def dependency(
        services: Annotated[Services, Depends(get_services)],
        store: Annotated[KeyStore, Depends(get_key_store)],
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Principal:
        principal = store.authenticate(credentials.credentials if credentials else None)
        if not principal.allows(scope):
            raise ScopeError(
                f"this key (tenant {principal.tenant!r}) lacks the {scope!r} scope; create a key "
                f"with --scopes {scope}"
            )
        check_rate(services, principal)
        return principal

    dependency.__name__ = f"require_{scope}"
    return dependency


async def submitter_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """The submit route's check, on the event loop: its rate is counted by the submit script.

    ``credentials`` declares the bearer scheme in the schema; the header is read by
    ``fast_submit.authorize``, which the middleware in front of the router shares.
    """
    return await authorize(request)


SubmitPrincipal = Annotated[Principal, Depends(require("submit"))]
AsyncSubmitPrincipal = Annotated[Principal, Depends(submitter_principal)]
ReadPrincipal = Annotated[Principal, Depends(require("read"))]
AdminPrincipal = Annotated[Principal, Depends(require("admin"))]
ServicesDep = Annotated[Services, Depends(get_services)]

"""``POST /v1/jobs`` answered before FastAPI's router: the API's busiest route, without its
routing, dependency solving and exception layers (about 40% of a submission's CPU).

It does what the route in ``routes/jobs.py`` does, in the same order and with the same
answers: the bearer key (401), the submit scope (403), the body (415, 400, 422), then the
submit script. A request it is not sure about (a query string, an Idempotency-Key header
outside 1..255 characters, several of them) goes to the FastAPI app, whose route stays the
documented one (OpenAPI) and answers exactly as before. Errors are answered by the app's own
handlers (``orchestrator.api.errors``), so both paths speak the same error body.
"""

from __future__ import annotations

import json

from fastapi.exceptions import RequestValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from orchestrator.api import jobs
from orchestrator.api.errors import on_validation_error, on_victor_error
from orchestrator.api.keystore import KeyStore, Principal
from orchestrator.api.submit import Submitter
from workers.core.errors import ScopeError, VictorError

PATH = "/v1/jobs"
MAX_IDEMPOTENCY_KEY = 255


class FastSubmitMiddleware:
    """Answers ``POST /v1/jobs`` itself; everything else goes to ``app``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or scope["path"] != PATH
            or scope.get("query_string")
        ):
            await self.app(scope, receive, send)
            return
        keys = [value for name, value in scope["headers"] if name == b"idempotency-key"]
        if len(keys) > 1 or (keys and not 1 <= len(keys[0]) <= MAX_IDEMPOTENCY_KEY):
            await self.app(scope, receive, send)  # FastAPI's own 422 for the header
            return
        idempotency_key = keys[0].decode("latin-1") if keys else None
        request = Request(scope, receive)
        try:
            response = await answer(request, await authorize(request), idempotency_key)
        except VictorError as exc:
            response = await on_victor_error(request, exc)
        except RequestValidationError as exc:
            response = await on_validation_error(request, exc)
        await response(scope, receive, send)


async def authorize(request: Request) -> Principal:
    """The caller of a submission: a known bearer key (401) with the submit scope (403)."""
    state = request.app.state
    submitter: Submitter = state.submitter
    store: KeyStore = state.key_store
    principal = await store.authenticate_async(bearer_token(request), submitter.client())
    if not principal.allows("submit"):
        await submitter.count_rate(principal)
        raise ScopeError(
            f"this key (tenant {principal.tenant!r}) lacks the 'submit' scope; create a key "
            "with --scopes submit"
        )
    return principal


async def answer(request: Request, principal: Principal, idempotency_key: str | None) -> Response:
    """Plan the body's goal, record the job, queue its tasks; the 202 (or raise the error)."""
    submitter: Submitter = request.app.state.submitter
    body = await request.body()
    try:
        data = jobs.decode_json(body, request.headers.get("content-type"))
        goal = jobs.parse_goal_body(data)
    except Exception:
        await submitter.count_rate(principal)  # a bad body counts against the rate too
        raise
    accepted, replayed = await submitter.submit(principal, goal, idempotency_key)
    headers = {"Location": accepted["links"]["self"]}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return Response(
        json.dumps(accepted), status_code=202, media_type="application/json", headers=headers
    )


def bearer_token(request: Request) -> str | None:
    """The key of ``Authorization: Bearer <key>`` (None otherwise, as FastAPI's HTTPBearer)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    return token

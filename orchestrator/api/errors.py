"""Error responses: one handler maps the error tree to status codes (domain code never picks)."""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from workers.core.errors import (
    AccessDeniedError,
    AuthenticationError,
    BackendUnavailableError,
    BadRequestError,
    IdempotencyError,
    JobNotFoundError,
    JobStateError,
    PlanError,
    RateLimitError,
    ScopeError,
    SkillError,
    UnsupportedMediaTypeError,
    VictorError,
)

# (status, code) per error class; the first match in this order wins.
STATUS: list[tuple[type[VictorError], int, str]] = [
    (AuthenticationError, 401, "unauthenticated"),
    (ScopeError, 403, "missing_scope"),
    (RateLimitError, 429, "rate_limited"),
    (BadRequestError, 400, "bad_json"),
    (UnsupportedMediaTypeError, 415, "unsupported_media_type"),
    (JobNotFoundError, 404, "not_found"),
    (JobStateError, 409, "conflict"),
    (PlanError, 422, "invalid_goal"),
    (SkillError, 422, "invalid_goal"),
    (AccessDeniedError, 422, "path_not_allowed"),
    (BackendUnavailableError, 503, "backend_unavailable"),
]


def error_response(
    status: int,
    code: str,
    message: str,
    fields: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "fields": fields or []}}
    return JSONResponse(body, status_code=status, headers=headers)


def status_of(exc: VictorError) -> tuple[int, str]:
    if isinstance(exc, IdempotencyError):
        return (409, "idempotency_in_flight") if exc.in_flight else (422, "idempotency_mismatch")
    for kind, status, code in STATUS:
        if isinstance(exc, kind):
            return status, code
    return 500, "internal"


async def on_victor_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, VictorError)
    status, code = status_of(exc)
    headers: dict[str, str] = {}
    if isinstance(exc, AuthenticationError):
        headers["WWW-Authenticate"] = 'Bearer realm="victor"'
    elif isinstance(exc, RateLimitError):
        headers["Retry-After"] = str(exc.retry_after_s)
    elif isinstance(exc, BackendUnavailableError | IdempotencyError):
        headers["Retry-After"] = "1"
    fields = getattr(exc, "fields", None)
    return error_response(status, code, str(exc), fields, headers)


def describe_location(location: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(part) for part in location]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:] if parts[0] == "body" else parts
    return ".".join(parts) or "body"


async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [
        {"field": describe_location(error.get("loc", ())), "message": error.get("msg", "")}
        for error in exc.errors()
    ]
    message = "; ".join(f"{problem['field']}: {problem['message']}" for problem in problems)
    return error_response(422, "invalid_request", message or "invalid request", problems)


async def on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    codes = {404: "not_found", 405: "method_not_allowed", 400: "bad_request"}
    detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        # The router names the methods of the first route on the path only; list them all.
        allowed = allowed_methods(request, headers.get("Allow", ""))
        headers["Allow"] = ", ".join(allowed)
        if request.method == "OPTIONS":
            return Response(status_code=204, headers=headers)
        detail = f"{request.method} is not allowed on {request.url.path}; use {headers['Allow']}"
    return error_response(
        exc.status_code, codes.get(exc.status_code, "http_error"), detail, headers=headers
    )


def allowed_methods(request: Request, named: str = "") -> list[str]:
    """Every method a route serves on the request's path (from the schema), and OPTIONS.

    ``named`` is what the router's own ``Allow`` said (the first route on the path only).
    """
    methods = {"OPTIONS", *(name.strip() for name in named.split(",") if name.strip())}
    path = request.url.path
    for pattern, served in _route_methods(request.app):
        if pattern.fullmatch(path):
            methods |= served
    order = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    return sorted(methods, key=lambda name: (order.index(name) if name in order else 99, name))


def _route_methods(app: Any) -> list[tuple[re.Pattern[str], set[str]]]:
    """(path pattern, methods) per path of the app's schema, built once per app."""
    cached: list[tuple[re.Pattern[str], set[str]]] | None = getattr(
        app.state, "route_methods", None
    )
    if cached is None:
        cached = []
        for template, operations in app.openapi()["paths"].items():
            pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
            cached.append((re.compile(pattern), {method.upper() for method in operations}))
        app.state.route_methods = cached
    return cached


async def on_unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    return error_response(500, "internal", "internal error; the server log has the details")


def install_handlers(app: FastAPI) -> None:
    app.add_exception_handler(VictorError, on_victor_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected_error)


# Documented on every route that takes a key (the schema lists the errors a client may see).
AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": "ErrorResponse", "description": "No API key, or an unknown one."},
    403: {"model": "ErrorResponse", "description": "The key lacks the route's scope."},
    429: {
        "model": "ErrorResponse",
        "description": "Past the key's request rate or its tenant's jobs in flight; Retry-After.",
    },
    503: {"model": "ErrorResponse", "description": "Redis is unreachable; retry later."},
}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` entry for a route: the auth errors plus ``statuses``."""
    from orchestrator.api.models import ErrorResponse

    descriptions = {
        400: "The body is not valid JSON.",
        404: "No such job for this tenant.",
        409: "The request conflicts with the job's state or an in-flight request.",
        413: "The body is over the size limit.",
        415: "The body is not application/json.",
        422: "The request does not validate; the message names the field.",
    }
    out: dict[int | str, dict[str, Any]] = {
        status: {"model": ErrorResponse, "description": entry["description"]}
        for status, entry in AUTH_RESPONSES.items()
    }
    for status in statuses:
        out[status] = {"model": ErrorResponse, "description": descriptions[status]}
    return out


def event_stream_responses(description: str, example: str) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` entry for a Server-Sent Events route: 404 and 422, and its 200
    described as a ``text/event-stream`` with an example."""
    return {
        **responses(404, 422),
        200: {
            "description": description,
            "content": {
                "text/event-stream": {
                    "schema": {"type": "string", "description": description},
                    "example": example,
                }
            },
        },
    }

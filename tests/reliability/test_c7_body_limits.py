"""C7: bodies over the limit answer 413 and are cut off early, whether declared by
Content-Length or streamed chunked without one; we measure how many bytes the server read.

"Read" is counted where uvicorn hands the body to the application (an ASGI wrapper around the
API): uvicorn itself stops reading the socket once its buffer is full (flow control), so the
bytes the client manages to push are bounded by the kernel's socket buffers on top of that.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import tests.orchestrator.api.conftest as api_fixtures
from orchestrator.api.app import create_api
from orchestrator.harness.audit import AuditResult
from tests.reliability.api_support import API_OVERRIDES

pytestmark = [pytest.mark.redis]

LIMIT = 64 * 1024
PIECE = 16 * 1024


class CountingApp:
    """ASGI wrapper: bytes of request body the application pulled, per request path + method."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.read: list[int] = []
        self._lock = threading.Lock()

    async def __call__(self, scope: Any, receive: Callable[..., Any], send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with self._lock:
            slot = len(self.read)
            self.read.append(0)

        async def counted() -> Any:
            message = await receive()
            if message["type"] == "http.request":
                with self._lock:
                    self.read[slot] += len(message.get("body", b""))
            return message

        await self.app(scope, counted, send)


def _exchange(url: str, head: bytes, pieces: Callable[[int], bytes], total: int) -> dict[str, Any]:
    """Send ``head`` then body pieces until the server answers or closes; time and count."""
    host, port = url.removeprefix("http://").split(":")
    sent = 0
    answer = b""
    started = time.perf_counter()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head)
        sock.settimeout(0.01)
        index = 0
        while sent < total and b"\r\n\r\n" not in answer:
            try:
                sock.sendall(pieces(index))
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                break
            sent += PIECE
            index += 1
            try:
                answer += sock.recv(65536)
            except (TimeoutError, BlockingIOError):
                continue
            except ConnectionResetError:
                break
        sock.settimeout(5)
        while b"\r\n\r\n" not in answer:
            try:
                data = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not data:
                break
            answer += data
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0
    return {
        "status": status,
        "client_sent": sent,
        "answer_s": round(time.perf_counter() - started, 4),
    }


def _head(key: str, length: str | None) -> bytes:
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return (
        f"POST /v1/jobs HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {key}\r\n{framing}\r\n\r\n"
    ).encode()


def _body(size: int) -> bytes:
    """A valid goal of exactly ``size`` bytes (padded with spaces)."""
    core = b'{"steps": [{"skill": "noop", "items": [{"value": 1}]}]}'
    return core + b" " * (size - len(core))


def test_c7_over_limit_bodies_get_413_and_are_cut_off_early(
    redis_settings, live_api, monkeypatch
) -> None:
    wrapped: list[CountingApp] = []

    def counting_api(settings: Any) -> CountingApp:
        wrapped.append(CountingApp(create_api(settings)))
        return wrapped[-1]

    monkeypatch.setattr(api_fixtures, "create_api", counting_api)
    api = live_api(redis_settings(**API_OVERRIDES, api_max_body_bytes=LIMIT))
    counter = wrapped[0]
    key = api.key()
    filler = b" " * PIECE
    declared_total = 64 * 1024 * 1024
    figures: dict[str, dict[str, Any]] = {}

    def run(name: str, head: bytes, piece: Callable[[int], bytes], total: int) -> dict[str, Any]:
        before = len(counter.read)
        outcome = _exchange(api.url, head, piece, total)
        time.sleep(0.05)
        outcome["server_read"] = sum(counter.read[before:])
        figures[name] = outcome
        return outcome

    declared = run("declared_64MiB", _head(key, str(declared_total)), lambda _: filler, 8 << 20)
    assert declared["status"] == 413, declared
    assert declared["server_read"] == 0, declared  # refused on the header alone

    chunk = b"%x\r\n%s\r\n" % (PIECE, filler)
    chunked = run("chunked_no_length", _head(key, None), lambda _: chunk, 8 << 20)
    assert chunked["status"] == 413, chunked
    assert chunked["server_read"] <= LIMIT + PIECE, chunked  # stopped at the first piece over
    assert chunked["client_sent"] < 8 << 20, chunked  # cut off long before the client finished

    over_by_one = run("declared_limit_plus_1", _head(key, str(LIMIT + 1)), lambda _: b"", 0)
    assert over_by_one["status"] == 413, over_by_one

    body = _body(LIMIT)
    exact = run("declared_at_limit", _head(key, str(LIMIT)) + body, lambda _: b"", 0)
    assert exact["status"] == 202, exact
    assert exact["server_read"] == LIMIT

    small = _body(2000)
    chunked_ok = run(
        "chunked_under_limit",
        _head(key, None) + b"%x\r\n%s\r\n0\r\n\r\n" % (len(small), small),
        lambda _: b"",
        0,
    )
    assert chunked_ok["status"] == 202, chunked_ok

    bad_length = run("content_length_not_a_number", _head(key, "ten"), lambda _: b"", 0)
    assert bad_length["status"] == 400, bad_length

    AuditResult(
        scenario="C7",
        accepted=2,
        completed=0,
        lost=0,
        unexpected=0,
        dup_exec=0,
        dup_effect=0,
        recovery_s=None,
        executions=0,
        extra={"limit_bytes": LIMIT, "piece_bytes": PIECE, "cases": figures},
    ).write()

"""A fake model provider on 127.0.0.1: the OpenAI and Anthropic wire formats, for tests and bench.

It answers chat (whole and streamed as server-sent events), embeddings and errors, and counts
what a test asserts on: requests, requests in flight at once, connections open at once.
Behaviour is set on the server object: ``delay_s`` per request, and ``plan_errors`` for the
next answers (status, ``Retry-After``). Error bodies echo the request's credentials, so a test
can prove the client never lets them out.
"""

from __future__ import annotations

import hashlib
import json
import select
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

LOOPBACK = "127.0.0.1"
EMBEDDING_DIMENSIONS = 8


@dataclass
class PlannedError:
    """An error answer: status, and ``Retry-After`` seconds when set."""

    status: int
    retry_after_s: float | None = None


@dataclass
class Seen:
    """One request as the server saw it."""

    path: str
    at: float
    body: dict[str, Any]
    credential: str
    status: int = 200


@dataclass
class Counters:
    """What the server counted (guarded by the server's lock)."""

    in_flight: int = 0
    max_in_flight: int = 0
    connections: int = 0
    max_connections: int = 0
    connections_opened: int = 0
    requests: list[Seen] = field(default_factory=list)


class FakeProviderServer(ThreadingHTTPServer):
    """The server; ``url`` is the OpenAI-style base (``.../v1``), ``root`` the bare address."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, delay_s: float = 0.0) -> None:
        super().__init__((LOOPBACK, 0), _Handler)
        self.delay_s = delay_s
        self.counters = Counters()
        self.lock = threading.Lock()
        self.planned: list[PlannedError] = []
        self.always: PlannedError | None = None
        self.stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def root(self) -> str:
        return f"http://{LOOPBACK}:{self.server_address[1]}"

    @property
    def url(self) -> str:
        return f"{self.root}/v1"

    def start(self) -> FakeProviderServer:
        self._thread = threading.Thread(
            target=self.serve_forever, name="fake-provider", daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        self.stopping.set()
        self.shutdown()
        self.server_close()

    def plan_errors(self, status: int, count: int, retry_after_s: float | None = None) -> None:
        """Answer the next ``count`` requests with ``status``."""
        with self.lock:
            self.planned.extend(PlannedError(status, retry_after_s) for _ in range(count))

    def reset(self) -> None:
        with self.lock:
            self.counters = Counters()
            self.planned = []
            self.always = None

    def requests(self) -> list[Seen]:
        with self.lock:
            return list(self.counters.requests)

    def next_error(self) -> PlannedError | None:
        with self.lock:
            if self.planned:
                return self.planned.pop(0)
            return self.always


def reply_text(body: dict[str, Any]) -> str:
    """The fake's answer: ``echo: `` and the last message's text."""
    messages = body.get("messages") or [{}]
    content = messages[-1].get("content", "")
    if isinstance(content, list):
        content = " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return f"echo: {content}"


def fake_embedding(text: str) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [round(byte / 255, 4) for byte in digest[:EMBEDDING_DIMENSIONS]]


def openai_completion(model: str, text: str) -> dict[str, Any]:
    """A whole (not streamed) OpenAI chat completion answering ``text``."""
    choice = {
        "index": 0,
        "message": {"role": "assistant", "content": text},
        "finish_reason": "stop",
    }
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [choice],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def anthropic_message(model: str, text: str) -> dict[str, Any]:
    """A whole Anthropic message answering ``text``."""
    return {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeProviderServer

    def log_message(self, format: str, *args: Any) -> None:
        return

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes: without this, Nagle's algorithm and the
        # client's delayed ACK add ~40 ms to every answer.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        counters = self.server.counters
        with self.server.lock:
            counters.connections += 1
            counters.connections_opened += 1
            counters.max_connections = max(counters.max_connections, counters.connections)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.server.lock:
                self.server.counters.connections -= 1

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b"{}"
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {}
        credential = self.headers.get("Authorization") or self.headers.get("x-api-key") or ""
        seen = Seen(self.path, time.monotonic(), body, credential)
        self._left = False
        server = self.server
        with server.lock:
            server.counters.requests.append(seen)
            server.counters.in_flight += 1
            server.counters.max_in_flight = max(
                server.counters.max_in_flight, server.counters.in_flight
            )
        try:
            if server.delay_s and not self._wait_while_connected(server.delay_s):
                self.close_connection = True
                return
            error = server.next_error()
            if error is not None:
                seen.status = error.status
                self._error(error, credential)
            else:
                self._answer(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            self._leave_flight()

    def _leave_flight(self) -> None:
        """The request stops counting as in flight (once): right before its last bytes go out,
        since the client may act on them (free its slot) before this thread runs again."""
        if getattr(self, "_left", False):
            return
        self._left = True
        with self.server.lock:
            self.server.counters.in_flight -= 1

    def _wait_while_connected(self, seconds: float) -> bool:
        """Wait ``seconds``; False as soon as the client hangs up (a killed worker)."""
        deadline = time.monotonic() + seconds
        while not self.server.stopping.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            readable, _, _ = select.select([self.connection], [], [], min(left, 0.02))
            if readable:
                try:
                    if not self.connection.recv(1, socket.MSG_PEEK):
                        return False
                except OSError:
                    return False
        return False

    def _answer(self, body: dict[str, Any]) -> None:
        path = self.path.rstrip("/")
        model = str(body.get("model", "fake"))
        if path.endswith("/embeddings"):
            texts = body.get("input") or []
            texts = [texts] if isinstance(texts, str) else texts
            data = [
                {"object": "embedding", "index": index, "embedding": fake_embedding(str(text))}
                for index, text in enumerate(texts)
            ]
            usage = {"prompt_tokens": len(texts), "total_tokens": len(texts)}
            self._json(200, {"object": "list", "data": data, "model": model, "usage": usage})
        elif path.endswith("/chat/completions"):
            self._openai_chat(body, model)
        elif path.endswith("/messages"):
            self._anthropic_chat(body, model)
        else:
            self._json(404, {"error": {"message": f"no route {path}", "type": "not_found"}})

    def _openai_chat(self, body: dict[str, Any], model: str) -> None:
        text = reply_text(body)
        if not body.get("stream"):
            self._json(200, openai_completion(model, text))
            return
        self._start_events()
        for piece in _pieces(text):
            chunk = {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": model,
                "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
            }
            self._event(None, chunk)
        self._leave_flight()
        self._chunk(b"data: [DONE]\n\n")
        self._chunk(b"")

    def _anthropic_chat(self, body: dict[str, Any], model: str) -> None:
        text = reply_text(body)
        message = anthropic_message(model, text)
        if not body.get("stream"):
            self._json(200, message)
            return
        self._start_events()
        self._event(
            "message_start", {"type": "message_start", "message": {**message, "content": []}}
        )
        block = {"type": "text", "text": ""}
        self._event(
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": block},
        )
        for piece in _pieces(text):
            delta = {"type": "text_delta", "text": piece}
            self._event(
                "content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}
            )
        self._event("content_block_stop", {"type": "content_block_stop", "index": 0})
        self._event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": 1},
            },
        )
        self._leave_flight()
        self._event("message_stop", {"type": "message_stop"})
        self._chunk(b"")

    def _error(self, error: PlannedError, credential: str) -> None:
        # A careless server echoes the credential: the client must not pass it on.
        message = f"fake error {error.status} for credential {credential}"
        headers = {}
        if error.retry_after_s is not None:
            headers["Retry-After"] = f"{error.retry_after_s:g}"
        body = {"type": "error", "error": {"message": message, "type": "fake_error"}}
        self._json(error.status, body, headers)

    def _json(
        self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(payload).encode()
        self._leave_flight()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _start_events(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _event(self, name: str | None, payload: dict[str, Any]) -> None:
        line = f"event: {name}\n" if name else ""
        self._chunk(f"{line}data: {json.dumps(payload)}\n\n".encode())

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


def _pieces(text: str) -> list[str]:
    """``text`` in pieces of up to 4 characters (so a stream has several events)."""
    return [text[index : index + 4] for index in range(0, len(text), 4)] or [""]

"""A real HTTP server on 127.0.0.1 for the fetch tests, and their shared helpers."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

import tasks.fetch
from tasks.catalog import FetchInput
from tasks.fetch import fetch
from workers.core.settings import Settings
from workers.skills.spec import SkillContext

LOOPBACK = "127.0.0.1"
SECRET = "Bearer s3cret-token-123"
BIG = 4096
SLOW_S = 1.5


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so the client's pool can reuse a connection
    hits: dict[str, int] = {}

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        self._route()

    def do_HEAD(self) -> None:
        self._route()

    def do_POST(self) -> None:
        self._route()

    def _send(
        self,
        status: int,
        body: bytes = b"",
        content_type: str = "text/plain; charset=utf-8",
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _route(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path = url.path
        _Handler.hits[path] = _Handler.hits.get(path, 0) + 1
        if path == "/hello":
            self._send(200, b"hello", headers=(("Set-Cookie", "session=abc; Path=/"),))
        elif path.startswith("/status/"):
            self._send(int(path.rsplit("/", 1)[1]), b"status body")
        elif path == "/big":
            self._send(200, b"x" * BIG)
        elif path == "/png":
            self._send(200, b"\x89PNG\r\n\x1a\n\x00\xff", "image/png")
        elif path == "/slow":
            time.sleep(SLOW_S)
            self._send(200, b"late")
        elif path == "/redirect":
            status = int(query.get("status", ["302"])[0])
            self._send(status, headers=(("Location", query["to"][0]),))
        elif path.startswith("/chain/"):
            left = int(path.rsplit("/", 1)[1])
            if left == 0:
                self._send(200, b"end")
            else:
                self._send(302, headers=(("Location", f"/chain/{left - 1}"),))
        elif path == "/echo":
            seen = {
                "method": self.command,
                "host": self.headers.get("Host"),
                "body": body.decode(),
                "authorization": "Authorization" in self.headers,
                "cookie": self.headers.get("Cookie"),
                "accept_encoding": self.headers.get("Accept-Encoding"),
                "port": self.client_address[1],
            }
            self._send(200, json.dumps(seen).encode(), "application/json")
        else:
            self._send(404, b"not found")


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # a client that gave up (timeout tests) is expected


@contextmanager
def serve() -> Iterator[str]:
    """Run the server in a thread; yields its base URL (``http://127.0.0.1:PORT``)."""
    httpd = _Server((LOOPBACK, 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{LOOPBACK}:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def hits(path: str) -> int:
    """How many requests the server has answered for ``path``."""
    return _Handler.hits.get(path, 0)


def reset_client() -> None:
    """Close and forget this process's pooled fetch client."""
    state = tasks.fetch._client_state
    if state is not None:
        state[2].close()
    tasks.fetch._client_state = None


def port_of(url: str) -> str:
    return url.rsplit(":", 1)[1]


def fake_dns(monkeypatch: pytest.MonkeyPatch, table: dict[str, list[str]]) -> list[str]:
    """Answer lookups of the names in ``table``; returns the log of names looked up."""
    looked_up: list[str] = []
    real = tasks.fetch.resolve

    def resolve(host: str, port: int) -> list[str]:
        looked_up.append(host)
        return table[host] if host in table else real(host, port)

    monkeypatch.setattr(tasks.fetch, "resolve", resolve)
    return looked_up


def context(*hosts: str, **values: Any) -> SkillContext:
    return SkillContext(settings=Settings(fetch_allowed_hosts=list(hosts), **values))


def run(url: str, *hosts: str, settings: dict[str, Any] | None = None, **params: Any) -> Any:
    return fetch(FetchInput(url=url, **params), context(*hosts, **(settings or {})))

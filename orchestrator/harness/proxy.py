"""A small TCP proxy in front of a Redis: pass, delay, drop or black-hole connections.

Start it, point clients at ``proxy.url``, then change its mode mid-run:

- ``pass``: forward bytes both ways (the default);
- ``delay``: forward each chunk after ``delay_s`` seconds;
- ``drop``: close every open connection now and close new ones on accept (a reset);
- ``blackhole``: keep connections open but forward nothing (a silent network partition).
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time
from typing import Literal

from orchestrator.harness.redis_server import free_port

Mode = Literal["pass", "delay", "drop", "blackhole"]


class TcpProxy:
    """Threaded loopback proxy: one thread accepts, one thread per connection pair."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1", port: int = 0) -> None:
        self.target = (target_host, target_port)
        self.port = port or free_port()
        self.mode: Mode = "pass"
        self.delay_s = 0.0
        self.connections = 0
        self._server: socket.socket | None = None
        self._pairs: set[tuple[socket.socket, socket.socket]] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> TcpProxy:
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(128)
        server.settimeout(0.1)
        self._server = server
        self._thread = threading.Thread(target=self._accept_loop, name="tcp-proxy", daemon=True)
        self._thread.start()
        return self

    # --- modes ------------------------------------------------------------------------------
    def passthrough(self) -> None:
        self.mode = "pass"
        self.delay_s = 0.0

    def delay(self, seconds: float) -> None:
        self.delay_s = seconds
        self.mode = "delay"

    def drop(self) -> None:
        """Reset every open connection; new ones are closed on accept until ``passthrough``."""
        self.mode = "drop"
        self._close_all()

    def blackhole(self) -> None:
        self.mode = "blackhole"

    # --- internals --------------------------------------------------------------------------
    def _close_all(self) -> None:
        with self._lock:
            pairs = list(self._pairs)
            self._pairs.clear()
        for client, upstream in pairs:
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                    )
                with contextlib.suppress(OSError):
                    sock.close()

    def _accept_loop(self) -> None:
        assert self._server is not None
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.mode == "drop":
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=2)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            client.settimeout(None)
            with self._lock:
                self._pairs.add((client, upstream))
                self.connections += 1
            threading.Thread(
                target=self._pump, args=(client, upstream), name="tcp-proxy-pump", daemon=True
            ).start()

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        selector = selectors.DefaultSelector()
        peers = {client: upstream, upstream: client}
        try:
            selector.register(client, selectors.EVENT_READ)
            selector.register(upstream, selectors.EVENT_READ)
            while not self._stop.is_set():
                if self.mode == "blackhole":
                    time.sleep(0.05)
                    continue
                for key, _ in selector.select(timeout=0.1):
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    data = sock.recv(65536)
                    if not data:
                        return
                    if self.mode == "delay" and self.delay_s > 0:
                        time.sleep(self.delay_s)
                    peers[sock].sendall(data)
        except (OSError, ValueError):
            return
        finally:
            selector.close()
            with self._lock:
                self._pairs.discard((client, upstream))
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.close()

    def close(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.close()
        self._close_all()
        if self._thread is not None:
            self._thread.join(2)

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

"""A peaked HTTP backend on loopback: throughput peaks at ``optimum`` concurrent requests.

Each request's service time is ``base_ms * max(1, inflight / optimum) ** exponent``, with
``inflight`` counted when it arrives (itself included). With ``c`` clients each keeping one
request in flight, throughput is ``c / base`` up to the optimum and ``peak * (optimum / c) **
(exponent - 1)`` past it: with an exponent above 1, concurrency past the optimum costs
throughput (a dependency that thrashes), so the best fixed concurrency is the optimum.

``PeakedServer`` is the server (a ``ThreadingHTTPServer``, one thread per connection, HTTP/1.1
keep-alive); ``BackendProcess`` runs one in a subprocess of its own (``python -m
orchestrator.harness.backend``), so the caller's GIL never delays it, and stops it by pid.
``GET /stats`` answers its counters as JSON (``?reset=1`` also restarts the in-flight peak);
every other path is a request to serve.
"""

from __future__ import annotations

import argparse
import http.client
import json
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from orchestrator.harness.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class PeakedModel:
    """The hidden truth: the optimum, the uncontended service time and how fast it degrades."""

    optimum: int
    base_ms: float
    exponent: float = 2.0

    def __post_init__(self) -> None:
        if self.optimum < 1 or self.base_ms <= 0 or self.exponent < 0:
            raise ValueError(f"{self}: need optimum >= 1, base_ms > 0, exponent >= 0")

    @classmethod
    def with_peak(cls, optimum: int, peak_per_s: float, exponent: float = 2.0) -> PeakedModel:
        """The model whose throughput at the optimum is ``peak_per_s`` requests a second."""
        return cls(optimum=optimum, base_ms=1000.0 * optimum / peak_per_s, exponent=exponent)

    def service_ms(self, inflight: int) -> float:
        """How long one request takes with ``inflight`` requests in flight (itself included)."""
        load: float = max(1.0, inflight / self.optimum) ** self.exponent
        return self.base_ms * load

    def throughput(self, concurrency: int) -> float:
        """Requests a second ``concurrency`` clients get with no time between their requests."""
        if concurrency < 1:
            return 0.0
        return concurrency * 1000.0 / self.service_ms(concurrency)


@dataclass
class BackendStats:
    """What the backend did since it started (the peak: since the last reset)."""

    served: int = 0
    inflight: int = 0
    peak_inflight: int = 0
    inflight_sum: int = 0  # in-flight counts at arrival, summed: / arrivals = mean concurrency
    arrivals: int = 0
    service_ms_sum: float = 0.0
    broken: int = 0  # answers the client was no longer there for (a killed worker)


class PeakedServer(ThreadingHTTPServer):
    """The threaded HTTP server; ``serve_in_thread`` runs it in a daemon thread."""

    daemon_threads = True
    request_queue_size = 512

    def __init__(self, model: PeakedModel, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__((host, port), _Handler)
        self.model = model
        self.stats = BackendStats()
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def arrive(self) -> float:
        """Count a request in; return its service time in seconds."""
        with self.lock:
            stats = self.stats
            stats.inflight += 1
            stats.arrivals += 1
            stats.inflight_sum += stats.inflight
            stats.peak_inflight = max(stats.peak_inflight, stats.inflight)
            return self.model.service_ms(stats.inflight) / 1000.0

    def leave(self, service_s: float, delivered: bool) -> None:
        with self.lock:
            self.stats.inflight -= 1
            self.stats.served += 1
            self.stats.service_ms_sum += service_s * 1000.0
            self.stats.broken += 0 if delivered else 1

    def snapshot(self, reset: bool = False) -> dict[str, Any]:
        """The counters, the model and the time, as JSON-able data."""
        with self.lock:
            figures: dict[str, Any] = asdict(self.stats)
            if reset:
                self.stats.peak_inflight = self.stats.inflight
        figures.update(at=time.time(), model=asdict(self.model))
        return figures

    def serve_in_thread(self) -> PeakedServer:
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()
        return self

    def close(self) -> None:
        if self.thread is not None:
            self.shutdown()
            self.thread.join(5)
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the fetch skill's pooled client reuses sockets
    disable_nagle_algorithm = True  # headers and body go in two writes: no 40 ms delayed ACK
    server: PeakedServer

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path == "/stats":
            reset = parse_qs(parts.query).get("reset", ["0"])[0] == "1"
            self._answer(json.dumps(self.server.snapshot(reset)).encode(), "application/json")
            return
        service_s = self.server.arrive()
        delivered = False
        try:
            time.sleep(service_s)
            delivered = self._answer(b"ok\n", "text/plain")
        finally:
            self.server.leave(service_s, delivered)

    def _answer(self, body: bytes, content_type: str) -> bool:
        try:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return True
        except OSError:  # the client went away (a killed worker): nothing to answer
            self.close_connection = True
            return False

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: one line per request would cost more than the request."""


class BackendProcess:
    """A ``PeakedServer`` in a subprocess of its own on a free loopback port, stopped by pid."""

    def __init__(self, model: PeakedModel, port: int | None = None) -> None:
        self.model = model
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 15) -> BackendProcess:
        model = self.model
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "orchestrator.harness.backend",
                f"--port={self.port}",
                f"--optimum={model.optimum}",
                f"--base-ms={model.base_ms}",
                f"--exponent={model.exponent}",
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the peaked backend exited with {self.process.returncode}")
            try:
                self.stats()
                return self
            except OSError:
                time.sleep(0.05)
        self.close()
        raise RuntimeError(
            f"the peaked backend on port {self.port} did not answer in {timeout_s} s"
        )

    def stats(self, reset: bool = False) -> dict[str, Any]:
        """The backend's counters (``GET /stats``)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            connection.request("GET", "/stats?reset=1" if reset else "/stats")
            figures: dict[str, Any] = json.loads(connection.getresponse().read())
            return figures
        finally:
            connection.close()

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def __enter__(self) -> BackendProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def main(argv: list[str] | None = None) -> None:
    """Serve a peaked backend on 127.0.0.1 until killed."""
    parser = argparse.ArgumentParser(description="Serve a peaked backend on 127.0.0.1.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--optimum", type=int, required=True)
    parser.add_argument("--base-ms", type=float, required=True)
    parser.add_argument("--exponent", type=float, default=2.0)
    options = parser.parse_args(argv)
    model = PeakedModel(options.optimum, options.base_ms, options.exponent)
    server = PeakedServer(model, port=options.port)
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()

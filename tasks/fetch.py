"""fetch: one HTTP request to a host in ``fetch_allowed_hosts`` (C8), through a pooled client.

Every URL, the first and each redirect hop, must pass in order: 1. the allow-list is not
empty (else fetch is off); 2. scheme http or https, a host, no ``user:password@``; 3. the host
is listed (a name by that name, an address literal by that address); 4. after DNS, in the
connection pool's network backend: resolved addresses that are loopback, private, link-local,
multicast, unspecified, otherwise not global or cloud metadata (also inside IPv4-mapped, 6to4,
Teredo and NAT64 forms) are dropped unless listed by address; none left is a refusal.

DNS rebinding: the backend resolves a name once per new connection, checks the addresses and
connects to exactly those (the URL, Host header and TLS SNI keep the name): no second lookup
between check and connect. Pooled connections were checked when opened; the client is rebuilt
when the allow-list changes. Redirects are followed here, never by httpx. Environment proxies
are ignored (a proxy would resolve names itself); cookies are never stored (the client serves
every call in the process). ``getaddrinfo`` has no timeout: the task's time limit bounds it.
"""

from __future__ import annotations

import base64
import os
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from typing import Any

import httpcore
import httpx

from tasks.catalog import FetchInput
from workers.core.errors import AccessDeniedError, SkillError, SkillInputError
from workers.core.settings import Settings
from workers.skills.spec import SkillContext

Address = IPv4Address | IPv6Address

_METADATA = frozenset(ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254"))
_NAT64 = ip_network("64:ff9b::/96")
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_SECRET_HEADERS = ("authorization", "proxy-authorization", "cookie")
_RESULT_HEADERS = tuple(
    "content-type content-length content-encoding content-language content-disposition etag "
    "last-modified cache-control expires date location retry-after".split()
)
_HEADER_VALUE_CHARS = 1024
_TEXT_TYPES = frozenset(
    {"application/json", "application/xml", "application/javascript", "application/x-ndjson"}
)
_ENV = "fetch_allowed_hosts (VICTOR_FETCH_ALLOWED_HOSTS)"


def parse_address(text: str) -> Address | None:
    """``text`` as an IP address (IPv4-mapped IPv6 as its IPv4, no zone), else None."""
    try:
        address = ip_address(text.split("%", 1)[0].removeprefix("[").removesuffix("]"))
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def special_kind(address: Address) -> str | None:
    """Why an address needs listing by address (``"loopback"``...), or None for a public one."""
    inner: list[Address] = [address]
    if isinstance(address, IPv6Address):
        if address.sixtofour is not None:
            inner.append(address.sixtofour)
        if address.teredo is not None:
            inner.append(address.teredo[1])
        if address in _NAT64:
            inner.append(IPv4Address(int(address) & 0xFFFFFFFF))
    for candidate in inner:
        kind = _kind(candidate)
        if kind is not None:
            return kind if candidate is address else f"{kind} ({candidate} inside {address})"
    return None


def _kind(address: Address) -> str | None:
    checks = (
        (address in _METADATA, "cloud metadata"),
        (address.is_loopback, "loopback"),
        (address.is_link_local, "link-local"),
        (address.is_multicast, "multicast"),
        (address.is_unspecified, "unspecified"),
        (address.is_private, "private"),
        (not address.is_global, "not globally routable"),
    )
    return next((kind for matched, kind in checks if matched), None)


def resolve(host: str, port: int) -> list[str]:
    """The addresses of ``host`` (one DNS lookup, in the resolver's order)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise httpcore.ConnectError(f"cannot resolve {host!r}: {exc}") from exc
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class FetchPolicy:
    """The allow-list: host names and addresses (from ``fetch_allowed_hosts``)."""

    names: frozenset[str]
    addresses: frozenset[Address]

    @classmethod
    def from_hosts(cls, hosts: Iterable[str]) -> FetchPolicy:
        names: set[str] = set()
        addresses: set[Address] = set()
        for entry in hosts:
            host = entry.strip().lower().rstrip(".")
            address = parse_address(host)
            if address is None:
                names.add(host)
            else:
                addresses.add(address)
        return cls(frozenset(names), frozenset(addresses))

    def check_url(self, text: str) -> httpx.URL:
        """Parse ``text``; refuse another scheme, credentials, no host or an unlisted host."""
        try:
            url = httpx.URL(text)
        except httpx.InvalidURL as exc:
            raise SkillInputError(f"url {text!r} is not a valid URL: {exc}") from exc
        if url.scheme not in ("http", "https"):
            shown = f"scheme {url.scheme!r}" if url.scheme else "no scheme"
            raise SkillInputError(
                f"url {text!r} has {shown}; fetch speaks http and https only: "
                "use an http:// or https:// URL"
            )
        if url.userinfo:
            raise SkillInputError(
                "url carries user:password@; send credentials in an Authorization header"
            )
        if not url.raw_host:
            raise SkillInputError(f"url {text!r} has no host; give one, as http://host/path")
        self.check_host(url.raw_host.decode("ascii"))
        return url

    def check_host(self, host: str) -> None:
        """Refuse a host not listed (an address literal must be listed as that address)."""
        host = host.lower().rstrip(".")
        address = parse_address(host)
        listed = host in self.names if address is None else address in self.addresses
        if not listed:
            raise AccessDeniedError(
                f"host {host!r} is not in {_ENV}; add it to allow fetching from it"
            )

    def connectable(self, host: str, port: int) -> list[Address]:
        """The checked addresses to connect to for ``host``; refused when none is left."""
        self.check_host(host)
        literal = parse_address(host)
        found = (
            [literal] if literal is not None else [parse_address(a) for a in resolve(host, port)]
        )
        candidates = [address for address in found if address is not None]
        refused = {
            address: kind
            for address in candidates
            if address not in self.addresses and (kind := special_kind(address)) is not None
        }
        allowed = [address for address in candidates if address not in refused]
        if not allowed:
            reasons = ", ".join(f"{address} ({kind})" for address, kind in refused.items())
            raise AccessDeniedError(
                f"host {host!r} resolves only to refused addresses: {reasons or 'none'}; "
                f"list the address itself in {_ENV} to allow it (listing the name is not enough)"
            )
        return allowed


class _CheckedBackend(httpcore.SyncBackend):
    """Resolves, checks, then connects to the checked address (no second lookup)."""

    def __init__(self, policy: FetchPolicy) -> None:
        self.policy = policy

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        error: httpcore.ConnectError | None = None
        for address in self.policy.connectable(host, port):
            try:
                return super().connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as exc:  # try the next checked address
                error = exc
        assert error is not None
        raise error


_client_lock = threading.Lock()
_client_state: tuple[int, FetchPolicy, httpx.Client] | None = None


def process_client(policy: FetchPolicy) -> httpx.Client:
    """This process's pooled client: built on first use, again after a fork or a new allow-list."""
    global _client_state
    with _client_lock:
        pid = os.getpid()
        state = _client_state
        if state is not None and state[0] == pid and state[1] == policy:
            return state[2]
        if state is not None and state[0] == pid:
            state[2].close()  # its pooled connections were checked against the old allow-list
        # After a fork the parent's client is dropped, not closed: its sockets are the parent's.
        client = _new_client(policy)
        _client_state = (pid, policy, client)
        return client


def _new_client(policy: FetchPolicy) -> httpx.Client:
    transport = httpx.HTTPTransport(trust_env=False)
    # httpx has no public hook for the network backend: give the transport a pool that has one.
    transport._pool = httpcore.ConnectionPool(
        ssl_context=httpx.create_ssl_context(),
        network_backend=_CheckedBackend(policy),
        # No cap of its own (httpcore's default is 10): the worker's pool size, which the tuner
        # sets, bounds the requests this process has in flight.
        max_connections=None,
    )
    return httpx.Client(
        transport=transport,
        follow_redirects=False,
        trust_env=False,
        cookies=CookieJar(DefaultCookiePolicy(allowed_domains=[])),
    )


def fetch(params: FetchInput, context: SkillContext) -> dict[str, Any]:
    """Send the request, follow checked redirects, return status, headers and a bounded body.

    An HTTP error status is a result; a refusal, a connection error or a timeout is raised.
    """
    settings = context.settings
    policy = FetchPolicy.from_hosts(settings.fetch_allowed_hosts)
    if not (policy.names or policy.addresses):
        raise AccessDeniedError(
            "fetch is off: set VICTOR_FETCH_ALLOWED_HOSTS (a comma-separated or JSON list of "
            "host names and addresses) to allow fetching from those hosts"
        )
    timeout_s = min(params.timeout_s or settings.fetch_timeout_s, settings.fetch_timeout_s)
    started = time.monotonic()
    url = policy.check_url(params.url)
    headers = httpx.Headers(params.headers)
    # Compressed bodies would be inflated in memory before the byte cap applies.
    headers.setdefault("accept-encoding", "identity")
    hop = _Hop(params.method, url, headers, params.body)
    secrets = [params.headers[k] for k in params.headers if k.lower() in _SECRET_HEADERS]
    client = process_client(policy)
    redirects: list[dict[str, Any]] = []
    try:
        while True:
            remaining = started + timeout_s - time.monotonic()
            if remaining <= 0:
                raise httpx.ReadTimeout("the whole request took too long")
            request = client.build_request(
                hop.method, hop.url, headers=hop.headers, content=hop.body, timeout=remaining
            )
            response = client.send(request, stream=True)
            try:
                location = response.headers.get("location")
                if response.status_code not in _REDIRECTS or location is None:
                    data, truncated = _read_body(response, settings, started + timeout_s)
                    return _result(params.url, response, data, truncated, redirects, started)
                hop = _next_hop(policy, settings, hop, response, location, redirects)
            finally:
                response.close()
    except httpx.TimeoutException as exc:
        cause = f"timed out after {timeout_s:g} s; raise timeout_s, up to VICTOR_FETCH_TIMEOUT_S"
        raise SkillError(_scrub(f"fetch of {str(hop.url)!r} {cause}", secrets)) from exc
    except httpx.HTTPError as exc:
        cause = str(exc) or type(exc).__name__
        raise SkillError(_scrub(f"fetch of {str(hop.url)!r} failed: {cause}", secrets)) from exc


@dataclass
class _Hop:
    method: str
    url: httpx.URL
    headers: httpx.Headers
    body: str | None


def _next_hop(
    policy: FetchPolicy,
    settings: Settings,
    hop: _Hop,
    response: httpx.Response,
    location: str,
    redirects: list[dict[str, Any]],
) -> _Hop:
    """The request a redirect asks for, checked like the first one (RFC 9110 method rules)."""
    try:
        target = str(hop.url.join(location))
    except httpx.InvalidURL as exc:
        raise SkillError(f"{hop.url} redirected to an invalid URL {location!r}: {exc}") from exc
    if len(redirects) >= settings.fetch_max_redirects:
        raise SkillError(
            f"too many redirects: more than fetch_max_redirects ({settings.fetch_max_redirects}) "
            f"from {redirects[0]['url'] if redirects else str(hop.url)!r}, next to {target!r}; "
            "raise VICTOR_FETCH_MAX_REDIRECTS or fetch the final URL directly"
        )
    try:
        url = policy.check_url(target)
    except (AccessDeniedError, SkillInputError) as exc:
        raise type(exc)(f"redirect from {str(hop.url)!r} refused: {exc}") from exc
    redirects.append({"url": str(hop.url), "status": response.status_code, "location": target})
    method, body, headers = hop.method, hop.body, httpx.Headers(hop.headers)
    status = response.status_code
    if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
        method, body = "GET", None
        headers.pop("content-type", None)
    if (url.scheme, url.host, url.port) != (hop.url.scheme, hop.url.host, hop.url.port):
        for name in _SECRET_HEADERS:
            headers.pop(name, None)
    return _Hop(method, url, headers, body)


def _read_body(response: httpx.Response, settings: Settings, deadline: float) -> tuple[bytes, bool]:
    """Read at most ``fetch_max_bytes`` as a stream; True when the body was cut off."""
    limit = settings.fetch_max_bytes
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        if time.monotonic() > deadline:
            raise httpx.ReadTimeout("the body took too long")
        if size + len(chunk) > limit:
            chunks.append(chunk[: limit - size])
            return b"".join(chunks), True
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks), False


def _result(
    url: str,
    response: httpx.Response,
    data: bytes,
    truncated: bool,
    redirects: list[dict[str, Any]],
    started: float,
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "url": url,
        "final_url": str(response.url),
        "status": response.status_code,
        "headers": {
            name: response.headers[name][:_HEADER_VALUE_CHARS]
            for name in _RESULT_HEADERS
            if name in response.headers
        },
        "bytes": len(data),
        "truncated": truncated,
        "elapsed_ms": round((time.monotonic() - started) * 1000, 1),
        "redirects": redirects,
    }
    text = _as_text(response, data)
    if text is None:
        result["body_b64"] = base64.b64encode(data).decode("ascii")
    else:
        result["text"] = text
    return result


def _as_text(response: httpx.Response, data: bytes) -> str | None:
    """The body as text when its content type is textual (or absent and UTF-8), else None."""
    mime = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if mime.startswith("text/") or mime in _TEXT_TYPES or mime.endswith(("+json", "+xml")):
        try:
            return data.decode(response.charset_encoding or "utf-8", errors="replace")
        except LookupError:  # an unknown charset name
            return data.decode("utf-8", errors="replace")
    try:
        return None if mime else data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _scrub(message: str, secrets: list[str]) -> str:
    """``message`` with every secret header value replaced (errors never carry them)."""
    for secret in secrets:
        if secret:
            message = message.replace(secret, "[redacted]")
    return message

"""fetch's policy without a network: address kinds, the allow-list, the pooled client, the
fetch settings and the input model."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from ipaddress import ip_address

import pytest
from pydantic import ValidationError

from tasks.catalog import FetchInput
from tasks.fetch import FetchPolicy, parse_address, process_client, special_kind
from tests.conftest import ROOT
from tests.tasks.fetch_server import reset_client
from workers.core.errors import AccessDeniedError, ConfigError, SkillInputError
from workers.core.settings import Settings


@pytest.fixture(autouse=True)
def _fresh_client() -> Iterator[None]:
    reset_client()
    yield
    reset_client()


# --- addresses ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("8.8.8.8", None),
        ("2606:4700::1111", None),
        ("169.254.169.254", "cloud metadata"),
        ("169.254.170.2", "cloud metadata"),
        ("fd00:ec2::254", "cloud metadata"),
        ("127.0.0.1", "loopback"),
        ("127.9.9.9", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("fd12:3456::1", "private"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("100.64.0.1", "not globally routable"),
        ("2002:7f00:1::", "loopback (127.0.0.1 inside 2002:7f00:1::)"),
        ("64:ff9b::a9fe:a9fe", "cloud metadata (169.254.169.254 inside 64:ff9b::a9fe:a9fe)"),
    ],
)
def test_special_addresses_are_named_by_kind(address: str, kind: str | None) -> None:
    parsed = parse_address(address)
    assert parsed is not None
    assert special_kind(parsed) == kind


def test_ipv4_mapped_addresses_are_read_as_ipv4() -> None:
    assert parse_address("::ffff:127.0.0.1") == ip_address("127.0.0.1")
    assert parse_address("[::1]") == ip_address("::1")
    assert parse_address("fe80::1%eth0") == ip_address("fe80::1")
    assert parse_address("localhost") is None


# --- the allow-list -----------------------------------------------------------------------


def test_the_allow_list_splits_names_from_addresses() -> None:
    policy = FetchPolicy.from_hosts(["Example.org.", "127.0.0.1", "::ffff:10.0.0.1"])
    assert policy.names == {"example.org"}
    assert policy.addresses == {ip_address("127.0.0.1"), ip_address("10.0.0.1")}


def test_a_listed_name_does_not_list_its_address() -> None:
    policy = FetchPolicy.from_hosts(["localhost"])
    policy.check_host("localhost")
    with pytest.raises(AccessDeniedError, match=r"'127\.0\.0\.1' is not in"):
        policy.check_host("127.0.0.1")
    with pytest.raises(AccessDeniedError, match="resolves only to refused addresses"):
        policy.connectable("localhost", 80)


def test_a_listed_address_is_connectable_even_when_special() -> None:
    policy = FetchPolicy.from_hosts(["169.254.169.254"])
    assert policy.connectable("169.254.169.254", 80) == [ip_address("169.254.169.254")]


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("HTTP://EXAMPLE.ORG/a", None),
        ("https://example.org:8443/a?b=c", None),
        ("http:///nohost", "has no host"),
        ("http://user:pw@example.org/", "Authorization header"),
        ("ws://example.org/", "scheme 'ws'"),
        ("example.org/path", "no scheme"),
    ],
)
def test_urls_are_checked_before_any_connection(url: str, fragment: str | None) -> None:
    policy = FetchPolicy.from_hosts(["example.org"])
    if fragment is None:
        assert policy.check_url(url).host == "example.org"
    else:
        with pytest.raises(SkillInputError, match=fragment):
            policy.check_url(url)


# --- the pooled client --------------------------------------------------------------------


def test_the_pooled_client_is_reused_in_a_process() -> None:
    policy = FetchPolicy.from_hosts(["example.org"])
    client = process_client(policy)
    assert process_client(policy) is client
    assert process_client(FetchPolicy.from_hosts(["example.org"])) is client


def test_the_pooled_client_is_recreated_after_a_fork(monkeypatch: pytest.MonkeyPatch) -> None:
    policy = FetchPolicy.from_hosts(["example.org"])
    parent = process_client(policy)
    monkeypatch.setattr(os, "getpid", lambda: -12345)
    child = process_client(policy)
    assert child is not parent
    assert not parent.is_closed  # the parent's sockets are left to the parent
    assert process_client(policy) is child


def test_a_new_allow_list_gets_a_new_client() -> None:
    first = process_client(FetchPolicy.from_hosts(["example.org"]))
    second = process_client(FetchPolicy.from_hosts(["example.com"]))
    assert second is not first and first.is_closed


def test_the_client_does_not_follow_redirects_or_read_proxies() -> None:
    client = process_client(FetchPolicy.from_hosts(["example.org"]))
    assert client.follow_redirects is False
    assert client.trust_env is False


def test_importing_fetch_builds_no_client() -> None:
    code = "import tasks.fetch as f; print(f._client_state is None)"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == "True"


# --- settings -----------------------------------------------------------------------------


def test_fetch_settings_defaults() -> None:
    settings = Settings()
    assert settings.fetch_allowed_hosts == []
    assert settings.fetch_timeout_s == 10
    assert settings.fetch_max_bytes == 1024 * 1024
    assert settings.fetch_max_redirects == 5


@pytest.mark.parametrize(
    "raw",
    [
        "example.org, 127.0.0.1,,[::1]",
        '["example.org", "127.0.0.1", "::1"]',
        " Example.ORG. ,127.0.0.1 , ::1 ",
    ],
)
def test_allowed_hosts_parse_from_env_as_a_list_or_json(
    monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    monkeypatch.setenv("VICTOR_FETCH_ALLOWED_HOSTS", raw)
    assert Settings().fetch_allowed_hosts == ["example.org", "127.0.0.1", "::1"]


def test_an_empty_env_value_leaves_fetch_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VICTOR_FETCH_ALLOWED_HOSTS", "")
    assert Settings().fetch_allowed_hosts == []


@pytest.mark.parametrize("entry", ["http://example.org", "example.org:8080", "a/b", "bad host"])
def test_an_allowed_host_that_is_not_a_host_is_refused(
    monkeypatch: pytest.MonkeyPatch, entry: str
) -> None:
    monkeypatch.setenv("VICTOR_FETCH_ALLOWED_HOSTS", f"example.com,{entry}")
    with pytest.raises(ConfigError, match="VICTOR_FETCH_ALLOWED_HOSTS") as caught:
        Settings()
    assert "no scheme, port or path" in str(caught.value)


def test_fetch_limits_read_their_env_vars(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VICTOR_FETCH_TIMEOUT_S", "2.5")
    monkeypatch.setenv("VICTOR_FETCH_MAX_BYTES", "4096")
    monkeypatch.setenv("VICTOR_FETCH_MAX_REDIRECTS", "0")
    settings = Settings()
    assert (settings.fetch_timeout_s, settings.fetch_max_bytes) == (2.5, 4096)
    assert settings.fetch_max_redirects == 0


@pytest.mark.parametrize(
    ("name", "value"),
    [("fetch_timeout_s", 0), ("fetch_max_bytes", 0), ("fetch_max_redirects", 51)],
)
def test_fetch_limits_out_of_range_are_refused(name: str, value: int) -> None:
    with pytest.raises(ConfigError, match=f"VICTOR_{name.upper()}"):
        Settings(**{name: value})


# --- the input model ----------------------------------------------------------------------


def test_input_defaults_and_method_case() -> None:
    params = FetchInput(url="http://example.org/", method="head")
    assert (params.method, params.headers, params.body, params.timeout_s) == (
        "HEAD",
        {},
        None,
        None,
    )


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"method": "DELETE"}, "method"),
        ({"headers": {"Host": "other.org"}}, "set by the fetch skill"),
        ({"headers": {"Bad Name": "x"}}, "not a valid HTTP token"),
        ({"headers": {"Authorization": "s3cret\r\nX-Evil: 1"}}, "not printable ASCII"),
        ({"headers": {f"X-{n}": "v" for n in range(51)}}, "at most 50"),
        ({"body": "x"}, "only with POST"),
        ({"body": "x" * (1024 * 1024 + 1), "method": "POST"}, "at most"),
        ({"timeout_s": 0}, "greater than 0"),
    ],
)
def test_bad_input_is_refused(values: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValidationError) as caught:
        FetchInput(url="http://example.org/", **values)
    assert fragment in str(caught.value)
    assert "s3cret" not in _messages(caught)  # what the executor shows omits the value


def _messages(caught: pytest.ExceptionInfo[ValidationError]) -> str:
    return " ".join(str(error["msg"]) for error in caught.value.errors())

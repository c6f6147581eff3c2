"""fetch against a real HTTP server on 127.0.0.1: results, caps, timeouts, refusals (C8)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from tests.tasks.fetch_server import (
    BIG,
    LOOPBACK,
    SECRET,
    SLOW_S,
    fake_dns,
    port_of,
    reset_client,
    run,
    serve,
)
from workers.core.errors import AccessDeniedError, SkillError, SkillInputError


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with serve() as url:
        yield url


@pytest.fixture(autouse=True)
def _fresh_client() -> Iterator[None]:
    reset_client()
    yield
    reset_client()


# --- results ------------------------------------------------------------------------------


def test_allowed_get_returns_status_body_and_headers(server: str) -> None:
    result = run(f"{server}/hello", LOOPBACK)
    assert (result["status"], result["text"], result["bytes"]) == (200, "hello", 5)
    assert result["url"] == result["final_url"] == f"{server}/hello"
    assert result["truncated"] is False and result["redirects"] == []
    assert result["headers"]["content-type"] == "text/plain; charset=utf-8"
    assert "set-cookie" not in result["headers"]
    assert result["elapsed_ms"] >= 0


@pytest.mark.parametrize("status", [404, 500])
def test_an_http_error_status_is_a_result(server: str, status: int) -> None:
    result = run(f"{server}/status/{status}", LOOPBACK)
    assert (result["status"], result["text"]) == (status, "status body")


def test_binary_body_comes_back_as_base64(server: str) -> None:
    result = run(f"{server}/png", LOOPBACK)
    assert "text" not in result
    assert result["body_b64"] == "iVBORw0KGgoA/w=="


def test_post_sends_its_body_and_head_reads_none(server: str) -> None:
    posted = run(f"{server}/echo", LOOPBACK, method="post", body="a=1")
    seen = json.loads(posted["text"])
    assert (seen["method"], seen["body"], seen["accept_encoding"]) == ("POST", "a=1", "identity")
    head = run(f"{server}/hello", LOOPBACK, method="HEAD")
    assert (head["status"], head["text"], head["bytes"]) == (200, "", 0)


def test_body_past_fetch_max_bytes_is_cut_off(server: str) -> None:
    result = run(f"{server}/big", LOOPBACK, settings={"fetch_max_bytes": 100})
    assert (result["bytes"], result["truncated"], result["text"]) == (100, True, "x" * 100)
    whole = run(f"{server}/big", LOOPBACK, settings={"fetch_max_bytes": BIG})
    assert (whole["bytes"], whole["truncated"]) == (BIG, False)


def test_the_fetch_timeout_setting_caps_the_input_timeout(server: str) -> None:
    started = time.monotonic()
    with pytest.raises(SkillError) as caught:
        run(f"{server}/slow", LOOPBACK, settings={"fetch_timeout_s": 0.3}, timeout_s=30)
    assert time.monotonic() - started < SLOW_S
    message = str(caught.value)
    assert f"{server}/slow" in message and "timed out after 0.3 s" in message
    assert "VICTOR_FETCH_TIMEOUT_S" in message


def test_an_input_timeout_below_the_setting_applies(server: str) -> None:
    with pytest.raises(SkillError, match=r"timed out after 0\.2 s"):
        run(f"{server}/slow", LOOPBACK, timeout_s=0.2)


def test_a_connection_error_names_the_url_and_cause_not_the_secret() -> None:
    with pytest.raises(SkillError) as caught:
        run("http://127.0.0.1:1/x", LOOPBACK, headers={"Authorization": SECRET})
    message = str(caught.value)
    assert "http://127.0.0.1:1/x" in message and "refused" in message.lower()
    assert "s3cret" not in message


def test_secret_headers_never_appear_in_results(server: str) -> None:
    result = run(
        f"{server}/echo", LOOPBACK, headers={"Authorization": SECRET, "Cookie": "c=s3cret"}
    )
    assert json.loads(result["text"])["authorization"] is True  # it was sent
    shown = {key: value for key, value in result.items() if key != "text"}
    assert "s3cret" not in json.dumps(shown)


def test_cookies_set_by_a_server_are_not_kept(server: str) -> None:
    run(f"{server}/hello", LOOPBACK)
    assert json.loads(run(f"{server}/echo", LOOPBACK)["text"])["cookie"] is None


def test_connections_are_pooled_across_calls(server: str) -> None:
    first = json.loads(run(f"{server}/echo", LOOPBACK)["text"])
    second = json.loads(run(f"{server}/echo", LOOPBACK)["text"])
    assert first["port"] == second["port"]  # the same kept-alive connection


# --- refusals -----------------------------------------------------------------------------


def test_empty_allow_list_says_fetch_is_off(server: str) -> None:
    with pytest.raises(AccessDeniedError, match="fetch is off: set VICTOR_FETCH_ALLOWED_HOSTS"):
        run(f"{server}/hello")


def test_unlisted_host_is_refused_with_the_fix() -> None:
    with pytest.raises(AccessDeniedError) as caught:
        run("https://example.org/", "example.com")
    assert str(caught.value) == (
        "host 'example.org' is not in fetch_allowed_hosts (VICTOR_FETCH_ALLOWED_HOSTS); "
        "add it to allow fetching from it"
    )


def test_an_address_literal_needs_the_address_listed(server: str) -> None:
    with pytest.raises(AccessDeniedError, match=r"host '127\.0\.0\.1' is not in"):
        run(f"{server}/hello", "localhost")


def test_loopback_is_refused_when_only_its_name_is_listed(server: str) -> None:
    port = port_of(server)
    with pytest.raises(AccessDeniedError) as caught:
        run(f"http://localhost:{port}/hello", "localhost")
    message = str(caught.value)
    assert "127.0.0.1 (loopback)" in message and "listing the name is not enough" in message
    result = run(f"http://localhost:{port}/hello", "localhost", LOOPBACK)
    assert result["text"] == "hello"


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://127.0.0.1/pub",
        "gopher://127.0.0.1:70/",
        "data:text/plain,hi",
        "javascript:alert(1)",
        "127.0.0.1/hello",
    ],
)
def test_schemes_other_than_http_are_refused(url: str) -> None:
    with pytest.raises(SkillInputError, match="http and https only"):
        run(url, LOOPBACK)


def test_credentials_in_the_url_are_refused(server: str) -> None:
    with pytest.raises(SkillInputError, match="Authorization header") as caught:
        run(server.replace("http://", "http://me:s3cret@") + "/hello", LOOPBACK)
    assert "s3cret" not in str(caught.value)


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("169.254.169.254", "cloud metadata"),
        ("fd00:ec2::254", "cloud metadata"),
        ("127.0.0.1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("100.64.0.1", "not globally routable"),
    ],
)
def test_a_listed_name_resolving_to_a_special_address_is_refused(
    monkeypatch: pytest.MonkeyPatch, address: str, kind: str
) -> None:
    fake_dns(monkeypatch, {"internal.test": [address]})
    with pytest.raises(AccessDeniedError, match=rf"'internal.test' resolves only to .*\({kind}\)"):
        run("http://internal.test/latest/meta-data/", "internal.test")


def test_the_metadata_address_literal_is_refused_unless_listed() -> None:
    with pytest.raises(AccessDeniedError, match=r"'169\.254\.169\.254' is not in"):
        run("http://169.254.169.254/latest/meta-data/", "metadata.test", LOOPBACK)


def test_a_checked_address_is_the_one_connected_to(
    server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One lookup per connection: a rebinding answer for a second lookup is never asked for.
    looked_up = fake_dns(monkeypatch, {"rebind.test": [LOOPBACK]})
    port = port_of(server)
    result = run(f"http://rebind.test:{port}/echo", "rebind.test", LOOPBACK)
    assert json.loads(result["text"])["host"] == f"rebind.test:{port}"  # the name is kept
    assert looked_up == ["rebind.test"]


def test_mixed_answers_connect_only_to_allowed_addresses(
    server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_dns(monkeypatch, {"mixed.test": ["169.254.169.254", LOOPBACK]})
    port = port_of(server)
    assert run(f"http://mixed.test:{port}/hello", "mixed.test", LOOPBACK)["text"] == "hello"

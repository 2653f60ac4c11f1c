"""Credentials in ``base_url`` (``http://user:password@host``): sent as Basic auth through
``requests``, and never written into an error message, a traceback or a log line."""

from __future__ import annotations

import logging
import socket
import traceback

import pytest

from django_experience.api import ExperienceClient
from django_experience.api.connections import split_url
from django_experience.api.errors import ConnectionFailed, RequestTimeout
from django_experience.api.retry import RetryPolicy
from django_experience.api.transport import redact_credentials
from tests.api.payloads import profile_answer
from tests.api.slow_server import SlowAnswer, SlowServer
from tests.stub_server import StubServer

NO_RETRIES = RetryPolicy(max_retries=0)
SECRET = "s3cr3t-pw"


def _with_credentials(url: str) -> str:
    return url.replace("http://", f"http://user:{SECRET}@")


def _all_text(exc: BaseException) -> str:
    """What a log of ``exc`` with its traceback would show."""
    return "".join(traceback.format_exception(exc))


def test_credentials_are_sent_as_basic_auth() -> None:
    with StubServer(profile_answer) as stub:
        client = ExperienceClient(
            "org", base_url=_with_credentials(stub.url), timeout=2, retry_policy=NO_RETRIES
        )
        assert client.get_profile("p-1").profile.id == "p-1"
        client.get_profile("p-1")  # and again, on the connection kept
        assert [r.header("Authorization") for r in stub.requests] == [
            "Basic dXNlcjpzM2NyM3QtcHc="
        ] * 2
    assert stub.requests[0].header("Host") == stub.url.removeprefix("http://")


def test_a_failed_connection_names_no_password(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens there
    client = ExperienceClient(
        "org",
        base_url=_with_credentials(f"http://127.0.0.1:{port}"),
        timeout=2,
        retry_policy=NO_RETRIES,
    )
    with caplog.at_level(logging.DEBUG), pytest.raises(ConnectionFailed) as caught:
        client.get_profile("p-1")
    assert f"http://***@127.0.0.1:{port}/" in str(caught.value)
    assert SECRET not in _all_text(caught.value) and SECRET not in caplog.text


def test_a_timeout_names_no_password(caplog: pytest.LogCaptureFixture) -> None:
    with SlowServer(SlowAnswer(header_delay=2.0)) as server:
        client = ExperienceClient(
            "org", base_url=_with_credentials(server.url), timeout=0.3, retry_policy=NO_RETRIES
        )
        with caplog.at_level(logging.DEBUG), pytest.raises(RequestTimeout) as caught:
            client.get_profile("p-1")
    assert "***@" in str(caught.value)
    assert SECRET not in _all_text(caught.value) and SECRET not in caplog.text


def test_the_client_and_its_refusals_name_no_password() -> None:
    client = ExperienceClient("org", base_url=f"https://user:{SECRET}@experience.example")
    assert repr(client).endswith("base_url='https://***@experience.example')")
    with pytest.raises(ValueError, match="base_url") as caught:
        ExperienceClient("org", base_url=f"ftp://user:{SECRET}@experience.example")
    assert SECRET not in str(caught.value)


def test_the_kept_alive_path_never_takes_user_information_for_the_host() -> None:
    assert split_url(f"http://user:{SECRET}@127.0.0.1:8080/v2") == (
        ("http", "127.0.0.1", 8080),
        "/v2",
    )
    assert split_url("https://a:b@c@[::1]/p") == (("https", "::1", 443), "/p")


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("GET http://user:pw@host/x failed", "GET http://***@host/x failed"),
        ("'https://user:p@ss@host:1?q=a@b'", "'https://***@host:1?q=a@b'"),
        (
            "Failed to parse: http://u:p@bad..example/v2",
            "Failed to parse: http://***@bad..example/v2",
        ),
        ("http://host/path?mail=a@b.example", "http://host/path?mail=a@b.example"),
        ("no url, user@example.com", "no url, user@example.com"),
        # A password with a raw /, ? or #: still the user information, not a path.
        ("GET http://user:pa/ss@host/x", "GET http://***@host/x"),
        ("'https://u:p?w#d@host:1/v2'", "'https://***@host:1/v2'"),
        ("https://:s/cret@host", "https://***@host"),
        # A port is no password: a path or query holding an @ stays as it is.
        ("http://host:8080/path?mail=a@b.example", "http://host:8080/path?mail=a@b.example"),
        ("http://host:8080?mail=a@b", "http://host:8080?mail=a@b"),
        ("http://host:8080 user@example.com", "http://host:8080 user@example.com"),
    ],
)
def test_redact_credentials(text: str, redacted: str) -> None:
    assert redact_credentials(text) == redacted

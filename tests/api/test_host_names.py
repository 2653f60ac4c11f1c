"""A host name no resolver takes (an empty label, one longer than 63 characters) is refused when
the client is built, as a bad ``base_url`` is; below the client, the connection layers report
one as a connection failure, never as a bare ``UnicodeError`` or urllib3 ``LocationParseError``.
"""

from __future__ import annotations

import socket

import pytest
import requests

from django_experience.api import ExperienceClient
from django_experience.api.errors import ConnectionFailed
from django_experience.api.http11 import Connection
from django_experience.api.resolver import resolve
from django_experience.api.retry import Deadline
from django_experience.api.transport import send
from tests.api.payloads import profile_answer
from tests.stub_server import StubServer

LONG_LABEL = "a" * 64


@pytest.mark.parametrize(
    ("base_url", "problem"),
    [
        ("http://bad..example", "empty label"),
        ("https://.example", "empty label"),
        (f"http://{LONG_LABEL}.example", "longer than 63 characters"),
        (f"http://user:pw@{LONG_LABEL}.example:8080/x", "longer than 63 characters"),
        ("http://" + ".".join(["a" * 60] * 5), "longer than 253 characters"),
        ("http://exa mple.example", "a space or a control character"),
        ("http://exa\x00mple.example", "a space or a control character"),
        ("http://b\u00fccher..example", "not a valid host name"),
        ("http://:8080", "must name a host"),
        ("http://host:abc", "not a valid URL"),
        ("http://host:70000", "not a valid URL"),
        ("http://[::1", "not a valid URL"),
        ("http://[zz]", "not a valid URL"),
    ],
)
def test_a_malformed_host_is_refused_when_the_client_is_built(base_url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as caught:
        ExperienceClient("org", base_url=base_url)
    assert "pw" not in str(caught.value)


@pytest.mark.parametrize(
    "base_url",
    [
        "http://localhost:8080",
        "http://127.0.0.1",
        "http://[::1]:9000",
        "https://experience.ninetailed.co.",
        "http://my_service:8000",  # underscores: fine for a resolver (container names)
        "https://" + "a" * 63 + ".example",
    ],
)
def test_well_formed_hosts_are_taken(base_url: str) -> None:
    ExperienceClient("org", base_url=base_url)


def test_a_host_name_that_is_not_ascii_is_sent_in_its_idna_form() -> None:
    client = ExperienceClient("org", base_url="https://B\u00fccher.example:8443")
    assert client._origin == ("https", "xn--bcher-kva.example", 8443)  # as requests writes it


def test_the_resolver_reports_a_malformed_name_as_a_failed_lookup() -> None:
    for host in (f"{LONG_LABEL}.example", "bad..example", "1..2"):
        with pytest.raises(socket.gaierror, match="not a valid host name"):
            resolve(host, 80, Deadline(2))


def test_a_connection_to_a_malformed_name_fails_as_a_connection() -> None:
    connection = Connection("http", "bad..example", 80)
    with pytest.raises(ConnectionFailed, match="not a valid host name"):
        connection.request("GET", "/", headers={}, body=None, deadline=Deadline(2))


@pytest.mark.parametrize("host", [f"{LONG_LABEL}.example", "bad..example"])
def test_requests_reports_a_malformed_name_as_a_connection_failure(host: str) -> None:
    with requests.Session() as session, pytest.raises(ConnectionFailed, match="not valid"):
        send(session, "GET", f"http://{host}/v2/x", deadline=Deadline(2))


def test_a_well_formed_host_still_answers() -> None:
    with StubServer(profile_answer) as stub:
        port = stub.url.rpartition(":")[2]
        with ExperienceClient("org", base_url=f"http://localhost:{port}", timeout=2) as client:
            assert client.get_profile("p-1").profile.id == "p-1"

"""A 3xx answer: the client follows no redirect, and says so with its own error (not a 4xx
``ClientError``), naming where the answer points; neither the client nor the background
senders send the request again, and no batch is split for it."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import requests

from django_experience import errors_policy
from django_experience.api import ExperienceClient
from django_experience.api.errors import (
    ClientError,
    Redirected,
    TransportError,
    error_for,
)
from django_experience.api.retry import RetryPolicy
from tests.api.test_http11 import Script, ScriptedServer

RETRIES = RetryPolicy(max_retries=2, backoff_base=0.01, backoff_max=0.02)


@pytest.fixture
def serve() -> Iterator[Callable[[Script], ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def start(script: Script) -> ScriptedServer:
        servers.append(ScriptedServer(script))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def _redirect(status: int, location: bytes | None) -> Script:
    header = b"Location: %s\r\n" % location if location is not None else b""
    answer = b"HTTP/1.1 %d Redirect\r\n%sContent-Length: 0\r\n\r\n" % (status, header)
    return lambda request: ([answer], False)


@pytest.mark.parametrize("route", ["kept-alive", "requests"])
@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_its_own_error_and_not_retried(
    serve: Callable[[Script], ScriptedServer], route: str, status: int
) -> None:
    server = serve(_redirect(status, b"https://experience.example/v2/moved"))
    session = None if route == "kept-alive" else requests.Session()
    client = ExperienceClient(
        "org",
        base_url=f"http://127.0.0.1:{server.port}",
        timeout=2,
        retry_policy=RETRIES,
        session=session,
    )
    with client, pytest.raises(Redirected) as caught:
        client.get_profile("p-1")
    error = caught.value
    assert not isinstance(error, ClientError) and isinstance(error, TransportError)
    assert (error.status, error.location) == (status, "https://experience.example/v2/moved")
    assert "'https://experience.example/v2/moved'" in error.message
    assert "redirects are not followed" in error.message
    assert "EXPERIENCE_API_URL" in error.message
    assert len(server.requests) == 1


def test_a_redirect_without_location_and_one_with_credentials(
    serve: Callable[[Script], ScriptedServer],
) -> None:
    for location, shown in (
        (None, "without a Location"),
        (b"https://u:pw@elsewhere.example/", "'https://***@elsewhere.example/'"),
    ):
        server = serve(_redirect(302, location))
        with (
            ExperienceClient(
                "org", base_url=f"http://127.0.0.1:{server.port}", retry_policy=RETRIES
            ) as client,
            pytest.raises(Redirected) as caught,
        ):
            client.get_profile("p-1")
        assert shown in caught.value.message and "pw" not in caught.value.message


def test_error_for_a_3xx_status_is_a_redirect() -> None:
    assert type(error_for(301, None, None)) is Redirected
    assert type(error_for(399, None, None)) is Redirected
    assert type(error_for(418, None, None)) is ClientError


def test_background_senders_treat_a_redirect_as_final_and_not_as_refused_content() -> None:
    error = Redirected("moved", status=301, location="https://x/")
    assert errors_policy.retry_delay(error) is None
    assert not errors_policy.refused_for_content(error)
    assert not errors_policy.profile_gone(error)
    assert not errors_policy.unrouted(error)
    # Other transport errors are still sent again.
    assert errors_policy.retry_delay(TransportError("no answer")) == 0.0

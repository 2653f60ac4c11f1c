from __future__ import annotations

from collections.abc import Iterator

import pytest
from pytest_django.fixtures import Settings as SettingsWrapper

from tests.delivery.helpers import profiles_answer
from tests.stub_server import RecordedRequest, StubResponse, StubServer, ok_envelope


def answer_batches(request: RecordedRequest) -> StubResponse:
    return ok_envelope(profiles_answer(request))


@pytest.fixture(scope="session")
def api_server() -> Iterator[StubServer]:
    # One server for the module's tests: stopping a stub costs half a second each time.
    with StubServer(answer_batches) as server:
        yield server


@pytest.fixture
def api(api_server: StubServer, settings: SettingsWrapper) -> StubServer:
    """A stub Experience API answering the batch endpoint; settings point delivery at it."""
    api_server.requests.clear()
    api_server.responder = answer_batches
    settings.EXPERIENCE_API_URL = api_server.url
    settings.EXPERIENCE_DELIVERY_BACKOFF = 0.01
    settings.EXPERIENCE_DELIVERY_BACKOFF_MAX = 0.05
    settings.EXPERIENCE_DELIVERY_FLUSH_INTERVAL = 0.05
    return api_server

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pytest_django.fixtures import Settings as SettingsWrapper

from django_experience import delivery
from tests.delivery.helpers import profiles_answer
from tests.stub_server import StubServer, ok_envelope


@pytest.fixture(autouse=True)
def fresh_delivery() -> Iterator[None]:
    delivery.reset()
    yield
    delivery.reset()


@pytest.fixture
def api(settings: SettingsWrapper) -> Iterator[StubServer]:
    """A stub Experience API answering the batch endpoint; settings point delivery at it."""
    with StubServer(lambda request: ok_envelope(profiles_answer(request))) as server:
        settings.EXPERIENCE_API_URL = server.url
        settings.EXPERIENCE_DELIVERY_BACKOFF = 0.01
        settings.EXPERIENCE_DELIVERY_BACKOFF_MAX = 0.05
        settings.EXPERIENCE_DELIVERY_FLUSH_INTERVAL = 0.05
        yield server

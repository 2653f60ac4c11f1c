"""Helpers of the emulator tests: a Django-free server per test and a tiny HTTP helper."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
import requests

from django_experience.emulator import EmulatorServer

ORG = "org-1"
ENV = "main"


class Api:
    """Raw HTTP calls against one emulator (the tests check the wire, not our client)."""

    def __init__(self, server: EmulatorServer, org: str = ORG, env: str = ENV) -> None:
        self.server = server
        self.session = requests.Session()
        self.org = org
        self.env = env

    @property
    def base(self) -> str:
        return f"{self.server.url}/v2/organizations/{self.org}/environments/{self.env}"

    def post(self, path: str, body: Any, *, params: dict[str, str] | None = None,
             text_plain: bool = True) -> requests.Response:
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        content_type = "text/plain" if text_plain else "application/json"
        return self.session.post(self.base + path, data=data, params=params,
                                 headers={"Content-Type": content_type}, timeout=10)

    def get(self, path: str) -> requests.Response:
        return self.session.get(self.base + path, timeout=10)

    def delete(self, path: str) -> requests.Response:
        return self.session.delete(self.base + path, timeout=10)

    def create(self, *events: dict[str, Any], **kw: Any) -> dict[str, Any]:
        response = self.post("/profiles", {"events": list(events)}, **kw)
        assert response.status_code == 200, response.text
        return response.json()["data"]  # type: ignore[no-any-return]

    def update(self, profile_id: str, *events: dict[str, Any], **kw: Any) -> dict[str, Any]:
        response = self.post(f"/profiles/{profile_id}", {"events": list(events)}, **kw)
        assert response.status_code == 200, response.text
        return response.json()["data"]  # type: ignore[no-any-return]

    def control(self, method: str, route: str, body: Any = None) -> requests.Response:
        return self.session.request(method, f"{self.server.url}/__emulator__/{route}",
                                    data=None if body is None else json.dumps(body), timeout=10)


@pytest.fixture
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer() as emulator:
        yield emulator


@pytest.fixture
def api(server: EmulatorServer) -> Iterator[Api]:
    client = Api(server)
    yield client
    client.session.close()


LIBRARY = {"name": "tests", "version": "1.0.0"}


def now() -> str:
    """The current time as the SDKs write a timestamp (UTC, milliseconds)."""
    moment = datetime.now(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def event(kind: str, *, timestamp: str | None = None, message_id: str | None = None,
          **fields: Any) -> dict[str, Any]:
    """A complete event of ``kind``, as the API documents it (every required field set):
    ``messageId``, ``timestamp`` (now), ``channel`` and ``context.library``, then ``fields``."""
    built: dict[str, Any] = {
        "type": kind,
        "messageId": message_id or str(uuid.uuid4()),
        "timestamp": timestamp or now(),
        "channel": "web",
        "context": {"library": dict(LIBRARY)},
    }
    built.update(fields)
    return built


def page(path: str = "/", *, query: str = "", timestamp: str | None = None,
         message_id: str | None = None, **context: Any) -> dict[str, Any]:
    url = f"https://example.com{path}{'?' + query if query else ''}"
    built = event(
        "page", timestamp=timestamp, message_id=message_id,
        properties={"path": path, "url": url, "search": f"?{query}" if query else "",
                    "referrer": "", "query": {}, "title": "Page"},
    )
    built["context"].update(context)
    return built


def identify(user_id: str, **traits: Any) -> dict[str, Any]:
    return event("identify", userId=user_id, traits=traits)


def track(name: str, timestamp: str | None = None) -> dict[str, Any]:
    return event("track", timestamp=timestamp, event=name, properties={})


def component(component_id: str = "hero", experience_id: str | None = None,
              variant_index: int | None = None, **fields: Any) -> dict[str, Any]:
    built = event("component", componentId=component_id, componentType="Entry", **fields)
    if experience_id is not None:
        built["experienceId"] = experience_id
    if variant_index is not None:
        built["variantIndex"] = variant_index
    return built

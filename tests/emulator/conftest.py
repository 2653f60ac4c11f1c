"""Helpers of the emulator tests: a Django-free server per test and a tiny HTTP helper."""

from __future__ import annotations

import json
from collections.abc import Iterator
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


def page(path: str = "/", *, query: str = "", timestamp: str | None = None,
         message_id: str | None = None, **context: Any) -> dict[str, Any]:
    url = f"https://example.com{path}{'?' + query if query else ''}"
    event: dict[str, Any] = {
        "type": "page",
        "channel": "web",
        "properties": {"path": path, "url": url, "search": f"?{query}" if query else "",
                       "referrer": "", "query": {}, "title": "Page"},
        "context": {"library": {"name": "tests", "version": "1.0.0"}, **context},
    }
    if timestamp:
        event["timestamp"] = timestamp
    if message_id:
        event["messageId"] = message_id
    return event


def identify(user_id: str, **traits: Any) -> dict[str, Any]:
    return {"type": "identify", "userId": user_id, "traits": traits}


def track(name: str, timestamp: str | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "track", "event": name, "properties": {}}
    if timestamp:
        event["timestamp"] = timestamp
    return event

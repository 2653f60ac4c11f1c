"""Helpers shared by the delivery tests."""

from __future__ import annotations

import json
import uuid
from typing import Any

import django
import pytest

from tests.stub_server import RecordedRequest, StubServer

EVENTS_PATH = "/v2/organizations/test-org/environments/main/events"


def track(profile_id: str, name: str = "Clicked", **properties: Any) -> dict[str, Any]:
    """A batch-endpoint track event, as the event builders produce them."""
    return {
        "type": "track",
        "event": name,
        "properties": properties,
        "anonymousId": profile_id,
        "messageId": str(uuid.uuid4()),
        "timestamp": "2026-01-01T00:00:00.000Z",
        "channel": "server",
        "context": {"library": {"name": "django-experience", "version": "0.1.0"}, "locale": "en"},
    }


def batch_requests(stub: StubServer) -> list[RecordedRequest]:
    return [r for r in stub.requests if r.method == "POST" and r.path == EVENTS_PATH]


def sent_events(stub: StubServer) -> list[dict[str, Any]]:
    return [event for request in batch_requests(stub) for event in request.json()["events"]]


def profiles_answer(request: RecordedRequest) -> dict[str, Any]:
    """The batch endpoint's answer: one profile per anonymousId of the request."""
    ids = list(dict.fromkeys(event["anonymousId"] for event in request.json()["events"]))
    return {
        "profiles": [
            {
                "id": profile_id,
                "stableId": profile_id,
                "random": 0.5,
                "audiences": [],
                "traits": {},
                "location": {},
                "session": {
                    "id": "s",
                    "isReturningVisitor": False,
                    "landingPage": {},
                    "count": 1,
                    "activeSessionLength": 0,
                    "averageSessionLength": 0,
                },
            }
            for profile_id in ids
        ]
    }


# The task framework delivery uses with this Django: its own from 6.0, the backport before.
TASKS_MODULE = "django.tasks" if django.VERSION >= (6, 0) else "django_tasks"


def tasks_module() -> Any:
    """``django.tasks`` or ``django_tasks`` (the test is skipped when it is not installed)."""
    return pytest.importorskip(TASKS_MODULE)


def print_failure(exc: BaseException, payloads: list[dict[str, Any]], sink: str) -> None:
    """An ``EXPERIENCE_DELIVERY_ON_ERROR`` for scripts: one JSON line per report on stdout."""
    report = {
        "exception": type(exc).__name__,
        "sink": sink,
        "messageIds": [payload.get("messageId") for payload in payloads],
    }
    print("ON_ERROR " + json.dumps(report), flush=True)

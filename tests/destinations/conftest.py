"""Fixtures for the destination tests: the emulated platforms served over real HTTP."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest

from django_experience.emulator import destinations
from django_experience.emulator.destinations import MOUNTS, StartResponse
from tests.stub_server import StubServer, ok_envelope


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


def _dispatch(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """Route by prefix the way the emulator's mounts do, keeping the full path."""
    path = environ.get("PATH_INFO", "")
    for prefix, app in MOUNTS.items():
        if path.startswith(prefix):
            return app(environ, start_response)
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"no mount"]


@dataclass
class DestinationServer:
    url: str

    @property
    def experiture_url(self) -> str:
        return self.url + "/experiture/public/v1"

    @property
    def releva_url(self) -> str:
        return self.url + "/releva/api/v0"


@pytest.fixture(scope="session")
def _destination_server() -> Iterator[DestinationServer]:
    server = make_server(
        "127.0.0.1", 0, _dispatch, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    try:
        yield DestinationServer(f"http://{host!s}:{port}")
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def destination_server(_destination_server: DestinationServer) -> Iterator[DestinationServer]:
    """Both emulated platforms on 127.0.0.1, reset before and after each test."""
    destinations.reset()
    yield _destination_server
    destinations.reset()


@pytest.fixture(scope="module")
def _module_stub() -> Iterator[StubServer]:
    with StubServer() as server:
        yield server


@pytest.fixture
def stub(_module_stub: StubServer) -> StubServer:
    """The recording stub, shared by a module's tests (stopping one costs half a second) and
    cleared before each test."""
    with _module_stub._lock:
        _module_stub.requests.clear()
        _module_stub._queue.clear()
    _module_stub.responder = lambda request: ok_envelope({})
    return _module_stub

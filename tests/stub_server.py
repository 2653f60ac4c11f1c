"""A small recording HTTP server on 127.0.0.1 for tests.

Every request is recorded (method, path, query, headers, body). Answers come from a queue of
scripted responses, then from a default responder. Responses can be delayed, and a scripted
response can close the connection without answering.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    received_at: float

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))

    def header(self, name: str) -> str | None:
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None


@dataclass
class StubResponse:
    status: int = 200
    body: Any = None  # JSON-serialised unless bytes
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drop: bool = False  # close the connection without answering

    def encoded(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        return json.dumps(self.body if self.body is not None else {}).encode("utf-8")


Responder = Callable[[RecordedRequest], StubResponse]


def ok_envelope(data: Any) -> StubResponse:
    return StubResponse(200, {"data": data, "error": None, "message": "ok"})


def error_envelope(status: int, code: str, message: str = "error") -> StubResponse:
    return StubResponse(status, {"data": {}, "error": {"code": code}, "message": message})


class StubServer:
    """``with StubServer() as stub: ...``: ``.url``, ``.requests``, ``.enqueue(...)``."""

    def __init__(self, responder: Responder | None = None) -> None:
        self.requests: list[RecordedRequest] = []
        self.responder: Responder = responder or (lambda request: ok_envelope({}))
        self._queue: list[StubResponse] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def enqueue(self, *responses: StubResponse) -> None:
        with self._lock:
            self._queue.extend(responses)

    def clear(self) -> None:
        """Forget recorded requests and scripted responses (to reuse one server across tests)."""
        with self._lock:
            self.requests.clear()
            self._queue.clear()

    def start(self) -> StubServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> StubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _next_response(self, request: RecordedRequest) -> StubResponse:
        with self._lock:
            self.requests.append(request)
            if self._queue:
                return self._queue.pop(0)
        return self.responder(request)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out without a 40 ms stall

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                request = RecordedRequest(
                    method=self.command,
                    path=parts.path,
                    query=parse_qs(parts.query, keep_blank_values=True),
                    headers=dict(self.headers.items()),
                    body=body,
                    received_at=time.monotonic(),
                )
                response = stub._next_response(request)
                if response.delay:
                    time.sleep(response.delay)
                if response.drop:
                    self.close_connection = True
                    self.connection.close()
                    return
                payload = response.encoded()
                self.send_response(response.status)
                headers = {"Content-Type": "application/json", **response.headers}
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                # The client may already have given up (a timeout test).
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

        return Handler


@contextmanager
def stub_server(responder: Responder | None = None) -> Iterator[StubServer]:
    with StubServer(responder) as stub:
        yield stub

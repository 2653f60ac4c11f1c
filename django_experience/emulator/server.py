"""A small threaded HTTP/1.1 server for the emulator's WSGI app.

Unlike ``wsgiref.simple_server`` it keeps connections alive (benchmarks and clients with a
connection pool), can close a connection without answering (the ``drop_rate`` fault), streams
a trickled body as it is produced (``slow_body_ms``), and can be stopped and started again on
the same port (an outage in tests: while stopped, the port refuses connections).
"""

from __future__ import annotations

import contextlib
import io
import socket
import sys
import threading
from collections.abc import Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from django_experience.emulator.app import EmulatorApp, make_app
from django_experience.emulator.config import EmulatorConfig
from django_experience.emulator.errors import DropConnection
from django_experience.emulator.mounts import Mount, WSGIApp
from django_experience.emulator.state import EmulatorState

MAX_CHUNKED_BODY = 16 * 1024 * 1024
MAX_DRAINED_BODY = 4 * 1024 * 1024


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ExperienceEmulator/1"
    timeout = 120
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        # Headers and small bodies go out at once; without this, Nagle's algorithm and the
        # client's delayed ACK add ~40 ms to every kept-alive request.
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.log_requests:
            sys.stderr.write(f"{self.address_string()} - {format % args}\n")

    def _body(self) -> tuple[io.BytesIO, int, bool]:
        """The request body stream, its length, and whether the connection is still usable."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            data = bytearray()
            while True:
                line = self.rfile.readline(1024)
                try:
                    size = int(line.split(b";")[0].strip() or b"0", 16)
                except ValueError:
                    return io.BytesIO(b""), 0, False
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                if len(data) + size > MAX_CHUNKED_BODY:
                    return io.BytesIO(b""), MAX_CHUNKED_BODY + 1, False
                data += self.rfile.read(size)
                self.rfile.readline(1024)
            return io.BytesIO(bytes(data)), len(data), True
        try:
            length = max(0, int(self.headers.get("Content-Length") or 0))
        except ValueError:
            return io.BytesIO(b""), 0, False
        return _LimitedReader(self.rfile, length), length, True  # type: ignore[return-value]

    def _run(self) -> None:
        stream, length, usable = self._body()
        if not usable:
            self.close_connection = True
        path, _, query = self.path.partition("?")
        if "://" in path:  # absolute-form request target
            path = "/" + path.split("://", 1)[1].partition("/")[2]
        from urllib.parse import unquote_to_bytes

        environ: dict[str, Any] = {
            "REQUEST_METHOD": self.command,
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
            "RAW_URI": path,  # undecoded, as gunicorn passes it: ids may hold %2F
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(length),
            "SERVER_NAME": self.server.server_address[0],
            "SERVER_PORT": str(self.server.server_address[1]),
            "SERVER_PROTOCOL": self.request_version,
            "REMOTE_ADDR": self.client_address[0],
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": stream,
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        for key, value in self.headers.items():
            name = "HTTP_" + key.upper().replace("-", "_")
            if name in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
                continue
            environ[name] = f"{environ[name]},{value}" if name in environ else value
        response: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]],
                           exc_info: Any = None) -> Any:
            response["status"] = status
            response["headers"] = headers
            return lambda data: None

        try:
            result = self.server.app(environ, start_response)
        except DropConnection:
            self._drop()
            return
        if isinstance(stream, _LimitedReader) and not stream.drain(MAX_DRAINED_BODY):
            self.close_connection = True  # an unread body: the connection cannot be reused
        try:
            self._write(response, result)
        except (ConnectionError, BrokenPipeError, TimeoutError, OSError):
            self.close_connection = True
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()

    def _write(self, response: dict[str, Any], result: Iterable[bytes]) -> None:
        head: bytes | None = None
        for chunk in result:
            if head is None:
                head = self._start(response)
                self.wfile.write(head + chunk)  # one segment for headers and first chunk
            elif chunk:
                self.wfile.write(chunk)
            self.wfile.flush()
        if head is None:
            self.wfile.write(self._start(response))
            self.wfile.flush()

    def _start(self, response: dict[str, Any]) -> bytes:
        """The status line and headers, not yet sent."""
        code, _, reason = str(response.get("status", "500 Internal Server Error")).partition(" ")
        self.send_response(int(code), reason)
        has_length = False
        for name, value in response.get("headers", []):
            if name.lower() == "content-length":
                has_length = True
            if name.lower() == "connection" and value.lower() == "close":
                self.close_connection = True
            self.send_header(name, value)
        if not has_length:
            self.close_connection = True
        if self.close_connection:
            self.send_header("Connection", "close")
        buffered: list[bytes] = getattr(self, "_headers_buffer", [])
        head = b"".join([*buffered, b"\r\n"])
        buffered.clear()
        return head

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _run


class _LimitedReader:
    """``wsgi.input``: at most Content-Length bytes of the request body."""

    def __init__(self, raw: Any, length: int) -> None:
        self._raw = raw
        self._left = length

    def read(self, size: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        if size < 0 or size > self._left:
            size = self._left
        data = bytes(self._raw.read(size))
        self._left -= len(data)
        if not data:
            self._left = 0
        return data

    def readline(self, size: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        if size < 0 or size > self._left:
            size = self._left
        data = bytes(self._raw.readline(size))
        self._left -= len(data)
        return data

    def drain(self, limit: int) -> bool:
        """Read and discard what the app left unread (up to ``limit``); True when all read."""
        if self._left > limit:
            return False
        while self._left > 0:
            if not self.read(min(self._left, 65536)):
                return False
        return True


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], app: WSGIApp, log_requests: bool) -> None:
        self.app = app
        self.log_requests = log_requests
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients closing keep-alive connections are normal; anything else is worth a line.
        exc = sys.exc_info()[1]
        if not isinstance(exc, (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)

    def close_connections(self) -> None:
        with self.connections_lock:
            sockets = list(self.connections)
            self.connections.clear()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class EmulatorServer:
    """The emulator on a local port, served from a background thread.

    ``EmulatorServer(port=0)`` picks a free port; ``.start()`` returns self, ``.url`` is
    ``http://HOST:PORT``. ``.stop()`` closes the port and every open connection; ``.start()``
    again serves the same state on the same port.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        config: EmulatorConfig | Mapping[str, Any] | str | Path | None = None,
        organization: str | None = None,
        environments: Iterable[str] | None = None,
        *,
        mounts: Mapping[str, WSGIApp | Mount] | None = None,
        state: EmulatorState | None = None,
        log_requests: bool = False,
    ) -> None:
        self.host = host
        self.port = port
        self.state = state if state is not None else EmulatorState(
            config, organization=organization, environments=environments
        )
        self.app: EmulatorApp = make_app(self.state, mounts)
        self.log_requests = log_requests
        self._server: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._serving = False  # serve_forever() runs in a caller's thread
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def _bind(self) -> _HTTPServer:
        server = _HTTPServer((self.host, self.port), self.app, self.log_requests)
        self.port = server.server_address[1]
        return server

    def bind(self) -> EmulatorServer:
        """Listen on the port without serving yet, so ``.url`` is final (port 0 picks one).

        Connections wait in the listen backlog until ``.start()`` or ``.serve_forever()``.
        """
        with self._lock:
            if self._server is None:
                self._server = self._bind()
        return self

    def start(self) -> EmulatorServer:
        with self._lock:
            if self._server is None:
                self._server = self._bind()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                    name=f"experience-emulator-{self.port}", daemon=True,
                )
                self._thread.start()
        return self

    def stop(self) -> None:
        with self._lock:
            server, thread, serving = self._server, self._thread, self._serving
            self._server = self._thread = None
        if server is None:
            return
        if thread is not None or serving:
            server.shutdown()  # would wait forever on a port bound but never served
        server.server_close()
        server.close_connections()
        if thread is not None:
            thread.join(timeout=5)

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted (the command-line entry point)."""
        with self._lock:
            if self._thread is not None:
                raise RuntimeError("the emulator is already serving from a background thread")
            if self._server is None:
                self._server = self._bind()
            server = self._server
            self._serving = True
        try:
            server.serve_forever(poll_interval=0.2)
        finally:
            with self._lock:
                self._server = None
                self._serving = False
            server.server_close()
            server.close_connections()

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

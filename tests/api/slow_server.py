"""A loopback HTTP server that answers slowly on purpose: late headers, a trickled or stalled body.

``StubServer`` writes each answer at once; these cases need control over every byte written.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from types import TracebackType

BODY = b'{"data": {"profile": {"id": "p-1"}}, "error": null, "message": "ok"}'


@dataclass
class SlowAnswer:
    header_delay: float = 0.0  # before the status line
    head_byte_interval: float = 0.0  # between bytes of the status line and headers
    byte_interval: float = 0.0  # between body bytes
    stall_after: int | None = None  # body bytes sent before going silent
    stall_for: float = 5.0
    body: bytes = BODY


class SlowServer:
    def __init__(self, answer: SlowAnswer) -> None:
        self.answer = answer
        self.requests = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._listener.getsockname()[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> SlowServer:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stopped.set()
        self._thread.join(2)
        self._listener.close()

    def _serve(self) -> None:
        while not self._stopped.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.requests += 1
            threading.Thread(target=self._answer, args=(connection,), daemon=True).start()

    def _wait(self, seconds: float) -> bool:
        """Sleep; False when the server is stopping."""
        return not self._stopped.wait(seconds)

    def _answer(self, connection: socket.socket) -> None:
        with connection:
            try:
                read_request(connection)
                self._send_answer(connection)
            except OSError:
                return  # the client gave up and closed the connection

    def _send_answer(self, connection: socket.socket) -> bool:
        """Write ``answer`` as it says; False when the server is stopping."""
        answer = self.answer
        if not self._wait(answer.header_delay):
            return False
        head = (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(answer.body)}\r\n\r\n".encode()
        )
        if answer.head_byte_interval:
            for index in range(len(head)):
                connection.sendall(head[index : index + 1])
                if not self._wait(answer.head_byte_interval):
                    return False
        else:
            connection.sendall(head)
        for index in range(len(answer.body)):
            if index == answer.stall_after and not self._wait(answer.stall_for):
                return False
            connection.sendall(answer.body[index : index + 1])
            if answer.byte_interval and not self._wait(answer.byte_interval):
                return False
        return True


def read_request(connection: socket.socket) -> bool:
    """Read one request (head and Content-Length body); False when the client hung up."""
    data = b""
    connection.settimeout(5)
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            return False
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(rest) < length:
        chunk = connection.recv(65536)
        if not chunk:
            return False
        rest += chunk
    return True


def elapsed_since(start: float) -> float:
    return time.monotonic() - start

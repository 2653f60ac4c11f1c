"""A raw, minimal HTTP/1.1 stub of the Experience API with keep-alive, for benchmarks.

It runs in its own process (``python -m benchmarks.stub``), so it never competes with the code
under measurement for the interpreter lock. Modes:

- ``page``: every profile endpoint answers the same pre-built bytes (a profile with selected
  variants and an inline variable); the batch endpoint answers an empty profile list.
- ``batch``: the batch endpoint answers one profile per ``anonymousId`` of the request, in
  request order, as the API does; the profile endpoints answer like ``page``.
- ``blackhole``: accepts connections and never answers.

``--delay-ms`` adds a fixed latency to every API answer (a remote API instead of loopback).

Control paths (not counted): ``GET /__stats__`` (requests, events, largest request in events
and bytes), ``GET /__last__`` (the last API request, for replaying it), ``POST /__reset__``.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

PROFILE_ID = "bench-profile-0001"


def _envelope(data: object) -> bytes:
    return json.dumps({"data": data, "message": "ok", "error": None}).encode()


def profile_json(profile_id: str, traits: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "id": profile_id,
        "stableId": profile_id,
        "random": 0.42,
        "audiences": ["aud-bench"],
        "traits": traits or {},
        "location": {},
        "session": {
            "id": "bench-session",
            "isReturningVisitor": True,
            "landingPage": {"path": "/", "query": {}, "referrer": "", "search": "", "url": "/"},
            "count": 2,
            "activeSessionLength": 0,
            "averageSessionLength": 0,
        },
    }


PAGE_RESULT: dict[str, Any] = {
    "profile": profile_json(PROFILE_ID, {"firstname": "Ada", "tier": "gold"}),
    "experiences": [
        {"experienceId": "exp-hero", "variantIndex": 1, "variants": {"hero-default": "hero-gold"},
         "sticky": False},
        {"experienceId": "exp-banner", "variantIndex": 1,
         "variants": {"banner-default": "banner-a"}, "sticky": False},
    ],
    "changes": [
        {"key": "ctaColor", "type": "Variable", "value": "orange",
         "meta": {"experienceId": "exp-cta", "variantIndex": 1}},
    ],
}


def http_response(body: bytes, status: str = "200 OK") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
    ).encode() + body


PAGE_ANSWER = http_response(_envelope(PAGE_RESULT))
EMPTY_BATCH_ANSWER = http_response(_envelope({"profiles": []}))
NOT_FOUND = http_response(b'{"data":{},"message":"not found","error":true}', "404 Not Found")


@dataclass
class Stats:
    requests: int = 0
    events: int = 0
    max_events: int = 0
    max_body_bytes: int = 0
    by_path: dict[str, int] = field(default_factory=dict)
    last: dict[str, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def to_json(self) -> dict[str, Any]:
        with self.lock:
            return {
                "requests": self.requests,
                "events": self.events,
                "max_events_per_request": self.max_events,
                "max_body_bytes": self.max_body_bytes,
                "by_kind": dict(self.by_path),
            }


def _kind(path: str) -> str:
    path = path.partition("?")[0]
    if path.endswith("/import/events"):
        return "import"
    if path.endswith("/events"):
        return "batch"
    if path.endswith("/profiles"):
        return "create"
    return "profile"


def _batch_answer(body: bytes) -> tuple[bytes, int]:
    """One profile per anonymousId, in order of first appearance."""
    try:
        events = json.loads(body)["events"]
    except (ValueError, KeyError, TypeError):
        return http_response(b'{"data":{},"message":"bad","error":true}', "400 Bad Request"), 0
    ids = dict.fromkeys(str(event.get("anonymousId")) for event in events)
    profiles = [profile_json(profile_id) for profile_id in ids]
    return http_response(_envelope({"profiles": profiles})), len(events)


class StubServer:
    """Thread-per-connection keep-alive server answering with pre-built bytes."""

    def __init__(
        self, mode: str = "page", host: str = "127.0.0.1", port: int = 0, delay: float = 0.0
    ) -> None:
        self.mode = mode
        self.delay = delay
        self.stats = Stats()
        self._listener = socket.create_server((host, port), backlog=512)
        self.port = self._listener.getsockname()[1]

    def serve_forever(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            target: Callable[[socket.socket], None] = (
                self._hold if self.mode == "blackhole" else self._serve
            )
            threading.Thread(target=target, args=(connection,), daemon=True).start()

    def close(self) -> None:
        self._listener.close()

    @staticmethod
    def _hold(connection: socket.socket) -> None:
        """Black hole: read and never answer, until the client gives up."""
        try:
            while connection.recv(65536):
                pass
        except OSError:
            pass
        finally:
            connection.close()

    def _serve(self, connection: socket.socket) -> None:
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buffer = b""
        try:
            while True:
                while b"\r\n\r\n" not in buffer:
                    chunk = connection.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                lines = head.split(b"\r\n")
                method, target = lines[0].split(b" ")[:2]
                length = 0
                close = False
                for line in lines[1:]:
                    name, _, value = line.partition(b":")
                    name = name.strip().lower()
                    if name == b"content-length":
                        length = int(value)
                    elif name == b"connection" and value.strip().lower() == b"close":
                        close = True
                while len(buffer) < length:
                    chunk = connection.recv(max(65536, length - len(buffer)))
                    if not chunk:
                        return
                    buffer += chunk
                body, buffer = buffer[:length], buffer[length:]
                if self.delay and not target.startswith(b"/__"):
                    time.sleep(self.delay)  # a remote API's latency
                connection.sendall(self._answer(method.decode(), target.decode(), head, body))
                if close:
                    return
        except OSError:
            return
        finally:
            connection.close()

    def _answer(self, method: str, target: str, head: bytes, body: bytes) -> bytes:
        if target.startswith("/__stats__"):
            return http_response(json.dumps(self.stats.to_json()).encode())
        if target.startswith("/__last__"):
            with self.stats.lock:
                return http_response(json.dumps(self.stats.last).encode())
        if target.startswith("/__reset__"):
            self.stats = Stats()
            return http_response(b"{}")
        kind = _kind(target)
        events = 0
        if kind == "batch" and self.mode == "batch":
            answer, events = _batch_answer(body)
        elif kind in ("batch", "import"):
            answer, events = EMPTY_BATCH_ANSWER, body.count(b'"anonymousId"')
        else:
            answer = PAGE_ANSWER
        stats = self.stats
        with stats.lock:
            stats.requests += 1
            stats.events += events
            stats.max_events = max(stats.max_events, events)
            stats.max_body_bytes = max(stats.max_body_bytes, len(body))
            stats.by_path[kind] = stats.by_path.get(kind, 0) + 1
            if kind != "batch":
                stats.last = {"method": method, "target": target,
                              "head": head.decode("latin-1"), "body": body.decode("utf-8")}
        return answer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mode", choices=("page", "batch", "blackhole"), default="page")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay-ms", type=float, default=0.0, help="latency of each answer")
    options = parser.parse_args(argv)
    server = StubServer(options.mode, port=options.port, delay=options.delay_ms / 1000)
    sys.stdout.write(f"{server.port}\n")
    sys.stdout.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()

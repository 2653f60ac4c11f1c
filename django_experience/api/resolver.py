"""Resolving a host name within a call's deadline.

``socket.getaddrinfo`` blocks for as long as the system's resolver takes (5 s per attempt is a
common setting when DNS is down), and no socket timeout covers it. So names are looked up on a
few daemon threads while the caller waits only what is left of its deadline and then raises
``TimeoutError``, as a connect that runs out of time does. Concurrent callers of the same
``(host, port)`` share one lookup, and a caller that gives up leaves it running for the next
one, so an outage under load does not pile up blocked lookups. Answers are kept for a short
while: reconnects and bursts do not pay a lookup each. IP literals never leave the caller's
thread: resolving one is instant.
"""

from __future__ import annotations

import copy
import os
import queue
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from django_experience.api.retry import Deadline

# getaddrinfo does not say how long its answer may be kept (the DNS TTL is not exposed).
# A minute spares reconnects and bursts a lookup each and still follows a DNS change (a
# failover, a moved endpoint) within a minute; a kept-alive connection sticks to its address
# longer than that anyway.
CACHE_SECONDS = 60.0
WORKERS = 4  # distinct names stuck at once before new lookups queue; the client uses one or two
_MAX_CACHED = 256  # bounds memory for a process that talks to many hosts; the client uses few

AddressInfo = tuple[socket.AddressFamily, socket.SocketKind, int, str, tuple[Any, ...]]
_Key = tuple[str, int]


def resolve(host: str, port: int, deadline: Deadline) -> Sequence[AddressInfo]:
    """``socket.getaddrinfo(host, port, 0, SOCK_STREAM)`` within ``deadline``.

    ``TimeoutError`` when the lookup takes longer than what is left; the resolver's
    ``OSError`` (``socket.gaierror``) when it fails, also for a name no resolver takes
    (``getaddrinfo`` raises ``UnicodeError`` for an empty label or one too long).
    """
    try:
        if _may_be_literal(host):
            addresses = _numeric(host, port)
            if addresses is not None:
                return addresses
        return _process_resolver().resolve(host, port, deadline)
    except UnicodeError as exc:
        raise socket.gaierror(
            socket.EAI_NONAME, f"{host!r} is not a valid host name ({exc})"
        ) from None


def _may_be_literal(host: str) -> bool:
    """Whether ``host`` may be an IP address (a name has no ``:`` and is not all digits)."""
    return ":" in host or host.replace(".", "").isdigit()


def _numeric(host: str, port: int) -> Sequence[AddressInfo] | None:
    """The addresses of an IP literal, on the caller's thread (no resolver is asked);
    ``None`` when ``host`` is not one."""
    try:
        return socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST)
    except socket.gaierror:
        return None  # e.g. "1.2.3.4.5": a name for the resolver, as getaddrinfo would treat it


class _Lookup:
    """One lookup in flight, shared by every caller of the same ``(host, port)``."""

    __slots__ = ("addresses", "done", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.addresses: Sequence[AddressInfo] = ()
        self.error: Exception | None = None

    def wait(self, host: str, seconds: float) -> Sequence[AddressInfo]:
        if not self.done.wait(seconds):
            raise TimeoutError(f"resolving {host} took longer than the time left")
        if self.error is not None:
            # A copy per caller: one exception raised in many threads would share (and grow)
            # one traceback.
            raise copy.copy(self.error)
        return self.addresses


class Resolver:
    """Host names resolved on a few daemon threads, within each caller's deadline.

    Successful answers are kept ``cache_seconds``. A failure is not kept: the next call asks
    again, so resolution works again as soon as DNS does. What a failure costs is already
    bounded: a slow one is shared by its concurrent callers and cut off at their deadline, and
    a fast one costs about what a cached failure would.

    One per process (see :func:`resolve`): a forked child must not wait on a lookup whose
    thread stayed in the parent.
    """

    def __init__(
        self,
        *,
        cache_seconds: float = CACHE_SECONDS,
        workers: int = WORKERS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pid = os.getpid()
        self.cache_seconds = cache_seconds
        self.workers = workers
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[_Key, tuple[float, Sequence[AddressInfo]]] = {}  # key -> (until, answer)
        self._in_flight: dict[_Key, _Lookup] = {}
        self._jobs: queue.SimpleQueue[_Key] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []

    def resolve(self, host: str, port: int, deadline: Deadline) -> Sequence[AddressInfo]:
        """The addresses of ``host``: kept, or looked up waiting at most what ``deadline``
        leaves (``TimeoutError`` then; the lookup goes on for the next caller)."""
        key = (host, port)
        with self._lock:
            kept = self._cache.get(key)
            if kept is not None and kept[0] > self._clock():
                return kept[1]
            lookup = self._in_flight.get(key)
            if lookup is None:
                self._submit(key)
                lookup = self._in_flight[key] = _Lookup()  # no thread finishes it before: locked
        return lookup.wait(host, deadline.remaining())

    def _submit(self, key: _Key) -> None:
        """Queue a lookup, starting another thread while there are fewer than ``workers``
        (called with the lock held). OSError when there is no thread to run it."""
        if len(self._threads) < self.workers:
            self._start_thread()
        self._jobs.put(key)

    def _start_thread(self) -> None:
        # Daemon: a lookup stuck in the resolver never holds up the interpreter's exit.
        thread = threading.Thread(target=self._work, name="experience-resolver", daemon=True)
        try:
            thread.start()
        except RuntimeError as exc:  # "can't start new thread": the ones there are will do
            if not self._threads:  # none: a connection failure, never a lookup nobody runs
                raise OSError(f"no thread to resolve host names on: {exc}") from exc
            return
        self._threads.append(thread)

    def _work(self) -> None:
        while True:
            self._look_up(self._jobs.get())

    def _look_up(self, key: _Key) -> None:
        host, port = key
        try:
            addresses = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
        except Exception as exc:  # gaierror, or UnicodeError for a malformed name: the caller's
            self._finish(key, (), exc)
        else:
            self._finish(key, tuple(addresses), None)

    def _finish(self, key: _Key, addresses: Sequence[AddressInfo], error: Exception | None) -> None:
        with self._lock:
            lookup = self._in_flight.pop(key)
            if error is None:
                if len(self._cache) >= _MAX_CACHED:
                    self._cache.clear()
                self._cache[key] = (self._clock() + self.cache_seconds, addresses)
        lookup.addresses, lookup.error = addresses, error
        lookup.done.set()


_resolver = Resolver()


def _process_resolver() -> Resolver:
    """This process's resolver; a fresh one in a forked child (also when forked from C code,
    which skips ``register_at_fork``)."""
    global _resolver
    if _resolver.pid != os.getpid():
        _resolver = Resolver()
    return _resolver


def _after_fork() -> None:
    """In a forked child: the parent's lookup threads do not exist here, and its lock may
    have been held by one of them."""
    global _resolver
    _resolver = Resolver()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


__all__ = ["CACHE_SECONDS", "WORKERS", "AddressInfo", "Resolver", "resolve"]

"""Resolving the API's host name is bounded by the call's budget, shared, and kept a while.

A slow DNS cannot be made with a real socket, so these tests replace ``socket.getaddrinfo`` with
a fake that answers for one name (``experience.test``, the stub's loopback address) and may
block or fail; every other host goes to the real one. Everything else is real: the client, its
connections and a stub server on 127.0.0.1.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from django_experience.api import ExperienceClient, resolver
from django_experience.api.errors import ConnectionFailed, RequestTimeout
from django_experience.api.http11 import Connection
from django_experience.api.retry import Deadline, RetryPolicy
from tests.stub_server import StubServer

NAME = "experience.test"
BUDGET = 0.3
MARGIN = 0.5  # a busy 2-core machine's scheduling; the budget itself is what is asserted
NO_RETRIES = RetryPolicy(max_retries=0)
_real_getaddrinfo = socket.getaddrinfo


class FakeDNS:
    """``socket.getaddrinfo`` answering ``NAME`` with 127.0.0.1; may block or fail first."""

    def __init__(self) -> None:
        self.blocking = False  # wait for ``release`` (at most a few seconds) before answering
        self.failing = False  # raise socket.gaierror instead of answering
        self.release = threading.Event()
        self.name_lookups = 0  # calls that would ask a resolver (not AI_NUMERICHOST)
        self.calls: list[tuple[Any, int]] = []  # (host, flags) of every call
        self._lock = threading.Lock()

    def __call__(
        self,
        host: Any,
        port: Any,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> Any:
        with self._lock:
            self.calls.append((host, flags))
            if not flags & socket.AI_NUMERICHOST:
                self.name_lookups += 1
        if host != NAME:
            return _real_getaddrinfo(host, port, family, type, proto, flags)
        if self.blocking:
            self.release.wait(3.0)  # without the resolver, the caller would wait all of this
        if self.failing:
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return _real_getaddrinfo("127.0.0.1", port, family, type, proto, socket.AI_NUMERICHOST)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch, clock: Clock) -> Iterator[resolver.Resolver]:
    """A fresh process resolver (nothing kept from another test) on the fake clock."""
    fresh = resolver.Resolver(clock=clock)
    monkeypatch.setattr(resolver, "_resolver", fresh)
    yield fresh


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch, lookups: resolver.Resolver) -> Iterator[FakeDNS]:
    fake = FakeDNS()
    monkeypatch.setattr(socket, "getaddrinfo", fake)
    yield fake
    fake.release.set()  # let a blocked lookup thread finish


def port_of(stub: StubServer) -> int:
    return int(stub.url.rsplit(":", 1)[1])


def named_client(stub: StubServer, *, timeout: float = BUDGET) -> ExperienceClient:
    """A client whose base URL names the stub by ``NAME`` instead of its address."""
    url = f"http://{NAME}:{port_of(stub)}"
    return ExperienceClient("org-1", base_url=url, timeout=timeout, retry_policy=NO_RETRIES)


def connect(stub: StubServer) -> None:
    """Open (and close) a new connection to the stub by name."""
    connection = Connection("http", NAME, port_of(stub))
    try:
        connection.connect(Deadline(2.0))
    finally:
        connection.close()


# The budget -------------------------------------------------------------------------------------


def test_a_lookup_slower_than_the_budget_raises_the_timeout_within_it(
    stub: StubServer, dns: FakeDNS, lookups: resolver.Resolver
) -> None:
    dns.blocking = True
    with named_client(stub) as client:
        start = time.monotonic()
        with pytest.raises(RequestTimeout, match="within the time budget"):
            client.delete_profile("p-1")
        assert time.monotonic() - start < BUDGET + MARGIN
    assert lookups._threads and all(thread.daemon for thread in lookups._threads)


def test_a_lookup_the_caller_gave_up_on_answers_the_next_caller(
    stub: StubServer, dns: FakeDNS
) -> None:
    dns.blocking = True
    with named_client(stub) as client:
        start = time.monotonic()
        with pytest.raises(RequestTimeout):
            client.delete_profile("p-1")
        assert time.monotonic() - start < BUDGET + MARGIN
        dns.release.set()
        client.delete_profile("p-1", timeout=2.0)
    assert dns.name_lookups == 1
    assert len(stub.requests) == 1


# Sharing and keeping ----------------------------------------------------------------------------


def call_concurrently(count: int, call: Any) -> list[BaseException | None]:
    """Run ``call`` on ``count`` threads at once; the error each raised (None: none)."""
    errors: list[BaseException | None] = [None] * count
    barrier = threading.Barrier(count)

    def run(index: int) -> None:
        barrier.wait()
        try:
            call()
        except BaseException as exc:
            errors[index] = exc

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5.0)
    assert not any(thread.is_alive() for thread in threads)
    return errors


def release_once_all_wait(monkeypatch: pytest.MonkeyPatch, dns: FakeDNS, callers: int) -> None:
    """Answer the blocked lookup of ``NAME`` once ``callers`` callers wait on a lookup of it.

    None of them can come after the lookup ended (a failure is not kept: a late caller would
    start a lookup of its own), and none is answered before all have asked. Only one lookup is
    in flight until then, so each waits on the shared one unless the resolver does not share.
    """
    wait = resolver._Lookup.wait
    lock = threading.Lock()
    waiting = 0

    def counting_wait(lookup: resolver._Lookup, host: str, seconds: float) -> Any:
        nonlocal waiting
        if host == NAME:
            with lock:
                waiting += 1
                if waiting == callers:
                    dns.release.set()
        return wait(lookup, host, seconds)

    monkeypatch.setattr(resolver._Lookup, "wait", counting_wait)


def test_concurrent_callers_of_one_host_share_one_lookup(
    stub: StubServer, dns: FakeDNS, monkeypatch: pytest.MonkeyPatch
) -> None:
    dns.blocking = True
    release_once_all_wait(monkeypatch, dns, 8)
    with named_client(stub, timeout=3.0) as client:
        errors = call_concurrently(8, lambda: client.delete_profile("p-1"))
    assert errors == [None] * 8
    assert dns.name_lookups == 1
    assert len(stub.requests) == 8


def test_a_failed_lookup_shared_by_concurrent_callers_fails_each_of_them(
    stub: StubServer, dns: FakeDNS, monkeypatch: pytest.MonkeyPatch
) -> None:
    dns.blocking = dns.failing = True
    release_once_all_wait(monkeypatch, dns, 4)
    with named_client(stub, timeout=3.0) as client:
        errors = call_concurrently(4, lambda: client.delete_profile("p-1"))
    assert all(isinstance(error, ConnectionFailed) for error in errors)
    assert all(isinstance(error.__cause__, socket.gaierror) for error in errors if error)
    assert len({id(error.__cause__) for error in errors if error}) == 4  # one copy each
    assert dns.name_lookups == 1


def test_an_answer_is_kept_for_the_next_connects_then_looked_up_again(
    stub: StubServer, dns: FakeDNS, clock: Clock
) -> None:
    connect(stub)
    connect(stub)
    assert dns.name_lookups == 1
    clock.now += resolver.CACHE_SECONDS - 1
    connect(stub)
    assert dns.name_lookups == 1
    clock.now += 2  # past the time the answer is kept
    connect(stub)
    assert dns.name_lookups == 2


def test_a_failed_lookup_is_a_connection_failure_and_is_not_kept(
    stub: StubServer, dns: FakeDNS
) -> None:
    dns.failing = True
    with named_client(stub, timeout=2.0) as client:
        with pytest.raises(ConnectionFailed, match="name resolution") as failure:
            client.delete_profile("p-1")
        assert isinstance(failure.value.__cause__, socket.gaierror)
        dns.failing = False
        client.delete_profile("p-1")  # asked again: the failure was not kept
    assert dns.name_lookups == 2
    connect(stub)  # the answer that came was kept
    assert dns.name_lookups == 2


# IP literals -------------------------------------------------------------------------------------


def test_an_ip_address_is_never_looked_up_by_name(
    client: ExperienceClient, stub: StubServer, dns: FakeDNS, lookups: resolver.Resolver
) -> None:
    client.delete_profile("p-1")  # the fixture's client: http://127.0.0.1:port
    assert len(stub.requests) == 1
    assert ("127.0.0.1", socket.AI_NUMERICHOST) in dns.calls
    assert dns.name_lookups == 0
    assert not lookups._threads and not lookups._cache  # no thread, nothing kept


def test_an_ipv6_address_is_never_looked_up_by_name(
    dns: FakeDNS, lookups: resolver.Resolver
) -> None:
    with socket.socket() as unused:  # a port nothing listens on: refused, but not looked up
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    with pytest.raises(OSError):
        Connection("http", "::1", port).connect(Deadline(1.0))
    assert ("::1", socket.AI_NUMERICHOST) in dns.calls
    assert dns.name_lookups == 0
    assert not lookups._threads and not lookups._cache


# A forked child ----------------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_does_not_wait_on_the_parents_lookup(
    stub: StubServer, dns: FakeDNS, lookups: resolver.Resolver
) -> None:
    # The parent's lookup is in flight on a thread the child will not have; the child's own
    # lookup answers at once (its copy of the fake has seen its one blocking call).
    dns.blocking = True
    with pytest.raises(TimeoutError):
        resolver.resolve(NAME, port_of(stub), Deadline(0.05))
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            dns.blocking = False
            connect(stub)
            code = 0 if resolver._resolver is not lookups else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0

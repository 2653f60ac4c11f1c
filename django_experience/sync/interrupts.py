"""Ctrl-C during an import: a request to stop, not an exception.

``KeyboardInterrupt`` is raised wherever the main thread happens to be, and that can be between
a lock's acquisition and the ``try`` that releases it (in the thread pool's ``submit``, in
``concurrent.futures.wait``): the worker that needs the lock then blocks, and the import waits
for its batch forever. So while an import runs in the main thread, the first Ctrl-C only asks
it to stop (no new request, no retry; the batches in flight finish), and a second one quits at
once. Neither loses anything: a block is recorded as done only once it was sent, and
``--resume`` sends every block that was not.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from types import FrameType

QUIT_STATUS = 130  # what a shell reports for a process ended by SIGINT


@contextmanager
def ctrl_c_stops(stop: Callable[[], None], say: Callable[[str], None]) -> Iterator[None]:
    """Within the block, Ctrl-C calls ``stop`` (once); a second Ctrl-C ends the process.
    ``say`` tells the user which of the two happened.

    Only in the main thread (the only one that may set a handler) and only while SIGINT has
    Python's default handler: an ignored SIGINT (a job started in the background) stays
    ignored, and a handler of the caller's own stays in charge.
    """
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    pressed = 0

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        nonlocal pressed
        pressed += 1
        if pressed == 1:
            stop()
            _quietly(lambda: say("Stopping after the batches in flight (Ctrl-C again: quit now)"))
            return
        _quietly(lambda: say("Quit: run again with --resume to send the rest"))
        _quietly(sys.stdout.flush)
        # No exception (see the module's docstring), and no waiting for the worker threads,
        # which a normal exit does: this is the way out when a request hangs.
        os._exit(QUIT_STATUS)

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _quietly(write: Callable[[], object]) -> None:
    # A closed or broken stream, or one the interrupted code was writing to (a reentrant
    # write raises RuntimeError), must not keep the import from stopping.
    with suppress(OSError, ValueError, RuntimeError):
        write()

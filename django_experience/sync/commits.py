"""One database commit for the completions of several import batches.

Storing a batch's mappings is cheap; committing them is not: a commit waits for the disk
(an ``fsync``), and one per batch of 50 rows cost more than everything else the import does
for those rows. So the completions of consecutive batches share a transaction, committed at
most :data:`MAX_SECONDS` after it began or after :data:`MAX_BATCHES` batches, whichever comes
first, and always before the import ends.

A block is recorded done in the checkpoint only once its mappings are committed: should the
import die before a commit, ``--resume`` sends those blocks again, which is safe because each
row is sent with the same profile id and message id as before. The one exception is a row
sent with a profile made up on the spot (its mapped profile was gone, see
``ImportTarget.recover``): sent again, it would make yet another profile, so a batch with such
a row is committed at once, as every batch was before.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Generic, TypeVar

MAX_SECONDS = 0.2
MAX_BATCHES = 20

_Done = TypeVar("_Done")


class GroupedCommits(Generic[_Done]):
    """Holds a transaction open across batches and what to record once it commits.

    ``begin`` makes the transaction (``None``: the destination writes nothing that needs one,
    and each batch is recorded at once); ``record`` is called with each batch after the commit
    that made it durable.
    """

    def __init__(
        self,
        begin: Callable[[], AbstractContextManager[object] | None],
        record: Callable[[_Done], None],
        *,
        max_seconds: float | None = None,
        max_batches: int | None = None,
    ) -> None:
        self._begin = begin
        self._record = record
        self._max_seconds = MAX_SECONDS if max_seconds is None else max_seconds
        self._max_batches = MAX_BATCHES if max_batches is None else max_batches
        self._open: AbstractContextManager[object] | None = None
        self._opened_at = 0.0
        self._waiting: list[_Done] = []

    def open(self) -> None:
        """Before a batch's completion writes: start a transaction unless one is open."""
        if self._open is not None:
            return
        transaction = self._begin()
        if transaction is not None:
            transaction.__enter__()
            self._open, self._opened_at = transaction, time.monotonic()

    def seconds_left(self) -> float | None:
        """How long the open transaction may stay open still (``None``: none is open). The
        pipeline waits no longer for answers with one open: an import stalled on the network
        must not hold the database's write lock."""
        if self._open is None:
            return None
        return max(0.0, self._opened_at + self._max_seconds - time.monotonic())

    def done(self, batch: _Done, *, now: bool = False) -> None:
        """``batch`` was completed: record it once committed; ``now`` commits at once."""
        if self._open is None:
            self._record(batch)
            return
        self._waiting.append(batch)
        due = time.monotonic() - self._opened_at >= self._max_seconds
        if now or due or len(self._waiting) >= self._max_batches:
            self.commit()

    def commit(self) -> None:
        """Commit what is open, then record the batches it made durable."""
        transaction, self._open = self._open, None
        if transaction is not None:
            transaction.__exit__(None, None, None)
        waiting, self._waiting = self._waiting, []
        for batch in waiting:
            self._record(batch)

    def roll_back(self, exc: BaseException) -> None:
        """The import failed: drop what is open; its batches stay open for ``--resume``."""
        transaction, self._open = self._open, None
        self._waiting = []
        if transaction is not None:
            transaction.__exit__(type(exc), exc, exc.__traceback__)


__all__ = ["MAX_BATCHES", "MAX_SECONDS", "GroupedCommits"]

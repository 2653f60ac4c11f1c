"""The resume checkpoint: which batches of a source are done, written after each completion.

Batches are numbered in source order; with the same source and batch size a re-run builds the
same batches, so ``--resume`` skips the completed ones without sending them again. The file is
replaced atomically, so a crash leaves the previous complete state.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from typing import Any


class CheckpointError(Exception):
    """The checkpoint belongs to another import or cannot be read."""


def _merge(ranges: list[list[int]]) -> list[list[int]]:
    merged: list[list[int]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return merged


class Checkpoint:
    """Completed batch indexes as merged ``[first, last]`` ranges, plus the import's identity."""

    def __init__(self, path: str, identity: dict[str, Any]) -> None:
        self.path = path
        self.identity = identity
        self._done: list[list[int]] = []

    def load(self) -> None:
        """Read a previous run's progress; refuse one of a different import."""
        try:
            with open(self.path, encoding="utf-8") as stream:
                data = json.load(stream)
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"cannot read the checkpoint {self.path}: {exc}") from exc
        if not isinstance(data, dict) or data.get("identity") != self.identity:
            raise CheckpointError(
                f"the checkpoint {self.path} belongs to another import "
                f"({data.get('identity') if isinstance(data, dict) else data!r}); "
                "run without --resume to start over"
            )
        ranges = data.get("completed_batches", [])
        self._done = _merge([[int(a), int(b)] for a, b in ranges])

    def is_done(self, index: int) -> bool:
        return any(start <= index <= end for start, end in self._done)

    def mark_done(self, index: int) -> None:
        self._done = _merge([*self._done, [index, index]])

    def completed_batches(self) -> int:
        return sum(end - start + 1 for start, end in self._done)

    def save(self, *, finished: bool = False) -> None:
        data = {"identity": self.identity, "completed_batches": self._done, "finished": finished}
        directory = os.path.dirname(os.path.abspath(self.path))
        fd, tmp = tempfile.mkstemp(prefix=".experience-import-", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as stream:
                json.dump(data, stream)
            os.replace(tmp, self.path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

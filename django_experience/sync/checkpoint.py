"""The resume checkpoint: which blocks of a source were completed, and with what content.

An import forms its batches from fixed blocks of input positions (``batch_size`` lines of a
file, or ``batch_size`` consecutive users in primary-key order), so fixing or editing a line
changes its own block only. A completed block is recorded by a short digest of what it sent
(its rows with their line numbers, the destination's settings and a hash of its credentials);
``--resume`` skips a block only when the same digest was recorded. A block whose input changed,
that never completed, or that is not known for certain, is sent again, which is safe: message
ids derive from the rows, and profiles are found by external id.

The file is JSON lines, written append-only: a header with the import's identity, then one line
per completed block, written and flushed at once (constant work per batch; a crash loses at
most a partly written last line, which is ignored, and the resumed run's entries start on a line
of their own after it). The rows of a completed block that were
refused for their content are kept with it (line, kind and reason), so a resumed run can report
them again. Digests are read into memory only with ``--resume``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Sequence
from typing import Any, TextIO

VERSION = 2
DIGEST_BYTES = 16


class CheckpointError(Exception):
    """The checkpoint belongs to another import or cannot be read."""


def secret_fingerprint(*parts: object) -> str:
    """A short hash of settings that decide where rows go (URLs, keys): never the secret."""
    text = "\0".join(json.dumps(part, sort_keys=True, default=str) for part in parts)
    return hashlib.sha256(b"django-experience checkpoint\0" + text.encode()).hexdigest()[:24]


def block_digest(context: str, block: int, rows: Sequence[Any]) -> str:
    """The digest of one block's rows (anything with ``line``, ``user_pk`` and
    ``canonical()``), of where in the source it lies, and of ``context`` (the destination)."""
    digest = hashlib.blake2b(digest_size=DIGEST_BYTES)
    digest.update(f"{context}\0{block}".encode())
    for row in rows:
        digest.update(f"\n{row.line}\0{row.user_pk!r}\0".encode())
        digest.update(row.canonical().encode())
    return digest.hexdigest()


class Checkpoint:
    """The digests of completed blocks, plus the import's identity.

    :meth:`load` (only with ``--resume``) reads a previous run's progress; :meth:`start` opens
    the file for this run: appending after a loaded checkpoint, else starting a new one.
    """

    def __init__(self, path: str, identity: dict[str, Any]) -> None:
        self.path = path
        self.identity = identity
        self._done: set[str] = set()
        self._refused: dict[str, list[dict[str, Any]]] = {}
        self._loaded = False  # a current checkpoint of this import was read: append to it
        self._cut_short = False  # its last line lacks a newline (a crash while writing it)
        self._stream: TextIO | None = None

    def load(self) -> None:
        """Read a previous run's progress; refuse one of a different import."""
        try:
            # errors="replace": a line cut short in the middle of a character (a crash while
            # writing it) is then only a line that is not JSON, ignored like any cut-off line.
            stream = open(self.path, encoding="utf-8", errors="replace")  # noqa: SIM115
        except FileNotFoundError:
            return
        except OSError as exc:
            raise CheckpointError(f"cannot read the checkpoint {self.path}: {exc}") from exc
        with stream:
            try:
                last = stream.readline()
                header = json.loads(last)
            except (OSError, ValueError) as exc:
                raise CheckpointError(f"cannot read the checkpoint {self.path}: {exc}") from exc
            if not isinstance(header, dict) or header.get("identity") != self.identity:
                raise CheckpointError(
                    f"the checkpoint {self.path} belongs to another import "
                    f"({header.get('identity') if isinstance(header, dict) else header!r}); "
                    "run without --resume to start over"
                )
            if header.get("version") != VERSION:
                return  # an older format, without digests: nothing is known to be done
            for line in stream:
                last = line
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue  # the last line, cut short by a crash
                digest = entry.get("done") if isinstance(entry, dict) else None
                if not isinstance(digest, str):
                    continue
                self._done.add(digest)
                refused = entry.get("refused")
                if isinstance(refused, list) and refused:
                    self._refused[digest] = [item for item in refused if isinstance(item, dict)]
        self._loaded = True
        self._cut_short = not last.endswith("\n")

    def start(self) -> None:
        """Open the file for this run's completions."""
        if self._loaded:
            self._stream = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - see close()
            if self._cut_short:
                # End the line a crash cut short, so this run's first entry gets a line of its
                # own instead of being glued to it (and lost with it).
                self._stream.write("\n")
                self._cut_short = False
            return
        self._stream = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 - see close()
        self._write({"version": VERSION, "identity": self.identity})

    def is_done(self, digest: str) -> bool:
        return digest in self._done

    def refused(self, digest: str) -> list[dict[str, Any]]:
        """``{"line", "kind", "reason"}`` of the rows refused in a completed block."""
        return self._refused.get(digest, [])

    def mark_done(self, digest: str, refused: Sequence[dict[str, Any]] = ()) -> None:
        """Record a completed block (appended and flushed at once)."""
        entry: dict[str, Any] = {"done": digest}
        if refused:
            entry["refused"] = list(refused)
        self._write(entry)

    def _write(self, entry: dict[str, Any]) -> None:
        if self._stream is None:
            raise RuntimeError("Checkpoint.start() was not called")
        self._stream.write(json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n")
        self._stream.flush()

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    def remove(self) -> None:
        self.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

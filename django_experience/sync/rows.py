"""What an import reads: valid rows and rejected ones, each with its line number."""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

# Fixed namespace: a row's message id must be the same in every run, on every machine.
MESSAGE_NAMESPACE = uuid.UUID("5b0e8f5e-3c1f-5d6a-9a57-6f1d2e0c9b41")
_NAMESPACE_BYTES = MESSAGE_NAMESPACE.bytes


def _uuid_text(digest: bytes, version: int) -> str:
    """``str(uuid.UUID(bytes=digest[:16], version=version))``: an import makes two per row,
    and the UUID objects cost more than the hashing."""
    raw = bytearray(digest[:16])
    raw[6] = (raw[6] & 0x0F) | (version << 4)
    raw[8] = (raw[8] & 0x3F) | 0x80  # the RFC 4122 variant
    text = raw.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


@dataclass(frozen=True)
class Row:
    """One valid source row: the person's external id and their traits."""

    line: int
    external_id: str
    traits: dict[str, Any]
    user_pk: Any = None  # the Django user's primary key with ``--users``

    def canonical(self) -> str:
        """The row as compact, sorted JSON (message id, checkpoint digest, errors file)."""
        return self._canonical

    @functools.cached_property
    def _canonical(self) -> str:  # computed once: used for the message id and the digest
        return json.dumps(
            {"id": self.external_id, "traits": self.traits},
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            default=str,
        )

    def message_id(self) -> str:
        """Derived from the row's content, so a resent row carries the same id: what
        ``uuid.uuid5(MESSAGE_NAMESPACE, canonical)`` gives, without its objects."""
        digest = hashlib.sha1(
            _NAMESPACE_BYTES + self.canonical().encode(), usedforsecurity=False
        ).digest()
        return _uuid_text(digest, 5)


@dataclass(frozen=True)
class Rejected:
    """A row that cannot be imported, and why."""

    line: int
    reason: str
    raw: str = ""
    external_id: str | None = None


@dataclass
class Batch:
    """Valid rows of one block of the source, sent together.

    ``block`` is the block of input positions the rows come from (``batch_size`` lines of a
    file, or consecutive users), the same in every run of an unchanged source; ``index``
    numbers the batches of this run. ``digest`` identifies the block's content for the resume
    checkpoint, and ``refused`` collects the rows refused for their content (line, kind and
    reason), kept with the block when it completes.
    """

    index: int
    rows: list[Row] = field(default_factory=list)
    block: int = 0
    digest: str = ""
    refused: list[dict[str, Any]] = field(default_factory=list)

    @property
    def first_line(self) -> int:
        return self.rows[0].line

    @property
    def last_line(self) -> int:
        return self.rows[-1].line


def derived_profile_id(
    secret: str, organization_id: str, environment: str, external_id: str
) -> str:
    """The profile id a never-seen external id is created at.

    The same in every run (a re-run or an ``--async`` import never creates a second profile)
    yet unguessable without the site's secret, because profile ids are readable by anyone
    who knows them.
    """
    message = f"{organization_id}\0{environment}\0{external_id}".encode()
    return _uuid_text(hmac.digest(secret.encode(), message, "sha256"), 4)


def parse_external_id(value: object) -> str | None:
    """A usable external id (non-empty string, or an integer), as a string; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None

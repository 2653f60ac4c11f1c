"""Row sources of an import, read as streams: ``.jsonl``, ``.csv`` (a file or standard input), or
the Django users. Nothing is read ahead beyond the current record, so memory stays flat.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from typing import IO, Any

from django_experience.mappings import unkeepable_external_id
from django_experience.sync.rows import Rejected, Row, parse_external_id

RAW_PREVIEW = 500  # characters of a bad row kept for the errors file
# The csv module refuses a cell over 131,072 characters by default, a valid trait that JSON
# lines carry. The bound stays, far above any value the API takes, so that an unclosed quote
# (which swallows the rest of the file into one cell) is still refused, not read into memory.
MAX_CSV_CELL = 16 * 1024 * 1024
FORMATS = ("jsonl", "csv")


class SourceError(Exception):
    """The source cannot be read at all (missing file, no ``id`` column, ...)."""


class Source:
    """Yields :class:`Row` and :class:`Rejected` in source order; reports how far it got."""

    name = "source"

    def __iter__(self) -> Iterator[Row | Rejected]:
        raise NotImplementedError

    def position(self) -> int:
        """Units consumed so far (bytes for files, rows for users)."""
        raise NotImplementedError

    def total(self) -> int | None:
        """Units in all, when known."""
        return None

    unit = "bytes"


def _check_id(line: int, value: object, raw: str) -> str | Rejected:
    if value is None:
        return Rejected(line, "missing id", raw)
    external_id = parse_external_id(value)
    if external_id is None:
        return Rejected(line, f"id must be a non-empty string or an integer, got {value!r}", raw)
    unkeepable = unkeepable_external_id(external_id)
    if unkeepable is not None:
        return Rejected(line, f"id {unkeepable}", raw[:RAW_PREVIEW])
    return external_id


def _not_utf8(value: object) -> str | None:
    """Why ``value`` cannot be written as UTF-8 (a string holding a lone surrogate, as a JSON
    escape such as ``\\ud800`` gives): the row could not be digested, sent nor even written to
    the errors file. None when it can."""
    try:
        json.dumps(value, ensure_ascii=False, default=str).encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = exc.object[exc.start : exc.end]
        return f"a string holds a lone surrogate ({bad!r}), which UTF-8 cannot carry"
    return None


class _ByteLines:
    """Decoded lines of a binary stream, counting bytes and remembering undecodable lines."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.consumed = 0
        self.line = 0
        self.bad_lines: set[int] = set()

    def __iter__(self) -> Iterator[str]:
        for chunk in self.stream:
            self.consumed += len(chunk)
            self.line += 1
            if self.line == 1 and chunk.startswith(b"\xef\xbb\xbf"):
                chunk = chunk[3:]
            try:
                yield chunk.decode("utf-8")
            except UnicodeDecodeError:
                self.bad_lines.add(self.line)
                yield chunk.decode("utf-8", errors="replace")


def _open(path: str, stdin: IO[bytes] | None) -> tuple[IO[bytes], int | None]:
    if path == "-":
        if stdin is None:
            raise SourceError("no standard input to read from")
        return stdin, None
    try:
        stream = open(path, "rb")  # noqa: SIM115 - closed by the source when exhausted
    except OSError as exc:
        raise SourceError(f"cannot open {path}: {exc.strerror or exc}") from exc
    try:
        size = os.fstat(stream.fileno()).st_size
    except OSError:
        size = None
    return stream, size


class _FileSource(Source):
    """A file (or standard input) read line by line; subclasses turn the lines into records."""

    def __init__(self, path: str, stdin: IO[bytes] | None = None) -> None:
        self.path = path
        self._stream, self._size = _open(path, stdin)
        self._lines = _ByteLines(self._stream)

    def position(self) -> int:
        return self._lines.consumed

    def total(self) -> int | None:
        return self._size

    def __iter__(self) -> Iterator[Row | Rejected]:
        try:
            yield from self._records()
        finally:
            if self.path != "-":  # standard input is the caller's to close
                self._stream.close()

    def _records(self) -> Iterator[Row | Rejected]:
        raise NotImplementedError


class JsonLinesSource(_FileSource):
    """One JSON object per line: ``{"id": ..., "traits": {...}}``. Blank lines are skipped."""

    name = "jsonl"

    def _records(self) -> Iterator[Row | Rejected]:
        for text in self._lines:
            line = self._lines.line
            stripped = text.strip()
            if not stripped:
                continue
            yield self._parse(line, stripped)

    def _parse(self, line: int, text: str) -> Row | Rejected:
        raw = text[:RAW_PREVIEW]
        if line in self._lines.bad_lines:
            return Rejected(line, "not valid UTF-8", raw)
        try:
            data = json.loads(text)
        except ValueError as exc:
            return Rejected(line, f"bad JSON: {exc}", raw)
        if not isinstance(data, dict):
            return Rejected(line, f"a row must be a JSON object, got {type(data).__name__}", raw)
        checked = _check_id(line, data.get("id"), raw)
        if isinstance(checked, Rejected):
            return checked
        traits = data.get("traits", {})
        if traits is None:
            traits = {}
        if not isinstance(traits, dict):
            return Rejected(
                line, f"traits must be an object, got {type(traits).__name__}", raw, checked
            )
        if "\\u" in text:  # only an escape gives a lone surrogate: the line itself is UTF-8
            problem = _not_utf8([checked, traits])
            if problem is not None:
                return Rejected(line, problem, raw)  # the line as read: its escapes are ASCII
        return Row(line, checked, traits)


class CsvSource(_FileSource):
    """A header row with an ``id`` column; every other column is a trait (empty cells omitted)."""

    name = "csv"

    def _records(self) -> Iterator[Row | Rejected]:
        if csv.field_size_limit() < MAX_CSV_CELL:  # the limit is global: only ever raised
            csv.field_size_limit(MAX_CSV_CELL)
        reader = csv.reader(self._lines)
        try:
            header = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise SourceError(f"line 1: cannot read the CSV header: {exc}") from exc
        columns = [name.strip() for name in header]
        if "id" not in columns:
            raise SourceError(f"the CSV header has no 'id' column (columns: {', '.join(columns)})")
        id_index = columns.index("id")
        previous_end = reader.line_num
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                reason = (
                    f"a cell is longer than {MAX_CSV_CELL:,} characters (a quote left open?)"
                    if "field limit" in str(exc)
                    else f"bad CSV: {exc}"
                )
                yield Rejected(reader.line_num, reason)
                previous_end = reader.line_num
                continue
            start, end = previous_end + 1, reader.line_num
            previous_end = end
            if all(not cell.strip() for cell in cells):
                continue  # a blank line, or a spreadsheet's empty row (",,,"): nothing to send
            raw = ",".join(cells)[:RAW_PREVIEW]
            if any(number in self._lines.bad_lines for number in range(start, end + 1)):
                yield Rejected(end, "not valid UTF-8", raw)
                continue
            if len(cells) != len(columns):  # too few as much as too many: a cell gone astray
                yield Rejected(
                    end,
                    f"{_count(len(cells), 'cell')} but the header has "
                    f"{_count(len(columns), 'column')}",
                    raw,
                )
                continue
            checked = _check_id(end, cells[id_index], raw)
            if isinstance(checked, Rejected):
                yield checked
                continue
            traits = {
                name: value
                for name, value in zip(columns, cells, strict=False)
                if name != "id" and name and value != ""
            }
            yield Row(end, checked, traits)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


class UsersSource(Source):
    """Django users (by primary key), with the ``EXPERIENCE_USER_ID``/``_TRAITS`` callables."""

    name = "users"
    unit = "rows"

    def __init__(self, queryset: Any = None) -> None:
        from django.contrib.auth import get_user_model

        self._queryset = (
            queryset if queryset is not None else get_user_model()._default_manager.all()
        )
        self._count = 0

    def position(self) -> int:
        return self._count

    def total(self) -> int | None:
        return int(self._queryset.count())

    def __iter__(self) -> Iterator[Row | Rejected]:
        from django_experience.visitor import traits_for, user_id_for

        for user in self._queryset.order_by("pk").iterator(chunk_size=500):
            self._count += 1
            line = self._count
            raw = f"user pk={user.pk}"
            try:
                checked = _check_id(line, user_id_for(user), raw)
                if isinstance(checked, Rejected):
                    yield checked
                    continue
                traits = traits_for(user)
                problem = _not_utf8([checked, traits])
            except Exception as exc:
                yield Rejected(line, f"{type(exc).__name__}: {exc}", raw)
                continue
            if problem is not None:
                yield Rejected(line, problem, raw)
                continue
            yield Row(line, checked, traits, user_pk=user.pk)


def open_source(
    *, path: str | None, users: bool, fmt: str | None, stdin: IO[bytes] | None = None
) -> Source:
    """The source the command line asks for."""
    if users == (path is not None):
        raise SourceError("give exactly one source: --users or --file PATH")
    if users:
        return UsersSource()
    assert path is not None
    if fmt is None:
        if path == "-":
            raise SourceError("reading standard input needs --format jsonl or --format csv")
        suffix = os.path.splitext(path)[1].lower().lstrip(".")
        fmt = {"jsonl": "jsonl", "ndjson": "jsonl", "json": "jsonl", "csv": "csv"}.get(suffix)
        if fmt is None:
            raise SourceError(f"cannot tell the format of {path}: use --format jsonl or csv")
    if fmt not in FORMATS:
        raise SourceError(f"unknown format {fmt!r}: use jsonl or csv")
    return JsonLinesSource(path, stdin) if fmt == "jsonl" else CsvSource(path, stdin)

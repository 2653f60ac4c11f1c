"""Read a queryset a page at a time, for work that may stop before its end."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TypeVar

from django.db import models
from django.db.models import QuerySet

Row = TypeVar("Row", bound=models.Model)

PAGE = 100


def in_pages(queryset: QuerySet[Row]) -> Iterator[Row]:
    """The rows of ``queryset`` in primary key order, read ``PAGE`` at a time.

    An admin action on "all 1,000,000 selected" (or a command over every pending row) would
    otherwise load every row before its first call, and may stop after a few
    (``call_budget``). Each page starts after the last row read, so rows deleted meanwhile
    shift nothing.
    """
    last: Any = None
    while True:
        page = queryset.order_by("pk")
        if last is not None:
            page = page.filter(pk__gt=last)
        rows = list(page[:PAGE])
        yield from rows
        if len(rows) < PAGE:
            return
        last = rows[-1].pk


__all__ = ["PAGE", "in_pages"]

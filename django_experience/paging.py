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
        if not rows:
            return
        # Read before the caller sees the rows: deleting the page's last one sets its pk to
        # None, and the next page would start over from the first row.
        last = rows[-1].pk
        yield from rows
        if len(rows) < PAGE:
            return


__all__ = ["PAGE", "in_pages"]

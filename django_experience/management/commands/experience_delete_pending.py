"""``manage.py experience_delete_pending``: retry the remote deletions of deleted users'
profiles."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS

from django_experience import call_budget
from django_experience.call_budget import CallBudget
from django_experience.deletions import delete_pending, pending
from django_experience.paging import in_pages


class Command(BaseCommand):
    help = (
        "Retry every pending remote profile deletion (profiles of deleted users whose DELETE "
        "failed or was never sent). Exits non-zero when some remain pending."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--database",
            default=DEFAULT_DB_ALIAS,
            help="The database holding the pending deletions (default 'default').",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        rows = pending(using=options["database"])
        total = rows.count()
        if not total:
            self.stdout.write("No profile deletions pending.")
            return
        # While the API is down, each DELETE would wait EXPERIENCE_TIMEOUT: a run of thousands
        # would last hours and overlap the next one. It stops after a few failures in a row.
        budget = CallBudget(time_limited=False)
        outcome = delete_pending(in_pages(rows), budget=budget)
        deleted, failed = len(outcome.deleted), len(outcome.failed)
        left = total - deleted
        untried = left - failed
        self.stdout.write(
            f"{deleted} profile(s) deleted in the Experience API, {left} still pending"
            + (
                f" ({untried} not tried: the Experience API failed "
                f"{call_budget.FAILURES_IN_A_ROW} times in a row)."
                if untried
                else "."
            )
        )
        if left:
            raise CommandError(
                f"{left} profile deletion(s) still pending (see the log, or the admin's "
                "pending profile deletions); run the command again later",
                returncode=1,
            )

"""``manage.py experience_delete_pending``: retry the remote deletions of deleted users'
profiles."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS

from django_experience.deletions import delete_pending, pending


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
        if not rows.exists():
            self.stdout.write("No profile deletions pending.")
            return
        outcome = delete_pending(rows)
        deleted, failed = len(outcome.deleted), len(outcome.failed)
        self.stdout.write(
            f"{deleted} profile(s) deleted in the Experience API, {failed} still pending."
        )
        if failed:
            raise CommandError(
                f"{failed} profile deletion(s) still pending (see the log, or the admin's "
                "pending profile deletions); run the command again later",
                returncode=1,
            )

"""``manage.py experience_emulator``: the Experience API emulator for local development."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_experience.emulator.cli import add_arguments, serve


class Command(BaseCommand):
    help = "Run a local in-memory emulator of the Experience API until Ctrl-C."

    def add_arguments(self, parser: CommandParser) -> None:
        add_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        status = serve(options, out=self.stdout, err=self.stderr)
        if status:
            raise CommandError("the emulator could not start (see above)", returncode=status)

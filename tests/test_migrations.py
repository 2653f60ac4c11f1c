"""The migrations match the models (a model change without its migration fails here)."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def test_no_model_change_lacks_a_migration() -> None:
    out = io.StringIO()
    try:
        call_command(
            "makemigrations", "django_experience", check=True, dry_run=True, stdout=out
        )
    except SystemExit as exc:  # --check exits 1 when a migration is missing
        pytest.fail(f"makemigrations --check found changes:\n{out.getvalue()} ({exc})")

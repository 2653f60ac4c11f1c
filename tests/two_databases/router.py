"""Routes django-experience's models to the ``experience`` database, the rest to ``default``."""

from __future__ import annotations

from typing import Any

APP = "django_experience"


class ExperienceRouter:
    def db_for_read(self, model: Any, **hints: Any) -> str | None:
        return "experience" if model._meta.app_label == APP else None

    def db_for_write(self, model: Any, **hints: Any) -> str | None:
        return "experience" if model._meta.app_label == APP else None

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool | None:
        return True  # a mapping's user lives in the other database

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool | None:
        if app_label == APP:
            return db == "experience"
        # SQLite checks a foreign key's table even for NULL: the users' table exists there too.
        return db == "default" or app_label in ("auth", "contenttypes")

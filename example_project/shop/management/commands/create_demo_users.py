"""``manage.py create_demo_users``: create (or reset) the demo accounts and print them."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand

from shop.demo_users import DEMO_USERS
from shop.traits import GOLD_GROUP


class Command(BaseCommand):
    help = "Create or reset the demo users (fixed passwords: for local demos only) and list them."

    def handle(self, *args: Any, **options: Any) -> None:
        user_model = get_user_model()
        gold, _ = Group.objects.get_or_create(name=GOLD_GROUP)
        for demo in DEMO_USERS:
            user, _ = user_model.objects.get_or_create(username=demo.username)
            user.first_name = demo.first_name
            user.last_name = demo.last_name
            user.email = demo.email
            user.is_staff = user.is_superuser = demo.staff
            user.set_password(demo.password)
            user.save()
            if demo.gold:
                user.groups.add(gold)
            else:
                user.groups.remove(gold)

        self.stdout.write("Demo users (username / password):")
        for demo in DEMO_USERS:
            self.stdout.write(
                f"  {demo.username:<8} {demo.password:<16} {demo.first_name} {demo.last_name}, "
                f"{demo.role}"
            )

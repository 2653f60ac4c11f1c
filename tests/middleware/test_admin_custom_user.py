"""The admin with a custom user model that has no ``username`` (an inner test session: the
user model is chosen when Django starts)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

INNER_TESTS = """
import pytest
from django.contrib.auth import get_user_model

from django_experience.models import ProfileMapping

CHANGELIST = "/admin/django_experience/profilemapping/"


@pytest.mark.django_db
def test_searching_mappings_finds_users_by_their_e_mail(client):
    admin = get_user_model().objects.create_superuser("root@example.com", "pw")
    ada = get_user_model().objects.create(email="ada@example.com")
    mapping = ProfileMapping.objects.create(
        profile_id="p-ada", user=ada, organization_id="test-org", environment="main"
    )
    ProfileMapping.objects.create(profile_id="p-other", organization_id="test-org")
    client.force_login(admin)
    response = client.get(CHANGELIST, {"q": "ada@example"})
    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == [mapping]
"""


def test_the_mappings_admin_searches_a_user_model_without_username(
    pytester: pytest.Pytester,
) -> None:
    root = Path(__file__).resolve().parent.parent.parent
    pytester.makepyfile(test_inner=INNER_TESTS)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-o", f"pythonpath={root}",
        "--ds=tests.email_user.settings", "-q",
    )
    result.assert_outcomes(passed=1)

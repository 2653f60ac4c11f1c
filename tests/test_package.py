"""The package's top-level promises."""

from __future__ import annotations

import subprocess
import sys

import django_experience
from django_experience import delivery


def test_send_is_the_delivery_convenience() -> None:
    assert django_experience.send is delivery.send


def test_importing_the_api_client_does_not_load_django() -> None:
    code = "import sys, django_experience.api; assert 'django' not in sys.modules, 'django loaded'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_unknown_attribute_is_an_attribute_error() -> None:
    try:
        django_experience.nothing_here  # noqa: B018
    except AttributeError as error:
        assert "nothing_here" in str(error)
    else:
        raise AssertionError("expected AttributeError")

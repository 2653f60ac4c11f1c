"""Both destination emulators served by the Experience API emulator, under their prefixes."""

from __future__ import annotations

import requests

from django_experience.destinations.experiture import ExperitureClient
from django_experience.destinations.releva import RelevaClient
from django_experience.emulator import destinations
from django_experience.emulator.handle import EmulatorHandle


def test_the_experience_emulator_serves_and_reports_both_destinations(
    experience_emulator: EmulatorHandle,
) -> None:
    url = experience_emulator.url
    experiture = ExperitureClient(url=url + "/experiture/public/v1", token="t", backoff=0.01)
    releva = RelevaClient(url=url + "/releva/api/v0", secret_key="k", backoff=0.01)

    experiture.upsert_profile({"email": "jane@example.com", "tier": "gold"}, match_key="email")
    assert releva.upsert_profiles([{"email": "jane@example.com", "firstName": "Jane"}]).ok
    assert "tier" in experiture.get_schema().fields

    expected = {
        "experiture": [{"email": "jane@example.com", "tier": "gold"}],
        "releva": [{"email": "jane@example.com", "firstName": "Jane",
                    "subscribedAtChanged": False}],
    }
    assert experience_emulator.destinations() == expected
    control = requests.get(url + "/__emulator__/destinations", timeout=5)
    assert control.json()["data"] == expected

    requests.post(url + "/__emulator__/reset", timeout=5).raise_for_status()
    assert experience_emulator.destinations() == {"experiture": [], "releva": []}


def test_the_experience_emulator_resets_destination_configuration_between_tests(
    experience_emulator: EmulatorHandle,
) -> None:
    destinations.configure(experiture_token="only-this")
    experience_emulator.reset()
    client = ExperitureClient(url=experience_emulator.url + "/experiture/public/v1",
                              token="any-other")
    assert client.upsert_profile({"email": "a@b.c"}).accepted

"""Destinations built from the EXPERIENCE_DESTINATIONS shape, sending to the emulators."""

from __future__ import annotations

from typing import Any

import pytest

from django_experience.destinations.configured import build_destinations
from django_experience.destinations.errors import Unauthorized
from django_experience.emulator import destinations
from tests.destinations.conftest import DestinationServer

TRAITS: list[dict[str, Any]] = [
    {"email": "jane@example.com", "firstname": "Jane", "tier": "gold", "orders": 3},
    {"firstname": "No Email", "tier": "silver"},
    {"email": "joe@example.com", "firstname": "Joe", "tier": None,
     "last_order_at": "2026-04-20T12:00:00"},
]


def config(server: DestinationServer) -> dict[str, Any]:
    return {
        "experiture": {"url": server.experiture_url, "token": "tok", "match_key": "email",
                       "fields": {"email": "email", "firstname": "first_name", "tier": "tier",
                                  "last_order_at": "last_order_at"},
                       "max_retries": 1},
        "releva": {"url": server.releva_url, "secret_key": "sk", "batch_size": 2,
                   "fields": {"email": "email", "firstname": "firstName",
                              "tier": "custom.tier"}},
    }


def test_each_destination_maps_sends_and_reports_by_index(
    destination_server: DestinationServer,
) -> None:
    built = build_destinations(config(destination_server))
    assert sorted(built) == ["experiture", "releva"]

    experiture = built["experiture"].send(TRAITS)
    assert experiture.sent == (0,)
    first, second = experiture.rejected
    assert first.index == 1 and "match key 'email'" in first.reason
    assert second.index == 2 and "last_order_at" in second.reason  # naive date-time
    releva = built["releva"].send(TRAITS)
    assert releva.sent == (0, 2)
    assert [item.index for item in releva.rejected] == [1]
    assert "email or phoneNumber" in releva.rejected[0].reason

    stored = destinations.snapshot()
    assert stored["experiture"] == [
        {"email": "jane@example.com", "first_name": "Jane", "tier": "gold"}
    ]
    assert stored["releva"] == [
        {"email": "jane@example.com", "firstName": "Jane",
         "custom": {"string": [{"key": "tier", "values": ["gold"]}]},
         "subscribedAtChanged": False},
        {"email": "joe@example.com", "firstName": "Joe", "subscribedAtChanged": False},
    ]


def test_naive_datetime_trait_is_rejected_for_experiture(
    destination_server: DestinationServer,
) -> None:
    report = build_destinations(config(destination_server))["experiture"].send([TRAITS[2]])
    assert report.sent == ()
    assert "last_order_at" in report.rejected[0].reason


def test_an_auth_failure_fails_every_remaining_profile(
    destination_server: DestinationServer,
) -> None:
    destinations.configure(experiture_token="other", releva_secret_key="other")
    built = build_destinations(config(destination_server))
    for name in ("experiture", "releva"):
        report = built[name].send([TRAITS[0], TRAITS[2], TRAITS[0]])
        assert report.sent == ()
        assert not report.ok
        assert all(isinstance(item.error, Unauthorized) for item in report.failed)
    experiture_failed = built["experiture"].send([TRAITS[0], TRAITS[0]]).failed
    assert [item.index for item in experiture_failed] == [0, 1]


def test_schema_check_refuses_unknown_fields_before_sending(
    destination_server: DestinationServer,
) -> None:
    destinations.configure(experiture_schema=["email", "first_name"])
    options = config(destination_server)
    options["experiture"]["check_schema"] = True
    report = build_destinations(options)["experiture"].send(
        [{"email": "a@b.c", "firstname": "A"}, {"email": "b@b.c", "tier": "gold"}]
    )
    assert report.sent == (0,)
    assert "tier" in report.rejected[0].reason


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"mailchimp": {}}, "unknown destination 'mailchimp'"),
        ({"experiture": {"url": "http://x"}}, "needs a 'token'"),
        ({"releva": {"secret": "x"}}, "unknown option(s) secret"),
        ({"releva": {"secret_key": ""}}, "needs a 'secret_key'"),
        ({"releva": "sk"}, "must be a dict"),
        ({"releva": {"secret_key": "k", "fields": {"email": 1}}}, "must map str to str"),
        ({"releva": {"secret_key": "k", "fields": {"email": "mail"}}}, "neither a Releva"),
        ({"experiture": {"token": "t", "fields": {"a": "x", "b": "x"}}}, "same field"),
        ({"releva": {"secret_key": "k", "batch_size": 0}}, "batch_size"),
        # Caught when the first profile was sent, each time: a TypeError, or requests' own error
        ({"releva": {"secret_key": "k", "timeout": "10"}}, "['releva']['timeout'] must be a"),
        ({"releva": {"secret_key": "k", "timeout": 0}}, "['releva']['timeout'] must be a"),
        ({"experiture": {"token": "t", "timeout": float("inf")}}, "['timeout'] must be a"),
        ({"experiture": {"token": "t", "max_retries": "3"}}, "['max_retries'] must be a whole"),
        ({"experiture": {"token": "t", "max_retries": -1}}, "['max_retries'] must be a whole"),
        ({"experiture": {"token": "t", "max_retries": True}}, "['max_retries'] must be a whole"),
        ({"experiture": {"token": "t", "url": 8080}}, "['url'] must be a string, not 8080"),
        (["experiture"], "EXPERIENCE_DESTINATIONS must be a dict"),
    ],
)
def test_configuration_errors_name_what_is_wrong(settings: Any, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        build_destinations(settings)
    assert message in str(caught.value)


def test_no_configuration_means_no_destinations() -> None:
    assert build_destinations(None) == {}
    assert build_destinations({}) == {}

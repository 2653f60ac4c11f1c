"""The Releva client's validation and the emulator's (written separately from the reference
document) check each other: what the client sends, the emulated platform accepts."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from django_experience.destinations.errors import InvalidRecord
from django_experience.destinations.releva import PROFILE_FIELDS, RelevaClient, prepare_profile
from django_experience.emulator import destinations
from django_experience.emulator.destinations import releva_profile
from tests.destinations.conftest import DestinationServer


@pytest.mark.parametrize(
    "profile",
    [
        {"phoneNumber": "+123\n"},
        {"phoneNumber": "+123\n4"},
        {"email": "a@example.com\n"},
        {"email": "a@example.com", "consent": "privacyPolicy\n"},
        {"email": "a@example.com", "birthday": "1986-01-17\n"},
        {"email": "a@example.com", "birthday": "\uff11\uff19\uff18\uff16-01-17"},
        {"phoneNumber": "+\u0661\u0662\u0663"},  # Arabic-Indic digits are not "numbers" here
    ],
)
def test_both_refuse_a_value_with_a_trailing_newline_or_foreign_digits(
    profile: dict[str, Any],
) -> None:
    with pytest.raises(InvalidRecord):
        prepare_profile(profile)
    with pytest.raises(ValueError):
        releva_profile(profile)


def test_the_emulated_platform_refuses_a_phone_number_with_a_newline(
    destination_server: DestinationServer,
) -> None:
    import requests

    response = requests.post(
        destination_server.releva_url + "/profiles",
        json={"profiles": [{"profile": {"phoneNumber": "+123\n"}, "subscribedAtChanged": False}]},
        headers={"Authorization": "Bearer k"}, timeout=5,
    )
    assert response.status_code == 400
    assert "phoneNumber" in response.json()["message"]
    assert destinations.snapshot()["releva"] == []


@pytest.mark.parametrize(
    ("given", "sent"),
    [
        ("2019-08-18 05:48:42", "2019-08-18T05:48:42"),
        (" 2019-08-18T05:48Z\n", "2019-08-18T05:48:00Z"),
        ("2019-08-18T05:48:42.419z", "2019-08-18T05:48:42.419Z"),
        ("2019-08-18 05:48:42z", "2019-08-18T05:48:42Z"),
    ],
)
def test_date_times_are_sent_in_the_iso_form(given: str, sent: str) -> None:
    prepared = prepare_profile({"email": "a@example.com", "registeredAt": given})
    assert prepared["registeredAt"] == sent
    releva_profile(prepared)
    with pytest.raises(ValueError):
        releva_profile({"email": "a@example.com", "registeredAt": given})


@pytest.mark.parametrize(
    ("given", "sent"),
    [
        ("2019-08-18T05:48:42.419Z", "2019-08-18T05:48:42.419Z"),  # the document's example
        ("2019-08-18T05:48:42,5+0200", "2019-08-18T05:48:42.500+02:00"),
        ("2019-08-18T05:48-05", "2019-08-18T05:48:00-05:00"),
        ("2019-08-18T05:48:42.123456789+05:30", "2019-08-18T05:48:42.123456+05:30"),
        ("2019-08-18T05:48:42.000-00:00", "2019-08-18T05:48:42Z"),
        (dt.datetime(2019, 8, 18, 5, 48, 42, 419000, tzinfo=dt.timezone.utc),
         "2019-08-18T05:48:42.419Z"),
        (dt.datetime(2019, 8, 18, 5, 48, 42, 419001, tzinfo=dt.timezone.utc),
         "2019-08-18T05:48:42.419001Z"),
        # An offset in seconds (a zone's local mean time) has no ISO 8601 form: UTC instead.
        (dt.datetime(1890, 1, 1, tzinfo=dt.timezone(dt.timedelta(minutes=19, seconds=32))),
         "1889-12-31T23:40:28Z"),
    ],
)
def test_date_times_are_written_in_the_documents_form(given: str | dt.datetime, sent: str) -> None:
    """Whatever ISO 8601 spelling a date-time comes in, it is sent like the document's
    example: a T, seconds, a dot before milliseconds (or microseconds), Z or +hh:mm."""
    prepared = prepare_profile({"email": "a@example.com", "subscribedAt": given})
    assert prepared["subscribedAt"] == sent
    releva_profile(prepared)


def test_a_date_time_with_a_lower_case_z_is_accepted_by_the_platform(
    destination_server: DestinationServer,
) -> None:
    client = RelevaClient(url=destination_server.releva_url, secret_key="k")
    result = client.upsert_profiles([
        {"email": "ok@example.com"},
        {"email": "z@example.com", "registeredAt": "2019-08-18T05:48:42.419z"},
    ])
    assert result.ok
    assert [profile.get("registeredAt") for profile in destinations.snapshot()["releva"]] == [
        None, "2019-08-18T05:48:42.419Z"
    ]


TRICKY = st.sampled_from([
    "+49875345976", "+123\n", "+", "49875345976", "+12 34", "+\uff11\uff12",
    "georgi@releva.ai", "georgi@releva.ai\n", "@releva.ai", "georgi@", "a@b@c", "a b@c",
    "legitimateInterest", "privacyPolicy", "mandatoryCookies", "cookiesPolicy", "all",
    "2019-08-18T05:48:42.419Z", "2019-08-18T05:48:42,419+02:00", "2019-08-18 05:48",
    "2019-08-18T05:48:42.419z", "2019-08-18 05:48z", "2019-08-18T05:48:42+0200",
    "2019-08-18T05:48+0530", "2019-08-18T05:48:42Z\n", "2019-02-30T00:00", "2019-08-18T24:00",
    "2019-08-18", "1986-01-17", "1986-1-17", "1986-02-29", "1986-01-17\n", "", "x",
])
SCALARS = st.one_of(TRICKY, st.none(), st.booleans(), st.integers(-200, 200),
                    st.floats(-200, 200), st.text(max_size=4))
VALUES = st.one_of(
    SCALARS,
    st.lists(st.one_of(TRICKY, st.integers()), max_size=3),
    st.fixed_dictionaries({"lat": SCALARS, "lon": SCALARS}),
    st.dictionaries(st.sampled_from(["lat", "lon", "alt"]), SCALARS, max_size=3),
    st.dictionaries(
        st.sampled_from(["string", "number"]),
        st.lists(st.fixed_dictionaries({"key": st.sampled_from(["", "k"]),
                                        "values": st.lists(SCALARS, max_size=2)}), max_size=2),
        max_size=2,
    ),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(PROFILE_FIELDS), VALUES, max_size=5))
def test_what_the_client_would_send_the_platform_accepts(profile: dict[str, Any]) -> None:
    try:
        prepared = prepare_profile(profile)
    except InvalidRecord:
        return
    # As it travels: JSON.
    releva_profile(json.loads(json.dumps(prepared)))

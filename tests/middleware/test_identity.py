"""Sign-in, second device, sign-out, explicit identify, merged profiles, concurrent sign-ins."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connections
from django.test import Client

from django_experience import delivery
from django_experience.emulator.handle import EmulatorHandle
from django_experience.mappings import (
    mapping_database,
    owned_mapping,
    store_mapping,
    valid_profile_id,
)
from django_experience.models import ProfileMapping
from tests.query_work import add_other_mappings, grew_with, query_work

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def identity_settings(settings: Any) -> None:
    settings.EXPERIENCE_USER_TRAITS = "tests.middleware.views.user_traits"
    settings.EXPERIENCE_USER_ID = "tests.middleware.views.user_id"


@pytest.fixture
def ada() -> User:
    return User.objects.create_user("ada", password="pw", first_name="Ada", is_staff=True)


def _page(client: Client) -> dict[str, Any]:
    response = client.get("/mw/page/")
    assert response.status_code == 200
    data: dict[str, Any] = response.json()
    return data


def _sign_in(client: Client, username: str = "ada") -> Any:
    response = client.post("/mw/sign-in/", {"username": username})
    assert response.status_code == 200
    return response


def test_sign_in_identifies_the_device_profile_and_maps_it(
    client: Client, emulator: EmulatorHandle, ada: User
) -> None:
    anonymous = _page(client)
    assert anonymous["name"] == "friend" and anonymous["cta"] == "blue"
    response = _sign_in(client)
    mapping = ProfileMapping.objects.get(user=ada)
    assert mapping.profile_id == anonymous["profile"]
    assert mapping.external_id == f"user-{ada.pk}"
    assert (mapping.organization_id, mapping.environment) == ("test-org", "main")
    assert response.cookies["ntaid"].value == anonymous["profile"]  # the same id, renewed
    stored = emulator.profile(mapping.profile_id)
    assert stored is not None
    identify = stored["events"][-1]
    assert identify["type"] == "identify" and identify["userId"] == f"user-{ada.pk}"
    assert identify["traits"] == {"firstname": "Ada", "tier": "gold"}
    signed_in = _page(client)
    assert signed_in["name"] == "Ada" and signed_in["cta"] == "gold"
    assert signed_in["profile"] == mapping.profile_id


def test_second_device_merges_into_the_mapped_profile(
    emulator: EmulatorHandle, ada: User
) -> None:
    laptop, phone = Client(), Client()
    _page(laptop)
    _sign_in(laptop)
    mapped = ProfileMapping.objects.get(user=ada).profile_id
    phone_anonymous = _page(phone)["profile"]
    assert phone_anonymous != mapped
    response = _sign_in(phone)
    assert response.cookies["ntaid"].value == mapped  # the answer's id, not the sent one
    assert emulator.profile(phone_anonymous) is None  # merged away
    assert ProfileMapping.objects.filter(user=ada).count() == 1
    data = _page(phone)
    assert data["profile"] == mapped and data["name"] == "Ada"


def test_signed_in_user_is_served_from_the_mapping_whatever_the_cookie(
    client: Client, emulator: EmulatorHandle, ada: User
) -> None:
    _page(client)
    _sign_in(client)
    mapped = ProfileMapping.objects.get(user=ada).profile_id
    client.cookies["ntaid"] = "some-other-device-id"
    response = client.get("/mw/page/")
    assert response.json()["profile"] == mapped
    assert response.cookies["ntaid"].value == mapped


def test_sign_out_starts_a_fresh_anonymous_profile(
    client: Client, emulator: EmulatorHandle, ada: User
) -> None:
    _page(client)
    _sign_in(client)
    mapped = ProfileMapping.objects.get(user=ada).profile_id
    response = client.post("/mw/sign-out/")
    assert response.cookies["ntaid"].value == ""
    assert response.cookies["ntaid"]["max-age"] == 0
    data = _page(client)
    assert data["profile"] != mapped and data["name"] == "friend" and data["cta"] == "blue"
    assert ProfileMapping.objects.get(user=ada).profile_id == mapped  # the mapping stays


def test_sign_in_on_a_get_renders_the_identified_profile_with_one_call(
    client: Client, emulator: EmulatorHandle, ada: User
) -> None:
    response = client.get("/mw/magic-link/?username=ada")
    data = response.json()
    assert data["name"] == "Ada" and data["cta"] == "gold"
    assert emulator.stats()["requests"] == {"create": {"200": 1}}
    stored = emulator.profile(data["profile"])
    assert stored is not None
    assert [e["type"] for e in stored["events"]] == ["page", "identify"]
    assert response.cookies["ntaid"].value == data["profile"]


@pytest.mark.parametrize("view", ["magic-link", "identify"])
@pytest.mark.parametrize("returning", [False, True])
def test_preflight_mode_stores_the_identify_but_no_page_event(
    client: Client, emulator: EmulatorHandle, ada: User, settings: Any, view: str, returning: bool
) -> None:
    settings.EXPERIENCE_MODE = "preflight"  # the browser SDK sends the page events
    if returning:
        _page(client)  # a preflight: nothing stored, a fresh id in the cookie
    url = "/mw/magic-link/?username=ada" if view == "magic-link" else "/mw/identify-on-get/"
    response = client.get(url, {"user_id": "crm-8"} if view == "identify" else {})
    data = response.json()
    assert data["name"] == ("Ada" if view == "magic-link" else "Grace")
    assert data["degraded"] is False
    stored = emulator.profile(data["profile"])
    assert stored is not None
    assert [e["type"] for e in stored["events"]] == ["identify"]
    assert [e["type"] for p in emulator.profiles() for e in p["events"]] == ["identify"]
    assert client.cookies["ntaid"].value == data["profile"]


def test_explicit_identify_of_someone_who_is_not_a_user(
    client: Client, emulator: EmulatorHandle
) -> None:
    first = _page(client)["profile"]
    response = client.post(
        "/mw/identify/",
        {"user_id": "crm-77", "traits": {"firstname": "Grace", "tier": "gold"}},
        content_type="application/json",
    )
    data = response.json()
    assert data["name"] == "Grace" and data["cta"] == "gold" and data["profile"] == first
    mapping = ProfileMapping.objects.get(external_id="crm-77")
    assert mapping.user is None and mapping.profile_id == first


UNKEEPABLE_IDS = {
    "is longer than 255 characters": "u" * 256,
    "holds a NUL character": "ada\x00lovelace",
}


def unkeepable_user_id(user: object) -> str:
    return UNKEEPABLE_IDS[os.environ["TEST_UNKEEPABLE_ID"]]


@pytest.mark.parametrize("atomic_requests", [False, True])
@pytest.mark.parametrize("kind", list(UNKEEPABLE_IDS))
def test_a_user_id_no_mapping_can_keep_maps_the_user_alone(
    client: Client,
    emulator: EmulatorHandle,
    ada: User,
    settings: Any,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
    atomic_requests: bool,
) -> None:
    # SQLite stored either id; PostgreSQL refused the row (an error logged at every sign-in and
    # every page, no mapping, a fresh identify call on each page; a NUL failed even the lookup,
    # so that no identify was sent at all).
    from django.db import connection

    monkeypatch.setenv("TEST_UNKEEPABLE_ID", kind)
    settings.EXPERIENCE_USER_ID = f"{__name__}.unkeepable_user_id"
    monkeypatch.setitem(connection.settings_dict, "ATOMIC_REQUESTS", atomic_requests)
    first = _page(client)["profile"]
    _sign_in(client)
    mapping = ProfileMapping.objects.get(user=ada)
    assert mapping.profile_id == first and mapping.external_id is None
    stored = emulator.profile(first)
    assert stored is not None and stored["events"][-1]["userId"] == UNKEEPABLE_IDS[kind]
    warnings = [r for r in caplog.records if "which a profile mapping cannot keep" in r.message]
    assert [r.levelname for r in warnings] == ["WARNING"]
    assert kind in warnings[0].message and "mapped to the user alone" in warnings[0].message
    assert UNKEEPABLE_IDS[kind] not in warnings[0].message  # an id is not logged
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
    identified = emulator.request_count()
    assert _page(client)["profile"] == first
    assert emulator.request_count() == identified + 1  # the page's update: no identify again
    stored = emulator.profile(first)
    assert stored is not None and stored["events"][-1]["type"] != "identify"


@pytest.mark.parametrize("kind", list(UNKEEPABLE_IDS))
def test_an_explicit_identify_with_an_id_no_mapping_can_keep_maps_nobody(
    client: Client, emulator: EmulatorHandle, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    first = _page(client)["profile"]
    response = client.post(
        "/mw/identify/", {"user_id": UNKEEPABLE_IDS[kind], "traits": {"firstname": "Grace"}},
        content_type="application/json",
    )
    assert response.status_code == 200 and response.json()["name"] == "Grace"
    assert not ProfileMapping.objects.exists()
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
    assert any("the profile is not mapped" in r.message for r in caplog.records)
    assert _page(client)["profile"] == first


def test_a_previous_users_profile_is_never_merged_into_the_next(
    emulator: EmulatorHandle, ada: User
) -> None:
    bob = User.objects.create_user("bob", password="pw", first_name="Bob")
    shared = Client()
    _page(shared)
    _sign_in(shared, "ada")
    ada_profile = ProfileMapping.objects.get(user=ada).profile_id
    _sign_in(shared, "bob")  # no sign-out in between
    bob_profile = ProfileMapping.objects.get(user=bob).profile_id
    assert bob_profile != ada_profile
    assert _page(shared)["name"] == "Bob"
    stored = emulator.profile(ada_profile)
    assert stored is not None and stored["traits"]["firstname"] == "Ada"


def test_merged_cookie_profile_recovers_in_the_same_request(
    emulator: EmulatorHandle, ada: User
) -> None:
    laptop, phone = Client(), Client()
    _page(laptop)
    _sign_in(laptop)
    stale = _page(phone)["profile"]
    # The phone's profile is merged elsewhere (say, by the browser SDK identifying it).
    from django_experience.api.events import identify_event

    emulator.client().update_profile(stale, [identify_event(f"user-{ada.pk}", {})])
    response = phone.get("/mw/page/")
    data = response.json()
    assert data["degraded"] is False and data["profile"] not in (stale, None)
    assert response.cookies["ntaid"].value == data["profile"]


def test_remote_delete_when_a_user_is_deleted(
    client: Client,
    emulator: EmulatorHandle,
    ada: User,
    settings: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    _page(client)
    _sign_in(client)
    mapped = ProfileMapping.objects.get(user=ada).profile_id
    settings.EXPERIENCE_DELETE_REMOTE_ON_USER_DELETE = True
    with django_capture_on_commit_callbacks(execute=True):  # sent once the deletion commits
        ada.delete()
    assert emulator.profile(mapped) is None
    assert not ProfileMapping.objects.filter(profile_id=mapped).exists()


def test_no_remote_delete_by_default(client: Client, emulator: EmulatorHandle, ada: User) -> None:
    _page(client)
    _sign_in(client)
    mapped = ProfileMapping.objects.get(user=ada).profile_id
    ada.delete()
    assert emulator.profile(mapped) is not None


@pytest.mark.django_db(transaction=True)
def test_concurrent_first_sign_ins_create_one_mapping(emulator: EmulatorHandle) -> None:
    ada = User.objects.create_user("ada", password="pw", first_name="Ada")
    devices = [Client() for _ in range(6)]
    for device in devices:
        _page(device)
    start = threading.Barrier(len(devices))
    statuses: list[int] = []
    errors: list[BaseException] = []

    def sign_in(device: Client) -> None:
        try:
            start.wait(timeout=5)
            statuses.append(device.post("/mw/sign-in/", {"username": "ada"}).status_code)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()  # the thread's own (the test client keeps them open)

    threads = [threading.Thread(target=sign_in, args=(d,)) for d in devices]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == [] and statuses == [200] * len(devices)
    mappings = list(ProfileMapping.objects.filter(user=ada))
    assert len(mappings) == 1
    for device in devices:
        assert _page(device)["profile"] == mappings[0].profile_id


@pytest.mark.django_db(transaction=True)
def test_concurrent_mapping_writes_never_raise_or_duplicate() -> None:
    from django.db import connection

    from django_experience.mappings import store_mapping

    ada = User.objects.create_user("ada", password="pw")
    start = threading.Barrier(8)
    returned: list[str] = []
    errors: list[BaseException] = []

    def write(index: int) -> None:
        try:
            start.wait(timeout=5)
            returned.append(store_mapping(f"profile-{index}", user=ada, external_id="ext-ada"))
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == [] and len(returned) == 8
    (mapping,) = ProfileMapping.objects.filter(user=ada)
    assert mapping.external_id == "ext-ada" and mapping.profile_id in returned


def test_a_signed_in_user_without_mapping_is_identified_on_the_first_page(
    client: Client, emulator: EmulatorHandle, ada: User
) -> None:
    client.force_login(ada)  # no middleware saw this sign-in: nothing was sent
    assert emulator.request_count() == 0 and not ProfileMapping.objects.exists()
    data = _page(client)
    assert data["name"] == "Ada" and data["cta"] == "gold"
    assert emulator.stats()["requests"] == {"create": {"200": 1}}  # page and identify together
    assert ProfileMapping.objects.get(user=ada).profile_id == data["profile"]
    _page(client)
    assert emulator.request_count("update") == 1  # identified once


def test_preflight_mode_identifies_a_user_signed_in_where_the_middleware_did_not_see_it(
    client: Client, emulator: EmulatorHandle, ada: User, settings: Any
) -> None:
    settings.EXPERIENCE_MODE = "preflight"
    client.force_login(ada)  # an excluded path, or before the middleware was installed
    data = _page(client)
    assert data["name"] == "Ada" and data["cta"] == "gold"
    assert ProfileMapping.objects.get(user=ada).profile_id == data["profile"]
    _page(client)
    # Stored once, without page events: the browser SDK sends those in preflight mode.
    assert [e["type"] for p in emulator.profiles() for e in p["events"]] == ["identify"]


@pytest.mark.parametrize("cookie_name", ["ntaid", "ctfl-opt-aid"])
def test_a_sign_out_page_keeps_the_fresh_profile_in_the_cookie(
    client: Client, emulator: EmulatorHandle, ada: User, settings: Any, cookie_name: str
) -> None:
    """Also when the cookie is the newer SDK's own (which sign-out otherwise deletes)."""
    settings.EXPERIENCE_COOKIE_NAME = cookie_name
    client.force_login(ada)
    mapped = _page(client)["profile"]
    response = client.get("/mw/sign-out/")  # a GET: its page view goes to a fresh profile
    fresh = response.cookies[cookie_name].value
    assert fresh and fresh != mapped and response.cookies[cookie_name]["max-age"] > 0
    delivery.flush(5)
    assert emulator.profile(fresh) is not None  # the page view is on the profile kept
    assert _page(client)["profile"] == fresh


def test_sign_in_on_an_excluded_path_costs_no_call(
    emulator: EmulatorHandle, ada: User, settings: Any
) -> None:
    settings.EXPERIENCE_EXCLUDE_PATHS = [r"^/mw/sign-in/"]
    client = Client()
    response = client.post("/mw/sign-in/", {"username": "ada"})
    assert response.status_code == 200 and emulator.request_count() == 0
    assert _page(client)["name"] == "Ada"


def test_a_mapped_profile_deleted_remotely_is_replaced(
    client: Client, emulator: EmulatorHandle, ada: User
) -> None:
    _page(client)
    _sign_in(client)
    stale = ProfileMapping.objects.get(user=ada).profile_id
    emulator.client().delete_profile(stale)  # e.g. removed in the API directly
    data = _page(client)
    assert data["degraded"] is False and data["profile"] != stale
    assert not ProfileMapping.objects.filter(profile_id=stale).exists()
    again = _page(client)  # identified anew on the next page, in its single call
    assert again["name"] == "Ada"
    assert ProfileMapping.objects.get(user=ada).profile_id == again["profile"]


def _on_a_missing_table(statement: str) -> Callable[..., Any]:
    """An ``execute_wrapper`` that runs each ``statement`` (``SELECT``, ``DELETE``) of the
    mappings table on a table that does not exist: the database itself raises, as it does
    before the table is migrated."""
    table = ProfileMapping._meta.db_table

    def wrapper(execute: Any, sql: str, *args: Any) -> Any:
        if sql.lstrip().upper().startswith(statement) and table in sql:
            return execute(sql.replace(table, "experience_not_migrated"), *args)
        return execute(sql, *args)

    return wrapper


def test_a_failing_stale_mapping_delete_leaves_the_views_transaction_usable(
    client: Client,
    emulator: EmulatorHandle,
    ada: User,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # As for the reads below: on PostgreSQL the failed DELETE aborted the view's transaction.
    from django.db import connection

    _page(client)
    _sign_in(client)
    stale = ProfileMapping.objects.get(user=ada).profile_id
    emulator.client().delete_profile(stale)
    settings.EXPERIENCE_PREFETCH = False  # the update, and its recovery, inside the view
    monkeypatch.setitem(connection.settings_dict, "ATOMIC_REQUESTS", True)
    with (
        connections[mapping_database()].execute_wrapper(_on_a_missing_table("DELETE")),
        caplog.at_level("WARNING", logger="django_experience"),
    ):
        response = client.get("/mw/personalize-then-query/")
    assert response.status_code == 200
    data = response.json()
    assert data["users"] == 1  # the view's own query, after the failed DELETE
    assert data["degraded"] is False and data["profile"] not in (stale, None)
    messages = [r.getMessage() for r in caplog.records if r.levelname in ("WARNING", "ERROR")]
    assert messages == ["Experience could not remove a stale profile mapping"]
    assert ProfileMapping.objects.filter(profile_id=stale).exists()  # left for a later page


def test_last_seen_is_refreshed_at_most_hourly(
    client: Client, emulator: EmulatorHandle, ada: User
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    _page(client)
    _sign_in(client)
    long_ago = timezone.now() - timedelta(days=3)
    ProfileMapping.objects.filter(user=ada).update(last_seen_at=long_ago)
    _page(client)
    seen = ProfileMapping.objects.get(user=ada).last_seen_at
    assert seen is not None and seen > long_ago + timedelta(days=2)
    recently = timezone.now() - timedelta(minutes=5)
    ProfileMapping.objects.filter(user=ada).update(last_seen_at=recently)
    _page(client)
    assert ProfileMapping.objects.get(user=ada).last_seen_at == recently


def test_an_unreadable_mapping_serves_the_cookie_profile_without_identifying_again(
    client: Client, emulator: EmulatorHandle, ada: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A locked or failing database cannot be produced over the socket: patch the lookup.
    from django.db import OperationalError

    _page(client)
    _sign_in(client)
    identified = emulator.stats()["events"]

    def locked(user: Any) -> str | None:
        raise OperationalError("database is locked")

    monkeypatch.setattr("django_experience.visitor.mapped_profile_id", locked)
    data = _page(client)
    assert data["degraded"] is False and data["name"] == "Ada"  # the cookie's profile
    assert emulator.stats()["events"] == identified + 1  # the page view, no second identify
    assert ProfileMapping.objects.filter(user=ada).count() == 1


def test_a_failing_last_seen_write_does_not_fail_the_page(
    client: Client, emulator: EmulatorHandle, ada: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import timedelta

    from django.db import OperationalError
    from django.db.models import QuerySet
    from django.utils import timezone

    _page(client)
    _sign_in(client)
    ProfileMapping.objects.filter(user=ada).update(last_seen_at=timezone.now() - timedelta(days=3))
    before = emulator.stats()["events"]

    def locked(self: QuerySet[Any], **kwargs: Any) -> int:
        raise OperationalError("database is locked")

    monkeypatch.setattr(QuerySet, "update", locked)
    data = _page(client)
    assert data["degraded"] is False and data["name"] == "Ada"
    assert emulator.stats()["events"] == before + 1  # the page view only


def test_a_mapping_that_cannot_be_written_still_serves_the_identified_profile(
    client: Client, emulator: EmulatorHandle, ada: User, caplog: pytest.LogCaptureFixture
) -> None:
    # The mappings' table refusing writes (a lock timeout, a full disk) cannot be produced over
    # the socket: the database connection refuses the INSERT.
    from django.db import OperationalError

    table = ProfileMapping._meta.db_table

    def refuse_mapping_inserts(execute: Any, sql: str, *args: Any) -> Any:
        if sql.lstrip().upper().startswith("INSERT") and table in sql:
            raise OperationalError("disk I/O error")
        return execute(sql, *args)

    anonymous = _page(client)["profile"]
    with (
        connections[mapping_database()].execute_wrapper(refuse_mapping_inserts),
        caplog.at_level("WARNING", logger="django_experience"),
    ):
        response = client.get("/mw/magic-link/", {"username": "ada"})
    assert response.status_code == 200
    data = response.json()
    assert data["name"] == "Ada" and data["degraded"] is False  # the identify's answer
    assert response.cookies["ntaid"].value == data["profile"] == anonymous
    assert not ProfileMapping.objects.exists()
    messages = [r.getMessage() for r in caplog.records if r.levelname in ("WARNING", "ERROR")]
    assert messages == [
        "Experience could not store the profile mapping (OperationalError); serving the "
        "answered profile unmapped"
    ]
    again = _page(client)  # no mapping: identified again, onto the same profile, and mapped
    assert again["name"] == "Ada" and again["profile"] == anonymous
    assert ProfileMapping.objects.get(user=ada).profile_id == anonymous
    stored = emulator.profile(anonymous)
    assert stored is not None  # the page, then page and identify twice
    assert [e["type"] for e in stored["events"]] == ["page", "page", "identify", "page", "identify"]


@pytest.mark.parametrize("signing_in", [False, True], ids=["signed in", "signing in"])
def test_a_failing_mapping_read_leaves_the_views_transaction_usable(
    client: Client,
    emulator: EmulatorHandle,
    ada: User,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    signing_in: bool,
) -> None:
    # A failed query leaves a PostgreSQL transaction aborted: under ATOMIC_REQUESTS the view's
    # next query failed too, and a site whose mappings table was not migrated yet showed an
    # error page to every signed-in visitor. The database itself answers the error here: the
    # mapping's SELECT is swapped for one of a table that does not exist.
    from django.db import connection

    settings.EXPERIENCE_PREFETCH = False  # every mapping read inside the view's transaction
    monkeypatch.setitem(connection.settings_dict, "ATOMIC_REQUESTS", True)
    anonymous = _page(client)["profile"]
    if not signing_in:
        client.force_login(ada)
    query = {"username": "ada"} if signing_in else {}
    with (
        connections[mapping_database()].execute_wrapper(_on_a_missing_table("SELECT")),
        caplog.at_level("WARNING", logger="django_experience"),
    ):
        response = client.get("/mw/personalize-then-query/", query)
    assert response.status_code == 200
    data = response.json()
    assert data["users"] == 1  # the view's own query, after personalization's failed
    assert data["degraded"] is False and data["profile"] == anonymous
    assert data["name"] == "friend"  # not identified: whose profile it is could not be read
    stored = emulator.profile(anonymous)
    assert stored is not None
    assert [e["type"] for e in stored["events"]] == ["page", "page"]
    messages = [r.getMessage() for r in caplog.records if r.levelname in ("WARNING", "ERROR")]
    if signing_in:
        # What a missing table raises: ProgrammingError on PostgreSQL and MySQL, else
        # OperationalError.
        assert messages in [
            [f"Experience could not read the profile mappings ({error}); identify skipped"]
            for error in ("ProgrammingError", "OperationalError")
        ]
    else:
        assert messages == ["Experience could not read the profile mapping; using the cookie"]
    assert _page(client)["name"] == "Ada"  # the next page identifies the user and maps them
    assert ProfileMapping.objects.get(user=ada).profile_id == anonymous


def _legacy_mapping(ada: User) -> ProfileMapping:
    """A mapping whose id is not one: stored before ids were checked, or past validation."""
    return ProfileMapping.objects.create(
        user=ada, external_id="ada", profile_id="legacy id;1", organization_id="test-org"
    )


def test_a_stored_mapping_whose_id_is_not_one_is_replaced_on_the_next_page(
    client: Client, emulator: EmulatorHandle, ada: User, caplog: pytest.LogCaptureFixture
) -> None:
    # Served, the id would go into the cookie quoted and be refused when it came back.
    _legacy_mapping(ada)
    client.force_login(ada)
    with caplog.at_level("WARNING", logger="django_experience"):
        response = client.get("/mw/page/")
    data = response.json()
    assert data["degraded"] is False and data["name"] == "Ada"
    assert valid_profile_id(data["profile"]) == data["profile"]
    assert response.cookies["ntaid"].value == data["profile"]
    assert list(ProfileMapping.objects.values_list("profile_id", flat=True)) == [data["profile"]]
    assert emulator.profile("legacy id;1") is None
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert "not one" in warning and "legacy" not in warning
    _page(client)
    assert emulator.request_count("update") == 1  # identified once, then served as mapped


def test_a_lost_race_against_a_mapping_whose_id_is_not_one_maps_the_answered_id(
    ada: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first read misses the row a concurrent writer committed meanwhile (here, one whose
    # id is not one); the INSERT then loses to it on the unique user. The winner's id was
    # returned as it was: into the cookie, quoted, and refused when it came back.
    from django_experience import mappings

    _legacy_mapping(ada)
    real = mappings.owned_mapping
    reads: list[object] = []

    def first_read_misses(*args: Any, **kwargs: Any) -> ProfileMapping | None:
        reads.append(args)
        return None if len(reads) == 1 else real(*args, **kwargs)

    monkeypatch.setattr(mappings, "owned_mapping", first_read_misses)
    assert mappings.store_mapping("p-answered", user=ada, external_id="ada") == "p-answered"
    assert len(reads) == 2  # the race was lost once, then the row read again
    assert list(ProfileMapping.objects.values_list("profile_id", "user_id")) == [
        ("p-answered", ada.pk)
    ]


def test_a_stored_mapping_whose_id_is_not_one_never_reaches_the_cookie(
    emulator: EmulatorHandle, ada: User
) -> None:
    _legacy_mapping(ada)
    emulator.faults(error_rate=1.0, error_status=500)  # the sign-in's identify fails
    client = Client()
    response = client.post("/mw/sign-in/", {"username": "ada"})
    assert response.status_code == 200
    assert all(valid_profile_id(c.value) for c in response.cookies.values() if c.value)
    assert "legacy" not in str(response.cookies)
    page = client.get("/mw/page/")
    assert page.status_code == 200 and page.json()["degraded"] is True
    assert "legacy" not in str(page.cookies)


@pytest.mark.parametrize("mapped_by", ["user", "external id", "nobody"])
def test_a_sign_in_does_not_search_the_mappings_of_other_people(ada: User, mapped_by: str) -> None:
    # With OR between the user and the external id, SQLite searched the namespace's whole
    # index: every sign-in cost more the more people were mapped.
    def sign_in_steps() -> int:
        ProfileMapping.objects.filter(profile_id="p-ada").delete()
        if mapped_by != "nobody":
            ProfileMapping.objects.create(
                profile_id="p-ada",
                user=ada if mapped_by == "user" else None,
                external_id="ada" if mapped_by == "external id" else None,
                organization_id="test-org",
            )
        with query_work() as steps:
            found = owned_mapping(ada, "ada")
            stored = store_mapping("p-ada", user=ada, external_id="ada")
        assert (found is None) == (mapped_by == "nobody") and stored == "p-ada"
        assert ProfileMapping.objects.get(user=ada).external_id == "ada"
        return steps[0]

    add_other_mappings(300, "test-org")
    few = sign_in_steps()
    add_other_mappings(3000, "test-org")
    many = sign_in_steps()
    assert not grew_with(3000, few, many)

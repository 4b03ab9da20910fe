"""The managers resource: roster, lifecycle, competences, absences, filters and who sees what."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from app.core import clock as clock_module
from app.core.config import get_settings
from app.core.db import session_scope
from app.models.manager import Absence, Manager, ManagerCompetence, ManagerDistrict
from app.models.system import AuditEvent
from tests.factories import (
    make_absence,
    make_key,
    make_organisation,
    make_roster_manager,
    manager_body,
    seed_reference,
)

API = "/api/v1/managers"
TODAY = date(2026, 6, 15)  # the fixed_clock's date in Berlin
PROBLEM = "application/problem+json"
PUBLIC_FIELDS = {
    "id",
    "display_name",
    "email",
    "phone",
    "organisation_id",
    "status",
    "home_district",
    "districts",
    "languages",
    "max_open_assignments",
    "competences",
    "available_today",
    "open_assignments",
    "expiring_competences",
    "version",
    "created_at",
    "updated_at",
    "notify_by_email",
}
REDACTED_FIELDS = {
    "id",
    "display_name",
    "email",
    "phone",
    "status",
    "home_district",
    "districts",
    "languages",
    "available_today",
}


@pytest.fixture(autouse=True)
def reference() -> None:
    seed_reference()


@pytest.fixture
def admin() -> dict[str, str]:
    return make_key("admin")


def d(day: date) -> str:
    return day.isoformat()


def holding(code: str, certified_on: date, expires_on: date | None) -> dict[str, Any]:
    return {
        "code": code,
        "certified_on": d(certified_on),
        "expires_on": d(expires_on) if expires_on else None,
    }


def rows(model: Any) -> int:
    with session_scope(write=False) as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def audit_rows(resource: str, resource_id: Any) -> list[AuditEvent]:
    with session_scope(write=False) as session:
        return list(
            session.scalars(
                select(AuditEvent)
                .where(
                    AuditEvent.resource == resource,
                    AuditEvent.resource_id == str(resource_id),
                    AuditEvent.kind == "write",
                )  # reads of contact data log "access" entries
                .order_by(AuditEvent.at)
            )
        )


def manager_audit_rows() -> int:
    with session_scope(write=False) as session:
        query = select(func.count()).where(
            AuditEvent.resource == "manager", AuditEvent.kind == "write"
        )
        return session.scalar(query) or 0


def stored(manager_id: Any) -> Manager:
    with session_scope(write=False) as session:
        manager = session.get(Manager, uuid.UUID(str(manager_id)))
        assert manager is not None
        return manager


def assert_problem(response: Any, status: int, type_: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["type"] == f"/problems/{type_}"
    assert body["status"] == status
    return body


def ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


# --- create --------------------------------------------------------------------------------------


class TestCreateManager:
    def test_valid(self, client, admin) -> None:
        organisation = make_organisation()
        body = manager_body(
            email="Mara.Beispiel@Example.org",
            organisation_id=str(organisation),
            districts=["beta", "gamma"],
            competences=[holding("mediation", date(2025, 1, 1), date(2028, 1, 1))],
        )
        response = client.post(API, json=body, headers=admin)
        assert response.status_code == 201, response.text
        created = response.json()
        assert set(created) == PUBLIC_FIELDS
        assert created["status"] == "in_training"
        assert created["email"] == "mara.beispiel@example.org"
        assert created["phone"] == "+49 361 555 0101"
        assert created["organisation_id"] == str(organisation)
        assert created["districts"] == ["beta", "gamma"]
        assert created["languages"] == ["de", "en"]
        assert created["max_open_assignments"] == 2
        assert created["competences"] == [holding("mediation", date(2025, 1, 1), date(2028, 1, 1))]
        assert created["open_assignments"] == 0
        assert created["available_today"] is False  # in training
        assert created["version"] == 1
        assert response.headers["etag"] == '"1"'
        assert response.headers["location"] == f"{API}/{created['id']}"
        fetched = client.get(f"{API}/{created['id']}", headers=admin).json()
        assert fetched == created

    def test_active_at_creation_is_available(self, client, admin) -> None:
        response = client.post(API, json=manager_body(status="active"), headers=admin)
        assert response.status_code == 201, response.text
        assert response.json()["status"] == "active"
        assert response.json()["available_today"] is True

    def test_home_district_is_not_repeated_in_districts(self, client, admin) -> None:
        body = manager_body(home_district="alpha", districts=["alpha", "beta", "beta"])
        response = client.post(API, json=body, headers=admin)
        assert response.status_code == 201, response.text
        assert response.json()["districts"] == ["beta"]

    def test_audited_with_field_names_only(self, client, admin) -> None:
        body = manager_body()
        created = client.post(API, json=body, headers=admin).json()
        (entry,) = audit_rows("manager", created["id"])
        assert entry.action == "create"
        assert entry.principal_role == "admin"
        assert "email" in entry.fields and "phone" in entry.fields
        assert body["email"] not in json.dumps(entry.fields)

    @pytest.mark.parametrize(
        ("overrides", "field"),
        [
            ({"status": "paused"}, "status"),
            ({"status": "retired"}, "status"),
            ({"home_district": "nowhere"}, "home_district"),
            ({"districts": ["beta", "nowhere"]}, "districts"),
            ({"competences": [holding("juggling", date(2025, 1, 1), None)]}, "competences"),
            (
                {"competences": [holding("mediation", date(2025, 6, 1), date(2025, 5, 31))]},
                "competences",
            ),
            (
                {
                    "competences": [
                        holding("mediation", date(2025, 1, 1), None),
                        holding("mediation", date(2024, 1, 1), date(2030, 1, 1)),
                    ]
                },
                "competences",
            ),
            ({"languages": ["de", "xx"]}, "languages"),
            ({"languages": ["deu"]}, "languages"),
            ({"max_open_assignments": 0}, "max_open_assignments"),
            ({"max_open_assignments": -1}, "max_open_assignments"),
            ({"organisation_id": str(uuid.UUID(int=7))}, "organisation_id"),
            ({"email": "not-an-address"}, "email"),
            ({"phone": "call me"}, "phone"),
            ({"display_name": ""}, "display_name"),
            ({"open_assignments": 3}, "open_assignments"),
            ({"version": 5}, "version"),
        ],
    )
    def test_invalid_is_refused_and_writes_nothing(
        self, client, admin, overrides: dict[str, Any], field: str
    ) -> None:
        response = client.post(API, json=manager_body(**overrides), headers=admin)
        body = assert_problem(response, 422, "validation-error")
        assert any(field in error["loc"] for error in body["errors"]), body
        assert rows(Manager) == 0
        assert rows(ManagerCompetence) == 0
        assert rows(ManagerDistrict) == 0
        assert manager_audit_rows() == 0

    def test_missing_required_fields(self, client, admin) -> None:
        body = manager_body()
        del body["email"], body["home_district"]
        problem = assert_problem(
            client.post(API, json=body, headers=admin), 422, "validation-error"
        )
        assert {tuple(e["loc"]) for e in problem["errors"]} == {
            ("body", "email"),
            ("body", "home_district"),
        }
        assert rows(Manager) == 0

    def test_validation_errors_do_not_echo_contact_data(self, client, admin) -> None:
        response = client.post(API, json=manager_body(email="secret-address@"), headers=admin)
        assert_problem(response, 422, "validation-error")
        assert "secret-address" not in response.text

    def test_duplicate_email_ignores_case(self, client, admin) -> None:
        client.post(API, json=manager_body(email="twin@example.org"), headers=admin)
        response = client.post(API, json=manager_body(email="TWIN@example.org"), headers=admin)
        problem = assert_problem(response, 409, "duplicate")
        assert "twin@example.org" not in problem["detail"]
        assert rows(Manager) == 1

    def test_idempotency_key_replays_and_creates_nothing_more(self, client, admin) -> None:
        headers = admin | {"Idempotency-Key": "create-manager-1"}
        body = manager_body()
        first = client.post(API, json=body, headers=headers)
        second = client.post(API, json=body, headers=headers)
        assert first.status_code == second.status_code == 201
        assert second.json()["id"] == first.json()["id"]
        assert rows(Manager) == 1


# --- read and contact visibility -----------------------------------------------------------------


@dataclass
class Roster:
    me: dict[str, Any]
    colleague: dict[str, Any]
    headers: dict[str, dict[str, str]]


@pytest.fixture
def roster() -> Roster:
    me = make_roster_manager(status="active", email="me@example.org", phone="+49 1111").model_dump(
        mode="json"
    )
    colleague = make_roster_manager(
        status="active", email="colleague@example.org", phone="+49 2222", home_district="gamma"
    ).model_dump(mode="json")
    organisation = make_organisation()
    headers = {
        "admin": make_key("admin"),
        "coordinator": make_key("coordinator"),
        "manager_self": make_key("manager", manager_id=uuid.UUID(me["id"])),
        "manager_other": make_key("manager", manager_id=uuid.UUID(colleague["id"])),
        "partner": make_key("partner", organisation_id=organisation),
        "viewer": make_key("viewer"),
        "no_key": {},
    }
    return Roster(me=me, colleague=colleague, headers=headers)


CONTACT_VALUES = ("me@example.org", "colleague@example.org", "+49 1111", "+49 2222")


class TestContactVisibility:
    @pytest.mark.parametrize("role", ["admin", "coordinator"])
    def test_staff_see_contact_data(self, client, roster: Roster, role: str) -> None:
        response = client.get(f"{API}/{roster.me['id']}", headers=roster.headers[role])
        assert response.status_code == 200
        assert response.json()["email"] == "me@example.org"
        assert response.json()["phone"] == "+49 1111"
        listed = client.get(API, headers=roster.headers[role]).text
        assert all(value in listed for value in CONTACT_VALUES)

    def test_manager_sees_own_contact_data_only(self, client, roster: Roster) -> None:
        headers = roster.headers["manager_self"]
        own = client.get(f"{API}/{roster.me['id']}", headers=headers).json()
        assert (own["email"], own["phone"]) == ("me@example.org", "+49 1111")
        other = client.get(f"{API}/{roster.colleague['id']}", headers=headers).json()
        assert set(other) == PUBLIC_FIELDS
        assert other["email"] is None and other["phone"] is None
        assert other["competences"] == roster.colleague["competences"]
        listed = client.get(API, headers=headers)
        items = {item["id"]: item for item in listed.json()["items"]}
        assert items[roster.me["id"]]["email"] == "me@example.org"
        assert items[roster.colleague["id"]]["email"] is None
        assert "colleague@example.org" not in listed.text and "+49 2222" not in listed.text

    @pytest.mark.parametrize("role", ["partner", "viewer"])
    def test_partner_and_viewer_see_the_redacted_view(
        self, client, roster: Roster, role: str
    ) -> None:
        headers = roster.headers[role]
        single = client.get(f"{API}/{roster.me['id']}", headers=headers)
        assert single.status_code == 200
        assert set(single.json()) == REDACTED_FIELDS
        assert single.json()["email"] is None and single.json()["phone"] is None
        assert single.json()["display_name"] == roster.me["display_name"]
        assert "etag" not in single.headers
        filtered_lists = [
            client.get(API, headers=headers),
            client.get(API, params={"district": "gamma"}, headers=headers),
            client.get(
                API, params={"competence": "mediation", "available": "true"}, headers=headers
            ),
            client.get(API, params={"language": "de", "status": "active"}, headers=headers),
        ]
        for listed in filtered_lists:
            assert listed.status_code == 200
            assert listed.json()["items"], "the filters should match someone"
            for item in listed.json()["items"]:
                assert set(item) == REDACTED_FIELDS
                assert item["email"] is None and item["phone"] is None
            assert not any(value in listed.text for value in CONTACT_VALUES)

    def test_get_unknown_manager(self, client, admin) -> None:
        assert_problem(client.get(f"{API}/{uuid.uuid4()}", headers=admin), 404, "not-found")

    def test_get_malformed_id(self, client, admin) -> None:
        assert_problem(client.get(f"{API}/not-a-uuid", headers=admin), 422, "validation-error")


# --- list, filters, pagination -------------------------------------------------------------------


class TestListManagers:
    def test_keyset_pagination_is_stable_and_complete(self, client, admin) -> None:
        created = [
            client.post(API, json=manager_body(display_name=f"M{i}"), headers=admin).json()
            for i in range(5)
        ]
        seen: list[dict[str, Any]] = []
        cursor = None
        pages = 0
        while True:
            params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
            page = client.get(API, params=params, headers=admin).json()
            seen.extend(page["items"])
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert pages == 3
        assert sorted(m["id"] for m in seen) == sorted(m["id"] for m in created)
        keys = [(m["created_at"], m["id"]) for m in seen]
        assert keys == sorted(keys)

    def test_invalid_cursor_and_limit(self, client, admin) -> None:
        assert_problem(
            client.get(API, params={"cursor": "garbage"}, headers=admin), 400, "invalid-cursor"
        )
        assert_problem(
            client.get(API, params={"limit": 501}, headers=admin), 422, "validation-error"
        )

    @pytest.mark.parametrize(
        "params",
        [{"status": "sleeping"}, {"language": "xyz"}, {"available": "perhaps"}],
    )
    def test_invalid_filter_values(self, client, admin, params: dict[str, str]) -> None:
        assert_problem(client.get(API, params=params, headers=admin), 422, "validation-error")

    def test_district_matches_home_or_served(self, client, admin) -> None:
        home = make_roster_manager(home_district="gamma", districts=[]).id
        served = make_roster_manager(home_district="alpha", districts=["gamma"]).id
        make_roster_manager(home_district="alpha", districts=["beta"])
        found = ids(client.get(API, params={"district": "gamma"}, headers=admin))
        assert set(found) == {str(home), str(served)}
        assert ids(client.get(API, params={"district": "nowhere"}, headers=admin)) == []

    def test_competence_repeatable_means_all(self, client, admin) -> None:
        both = make_roster_manager(
            competences=[
                holding("mediation", date(2024, 1, 1), None),
                holding("youth_work", date(2024, 1, 1), None),
            ]
        ).id
        mediation_only = make_roster_manager(
            competences=[holding("mediation", date(2024, 1, 1), None)]
        ).id
        one = ids(client.get(API, params={"competence": "mediation"}, headers=admin))
        assert set(one) == {str(both), str(mediation_only)}
        two = client.get(
            API, params=[("competence", "mediation"), ("competence", "youth_work")], headers=admin
        )
        assert ids(two) == [str(both)]

    def test_status_repeatable_and_language(self, client, admin) -> None:
        trainee = make_roster_manager(languages=["de", "ar"]).id
        active = make_roster_manager(status="active", languages=["uk"]).id
        paused = make_roster_manager(status="active", languages=["de"]).id
        client.post(f"{API}/{paused}/status", json={"status": "paused"}, headers=admin)
        assert ids(client.get(API, params={"status": "active"}, headers=admin)) == [str(active)]
        both = client.get(API, params=[("status", "active"), ("status", "paused")], headers=admin)
        assert set(ids(both)) == {str(active), str(paused)}
        assert set(ids(client.get(API, params={"language": "de"}, headers=admin))) == {
            str(trainee),
            str(paused),
        }
        assert ids(client.get(API, params={"language": "ar"}, headers=admin)) == [str(trainee)]
        assert_problem(
            client.get(API, params={"language": "AR"}, headers=admin), 422, "validation-error"
        )
        combined = client.get(API, params={"language": "de", "status": "paused"}, headers=admin)
        assert ids(combined) == [str(paused)]

    def test_available_true_and_false(self, client, admin, fixed_clock) -> None:
        available = make_roster_manager(status="active").id
        absent = make_roster_manager(status="active").id
        trainee = make_roster_manager().id
        make_absence(absent, TODAY - timedelta(days=2), TODAY + timedelta(days=2))
        assert ids(client.get(API, params={"available": "true"}, headers=admin)) == [str(available)]
        assert set(ids(client.get(API, params={"available": "false"}, headers=admin))) == {
            str(absent),
            str(trainee),
        }

    def test_page_loads_in_constant_queries(self, client, admin) -> None:
        """No N+1: a page of many managers costs the same statements as a page of one."""
        from sqlalchemy import event

        from app.core.db import get_engine

        make_roster_manager()
        client.get(API, headers=admin)  # the key is verified (and cached) before counting
        statements: list[str] = []

        def count(*args: Any) -> None:
            statements.append(args[2])

        engine = get_engine()
        event.listen(engine, "before_cursor_execute", count)
        try:
            assert len(client.get(API, headers=admin).json()["items"]) == 1
            single = len(statements)
            for _ in range(6):
                make_roster_manager(
                    districts=["beta", "gamma"],
                    competences=[holding("youth_work", date(2025, 1, 1), None)],
                )
            statements.clear()
            response = client.get(API, headers=admin)
        finally:
            event.remove(engine, "before_cursor_execute", count)
        assert len(response.json()["items"]) == 7
        assert len(statements) == single


# --- day boundaries ------------------------------------------------------------------------------


class TestDayBoundaries:
    """Today is 2026-06-15 in Berlin (fixed_clock); the rules run in SQL and in Python."""

    @pytest.mark.parametrize(
        ("starts_on", "ends_on", "available"),
        [
            (TODAY - timedelta(days=5), TODAY, False),  # ends today: still absent
            (TODAY - timedelta(days=5), TODAY - timedelta(days=1), True),  # ended yesterday
            (TODAY, TODAY + timedelta(days=3), False),  # starts today
            (TODAY + timedelta(days=1), TODAY + timedelta(days=3), True),  # starts tomorrow
        ],
    )
    def test_absence_bounds_are_inclusive(
        self, client, admin, fixed_clock, starts_on: date, ends_on: date, available: bool
    ) -> None:
        manager = make_roster_manager(status="active").id
        make_absence(manager, starts_on, ends_on)
        assert client.get(f"{API}/{manager}", headers=admin).json()["available_today"] is available
        listed = ids(client.get(API, params={"available": "true"}, headers=admin))
        assert (str(manager) in listed) is available

    def test_today_is_the_date_in_berlin(self, client, admin) -> None:
        """22:30 UTC on the 15th is already the 16th in Berlin: an absence ending on the 15th
        is over."""
        clock_module.set_clock(
            clock_module.Clock(
                tz=get_settings().tz, fixed_now=datetime(2026, 6, 15, 22, 30, tzinfo=UTC)
            )
        )
        manager = make_roster_manager(status="active").id
        make_absence(manager, TODAY - timedelta(days=3), TODAY)
        assert client.get(f"{API}/{manager}", headers=admin).json()["available_today"] is True
        assert ids(client.get(API, params={"available": "true"}, headers=admin)) == [str(manager)]

    @pytest.mark.parametrize(
        ("expires_on", "counts", "expiring"),
        [
            (TODAY, True, True),  # expires today: still valid, expiring
            (TODAY - timedelta(days=1), False, False),  # expired yesterday: counts nowhere
            (TODAY + timedelta(days=60), True, True),  # last day of the 60-day window
            (TODAY + timedelta(days=61), True, False),
            (None, True, False),
        ],
    )
    def test_competence_expiry(
        self, client, admin, fixed_clock, expires_on: date | None, counts: bool, expiring: bool
    ) -> None:
        manager = make_roster_manager(
            status="active",
            competences=[holding("youth_work", date(2024, 1, 1), expires_on)],
        ).id
        view = client.get(f"{API}/{manager}", headers=admin).json()
        assert view["competences"] == [holding("youth_work", date(2024, 1, 1), expires_on)]
        expected = [{"code": "youth_work", "expires_on": d(expires_on)}] if expiring else []
        assert view["expiring_competences"] == expected
        found = ids(client.get(API, params={"competence": "youth_work"}, headers=admin))
        assert (str(manager) in found) is counts

    def test_competence_certified_in_the_future_does_not_count_yet(
        self, client, admin, fixed_clock
    ) -> None:
        manager = make_roster_manager(
            competences=[holding("mediation", TODAY + timedelta(days=1), None)]
        ).id
        assert ids(client.get(API, params={"competence": "mediation"}, headers=admin)) == []
        clock_module.set_clock(
            clock_module.Clock(
                tz=get_settings().tz, fixed_now=fixed_clock.now() + timedelta(days=1)
            )
        )
        assert ids(client.get(API, params={"competence": "mediation"}, headers=admin)) == [
            str(manager)
        ]


# --- update --------------------------------------------------------------------------------------


class TestUpdateManager:
    def test_valid(self, client, admin) -> None:
        manager = make_roster_manager()
        response = client.patch(
            f"{API}/{manager.id}",
            json={
                "display_name": "Mara B.",
                "phone": None,
                "districts": ["gamma"],
                "competences": [holding("youth_work", date(2025, 2, 1), None)],
                "max_open_assignments": 3,
            },
            headers=admin,
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["display_name"] == "Mara B."
        assert body["phone"] is None
        assert body["districts"] == ["gamma"]
        assert body["competences"] == [holding("youth_work", date(2025, 2, 1), None)]
        assert body["max_open_assignments"] == 3
        assert body["version"] == 2
        assert response.headers["etag"] == '"2"'
        entry = audit_rows("manager", manager.id)[-1]
        assert entry.action == "update"
        assert set(entry.fields) == {
            "display_name",
            "phone",
            "districts",
            "competences",
            "max_open_assignments",
        }

    def test_no_change_keeps_the_version(self, client, admin) -> None:
        manager = make_roster_manager()
        response = client.patch(
            f"{API}/{manager.id}", json={"display_name": manager.display_name}, headers=admin
        )
        assert response.json()["version"] == 1
        assert [e.action for e in audit_rows("manager", manager.id)] == ["create"]

    def test_new_home_district_leaves_the_served_list(self, client, admin) -> None:
        manager = make_roster_manager(home_district="alpha", districts=["beta", "gamma"])
        response = client.patch(
            f"{API}/{manager.id}", json={"home_district": "beta"}, headers=admin
        )
        assert response.json()["home_district"] == "beta"
        assert response.json()["districts"] == ["gamma"]

    def test_if_match(self, client, admin) -> None:
        manager = make_roster_manager()
        stale = client.patch(
            f"{API}/{manager.id}", json={"display_name": "X"}, headers=admin | {"If-Match": '"7"'}
        )
        assert_problem(stale, 412, "stale-version")
        assert stored(manager.id).display_name == manager.display_name
        fresh = client.patch(
            f"{API}/{manager.id}", json={"display_name": "X"}, headers=admin | {"If-Match": '"1"'}
        )
        assert fresh.status_code == 200
        again = client.patch(
            f"{API}/{manager.id}", json={"display_name": "Y"}, headers=admin | {"If-Match": '"1"'}
        )
        assert_problem(again, 412, "stale-version")
        assert stored(manager.id).display_name == "X"

    @pytest.mark.parametrize(
        ("patch", "field"),
        [
            ({"status": "active"}, "status"),
            ({"display_name": None}, "display_name"),
            ({"email": None}, "email"),
            ({"home_district": None}, "home_district"),
            ({"languages": None}, "languages"),
            ({"home_district": "nowhere"}, "home_district"),
            ({"districts": ["nowhere"]}, "districts"),
            ({"languages": ["zz"]}, "languages"),
            ({"max_open_assignments": 0}, "max_open_assignments"),
            ({"competences": [holding("juggling", date(2025, 1, 1), None)]}, "competences"),
            (
                {"competences": [holding("mediation", date(2025, 2, 1), date(2025, 1, 1))]},
                "competences",
            ),
            ({"organisation_id": str(uuid.UUID(int=9))}, "organisation_id"),
            ({"open_assignments": 0}, "open_assignments"),
        ],
    )
    def test_invalid_is_refused_and_changes_nothing(
        self, client, admin, patch: dict[str, Any], field: str
    ) -> None:
        manager = make_roster_manager()
        response = client.patch(f"{API}/{manager.id}", json=patch, headers=admin)
        problem = assert_problem(response, 422, "validation-error")
        assert any(field in error["loc"] for error in problem["errors"]), problem
        after = client.get(f"{API}/{manager.id}", headers=admin).json()
        assert after == manager.model_dump(mode="json")
        assert len(audit_rows("manager", manager.id)) == 1

    def test_duplicate_email(self, client, admin) -> None:
        make_roster_manager(email="taken@example.org")
        manager = make_roster_manager()
        response = client.patch(
            f"{API}/{manager.id}", json={"email": "Taken@example.org"}, headers=admin
        )
        assert_problem(response, 409, "duplicate")
        assert stored(manager.id).email == manager.email

    def test_capacity_cannot_drop_below_open_assignments(self, client, admin) -> None:
        manager = make_roster_manager(status="active", max_open_assignments=3)
        with session_scope() as session:
            session.execute(
                update(Manager).where(Manager.id == manager.id).values(open_assignments=2)
            )
        response = client.patch(
            f"{API}/{manager.id}", json={"max_open_assignments": 1}, headers=admin
        )
        assert_problem(response, 409, "capacity-in-use")
        assert stored(manager.id).max_open_assignments == 3
        view = client.get(f"{API}/{manager.id}", headers=admin).json()
        assert view["open_assignments"] == 2
        ok = client.patch(f"{API}/{manager.id}", json={"max_open_assignments": 2}, headers=admin)
        assert ok.status_code == 200

    def test_unknown_manager(self, client, admin) -> None:
        response = client.patch(f"{API}/{uuid.uuid4()}", json={"display_name": "X"}, headers=admin)
        assert_problem(response, 404, "not-found")


class TestSelfService:
    def test_manager_updates_own_languages(self, client, roster: Roster) -> None:
        response = client.patch(
            f"{API}/{roster.me['id']}",
            json={"languages": ["de", "tr", "de"]},
            headers=roster.headers["manager_self"],
        )
        assert response.status_code == 200, response.text
        assert response.json()["languages"] == ["de", "tr"]
        assert response.json()["email"] == "me@example.org"
        entry = audit_rows("manager", roster.me["id"])[-1]
        assert (entry.action, entry.principal_role, entry.fields) == (
            "update",
            "manager",
            ["languages"],
        )

    @pytest.mark.parametrize(
        "patch",
        [
            {"phone": "+49 9999"},
            {"display_name": "Me"},
            {"max_open_assignments": 5},
            {"languages": ["de"], "districts": ["gamma"]},
        ],
    )
    def test_manager_may_not_change_other_fields(
        self, client, roster: Roster, patch: dict[str, Any]
    ) -> None:
        response = client.patch(
            f"{API}/{roster.me['id']}", json=patch, headers=roster.headers["manager_self"]
        )
        assert_problem(response, 403, "forbidden")
        assert stored(roster.me["id"]).version == 1

    def test_manager_may_not_edit_a_colleague(self, client, roster: Roster) -> None:
        response = client.patch(
            f"{API}/{roster.colleague['id']}",
            json={"languages": ["fr"]},
            headers=roster.headers["manager_self"],
        )
        assert_problem(response, 403, "forbidden")
        assert stored(roster.colleague["id"]).languages == roster.colleague["languages"]


# --- status --------------------------------------------------------------------------------------


class TestManagerStatus:
    def test_lifecycle(self, client, admin) -> None:
        manager = make_roster_manager()
        for status, version in (("active", 2), ("paused", 3), ("active", 4), ("retired", 5)):
            response = client.post(
                f"{API}/{manager.id}/status", json={"status": status, "note": "ok"}, headers=admin
            )
            assert response.status_code == 200, response.text
            assert response.json()["status"] == status
            assert response.json()["version"] == version
            assert response.headers["etag"] == f'"{version}"'
        actions = [(e.action, e.fields) for e in audit_rows("manager", manager.id)]
        assert actions == [("create", actions[0][1])] + [("status", ["status"])] * 4

    @pytest.mark.parametrize(
        ("path", "target"),
        [
            ([], "paused"),  # in_training → paused
            ([], "in_training"),
            (["active"], "active"),
            (["active"], "in_training"),
            (["active", "paused"], "in_training"),
            (["retired"], "active"),  # retired is final
            (["retired"], "in_training"),
            (["active", "retired"], "paused"),
        ],
    )
    def test_invalid_transition(self, client, admin, path: list[str], target: str) -> None:
        manager = make_roster_manager()
        for status in path:
            client.post(f"{API}/{manager.id}/status", json={"status": status}, headers=admin)
        before = stored(manager.id)
        response = client.post(f"{API}/{manager.id}/status", json={"status": target}, headers=admin)
        assert_problem(response, 409, "invalid-transition")
        after = stored(manager.id)
        assert (after.status, after.version) == (before.status, before.version)

    def test_unknown_status(self, client, admin) -> None:
        manager = make_roster_manager()
        response = client.post(
            f"{API}/{manager.id}/status", json={"status": "sleeping"}, headers=admin
        )
        assert_problem(response, 422, "validation-error")
        assert stored(manager.id).status == "in_training"

    def test_unknown_manager(self, client, admin) -> None:
        response = client.post(
            f"{API}/{uuid.uuid4()}/status", json={"status": "active"}, headers=admin
        )
        assert_problem(response, 404, "not-found")


# --- absences ------------------------------------------------------------------------------------


class TestAbsences:
    def test_create_list_delete(self, client, admin) -> None:
        manager = make_roster_manager(status="active")
        url = f"{API}/{manager.id}/absences"
        created = client.post(
            url,
            json={"starts_on": "2026-07-01", "ends_on": "2026-07-14", "reason": "holiday"},
            headers=admin,
        )
        assert created.status_code == 201, created.text
        absence = created.json()
        assert set(absence) == {"id", "starts_on", "ends_on", "reason"}
        assert (absence["starts_on"], absence["ends_on"], absence["reason"]) == (
            "2026-07-01",
            "2026-07-14",
            "holiday",
        )
        one_day = client.post(
            url, json={"starts_on": "2026-06-01", "ends_on": "2026-06-01"}, headers=admin
        )
        assert one_day.status_code == 201
        listed = client.get(url, headers=admin).json()
        assert [a["id"] for a in listed["items"]] == [one_day.json()["id"], absence["id"]]
        deleted = client.delete(f"{url}/{absence['id']}", headers=admin)
        assert deleted.status_code == 204
        assert [a["id"] for a in client.get(url, headers=admin).json()["items"]] == [
            one_day.json()["id"]
        ]
        assert [e.action for e in audit_rows("absence", absence["id"])] == ["create", "delete"]
        assert_problem(client.delete(f"{url}/{absence['id']}", headers=admin), 404, "not-found")

    @pytest.mark.parametrize(
        "body",
        [
            {"starts_on": "2026-07-14", "ends_on": "2026-07-13"},
            {"starts_on": "2026-07-14"},
            {"starts_on": "2026-02-30", "ends_on": "2026-03-01"},
            {"starts_on": "2026-07-01", "ends_on": "2026-07-02", "manager_id": str(uuid.uuid4())},
            {"starts_on": "2026-07-01", "ends_on": "2026-07-02", "reason": "x" * 501},
        ],
    )
    def test_invalid_is_refused_and_writes_nothing(
        self, client, admin, body: dict[str, Any]
    ) -> None:
        manager = make_roster_manager()
        response = client.post(f"{API}/{manager.id}/absences", json=body, headers=admin)
        assert_problem(response, 422, "validation-error")
        assert rows(Absence) == 0

    def test_unknown_manager(self, client, admin) -> None:
        response = client.post(
            f"{API}/{uuid.uuid4()}/absences",
            json={"starts_on": "2026-07-01", "ends_on": "2026-07-02"},
            headers=admin,
        )
        assert_problem(response, 404, "not-found")
        assert rows(Absence) == 0

    def test_absence_of_another_manager_is_not_found(self, client, admin) -> None:
        first = make_roster_manager()
        second = make_roster_manager()
        absence = make_absence(first.id, date(2026, 7, 1), date(2026, 7, 2))
        response = client.delete(f"{API}/{second.id}/absences/{absence}", headers=admin)
        assert_problem(response, 404, "not-found")
        assert rows(Absence) == 1

    def test_pagination(self, client, admin) -> None:
        manager = make_roster_manager()
        made = [
            make_absence(manager.id, date(2026, 7, day), date(2026, 7, day)) for day in (3, 1, 2)
        ]
        url = f"{API}/{manager.id}/absences"
        first = client.get(url, params={"limit": 2}, headers=admin).json()
        second = client.get(
            url, params={"limit": 2, "cursor": first["next_cursor"]}, headers=admin
        ).json()
        assert second["next_cursor"] is None
        days = [a["starts_on"] for a in first["items"] + second["items"]]
        assert days == ["2026-07-01", "2026-07-02", "2026-07-03"]
        assert sorted(a["id"] for a in first["items"] + second["items"]) == sorted(map(str, made))
        assert_problem(
            client.get(url, params={"cursor": "bm9wZQ"}, headers=admin), 400, "invalid-cursor"
        )

    def test_an_absence_makes_the_manager_unavailable(self, client, admin, fixed_clock) -> None:
        manager = make_roster_manager(status="active")
        assert client.get(f"{API}/{manager.id}", headers=admin).json()["available_today"] is True
        created = client.post(
            f"{API}/{manager.id}/absences",
            json={"starts_on": d(TODAY), "ends_on": d(TODAY)},
            headers=admin,
        ).json()
        assert client.get(f"{API}/{manager.id}", headers=admin).json()["available_today"] is False
        client.delete(f"{API}/{manager.id}/absences/{created['id']}", headers=admin)
        assert client.get(f"{API}/{manager.id}", headers=admin).json()["available_today"] is True


# --- the role matrix -----------------------------------------------------------------------------

ROLES = ("admin", "coordinator", "manager_self", "manager_other", "partner", "viewer", "no_key")


def _statuses(success: int, allowed: set[str]) -> dict[str, int]:
    return {
        role: success if role in allowed else (401 if role == "no_key" else 403) for role in ROLES
    }


EVERYONE = set(ROLES) - {"no_key"}
STAFF = {"admin", "coordinator"}
STAFF_AND_SELF = STAFF | {"manager_self"}

#: operation → (method, path, body, expected status per role). ``{me}`` is the manager the
#: ``manager_self`` key is bound to; ``{absence}`` one of its absences.
OPERATIONS: dict[str, tuple[str, str, dict[str, Any] | None, dict[str, int]]] = {
    "list": ("GET", API, None, _statuses(200, EVERYONE)),
    "get": ("GET", API + "/{me}", None, _statuses(200, EVERYONE)),
    "create": ("POST", API, {}, _statuses(201, STAFF)),
    "update_languages": (
        "PATCH",
        API + "/{me}",
        {"languages": ["de", "fr"]},
        _statuses(200, STAFF_AND_SELF),
    ),
    "update_phone": ("PATCH", API + "/{me}", {"phone": "+49 3333"}, _statuses(200, STAFF)),
    "status": ("POST", API + "/{me}/status", {"status": "paused"}, _statuses(200, STAFF)),
    "absence_create": (
        "POST",
        API + "/{me}/absences",
        {"starts_on": "2026-08-01", "ends_on": "2026-08-02"},
        _statuses(201, STAFF_AND_SELF),
    ),
    "absence_list": ("GET", API + "/{me}/absences", None, _statuses(200, STAFF_AND_SELF)),
    "absence_delete": (
        "DELETE",
        API + "/{me}/absences/{absence}",
        None,
        _statuses(204, STAFF_AND_SELF),
    ),
}
MATRIX = [(op, role, spec[3][role]) for op, spec in OPERATIONS.items() for role in ROLES]


@pytest.fixture
def matrix_world(roster: Roster) -> Iterator[dict[str, str]]:
    absence = make_absence(uuid.UUID(roster.me["id"]), date(2026, 9, 1), date(2026, 9, 3))
    yield {"me": roster.me["id"], "absence": str(absence)}


def _state() -> list[Any]:
    with session_scope(write=False) as session:
        return [
            sorted(
                (str(m.id), m.version, m.status, tuple(m.languages), m.phone)
                for m in session.scalars(select(Manager))
            ),
            sorted(str(a.id) for a in session.scalars(select(Absence))),
            session.scalar(select(func.count()).select_from(AuditEvent)),
        ]


def test_every_route_is_in_the_matrix(client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    routes = {
        (method.upper(), path)
        for path, operations in paths.items()
        if path.startswith(API)
        for method, operation in operations.items()
        if "privacy" not in operation["tags"]  # erasure: tests/api/test_privacy.py
    }
    covered = {
        (method, path.replace("{me}", "{manager_id}").replace("{absence}", "{absence_id}"))
        for method, path, _, _ in OPERATIONS.values()
    }
    assert routes == covered


@pytest.mark.parametrize(
    ("operation", "role", "expected"), MATRIX, ids=[f"{op} as {role}" for op, role, _ in MATRIX]
)
def test_role_matrix(
    client, roster: Roster, matrix_world: dict[str, str], operation: str, role: str, expected: int
) -> None:
    method, path, body, _ = OPERATIONS[operation]
    if operation == "create":
        body = manager_body()
    before = _state()
    response = client.request(
        method, path.format(**matrix_world), json=body, headers=roster.headers[role]
    )
    assert response.status_code == expected, response.text
    if expected >= 400:
        assert_problem(response, expected, {401: "unauthorized", 403: "forbidden"}[expected])
        assert _state() == before, "a refused request changed the database"
    elif method != "GET":
        assert _state() != before


class TestSeed:
    def test_demo_roster_is_idempotent_and_varied(self, client, admin) -> None:
        from app.services.seed import MANAGERS, seed_demo_data

        assert seed_demo_data()["managers"] == len(MANAGERS) >= 10
        assert seed_demo_data()["managers"] == 0
        assert rows(Manager) == len(MANAGERS)
        roster: list[dict[str, Any]] = []
        cursor = None
        while True:
            page = client.get(API, params={"cursor": cursor} if cursor else {}, headers=admin)
            roster.extend(page.json()["items"])
            if (cursor := page.json()["next_cursor"]) is None:
                break
        assert {m["status"] for m in roster} == {"in_training", "active", "paused", "retired"}
        absent = [m for m in roster if m["status"] == "active" and not m["available_today"]]
        assert absent
        assert any(m["expiring_competences"] for m in roster)
        assert {"melchendorf", "wiesenhuegel", "herrenberg", "ilversgehofen"} <= {
            m["home_district"] for m in roster
        }

"""Manager reads on the event-loop path (app.services.manager_reads) against the unit-of-work path.

A manager by id, the filtered list and a manager's absences answer every role on the loop path
when the app runs with its lifespan; without it (``app.state.reads`` unset) the unit-of-work path
answers. Both must say the same thing, byte for byte — bodies, ETags, cursors, 404s, 403s and
400s — and leave the same ``access`` entries for the contact data they show.
"""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from app.core.db import session_scope
from app.models.manager import Manager
from app.models.system import AuditEvent
from tests.api.test_loop_reads import unit_of_work_path
from tests.factories import (
    make_absence,
    make_assignment,
    make_incident,
    make_key,
    make_organisation,
    make_roster_manager,
    seed_reference,
)

API = "/api/v1/managers"
TODAY = date(2026, 6, 15)  # the fixed_clock's date in Berlin
ROLES = ["admin", "coordinator", "manager_self", "manager_other", "partner", "viewer"]


def holding(code: str, certified_on: date, expires_on: date | None) -> dict[str, Any]:
    return {
        "code": code,
        "certified_on": certified_on.isoformat(),
        "expires_on": expires_on.isoformat() if expires_on else None,
    }


@pytest.fixture
def world(fixed_clock) -> dict[str, Any]:
    """Managers that differ in every field the views show, and a key of every role."""
    seed_reference()
    organisation = make_organisation()
    me = make_roster_manager(
        display_name='Ümit "Q" Backslash \\ — ✓',
        status="active",
        phone=None,
        organisation_id=str(organisation),
        home_district="beta",
        districts=["gamma", "alpha", "delta"],
        languages=["tr", "de", "ar"],
        max_open_assignments=3,
        notify_by_email=False,
        competences=[
            holding("youth_work", date(2024, 1, 1), TODAY),  # expires today: expiring
            holding("mediation", date(2025, 2, 3), TODAY + timedelta(days=60)),
            holding("anti_discrimination", date(2020, 1, 1), TODAY - timedelta(days=1)),
            holding("right_wing_extremism", TODAY + timedelta(days=1), None),  # not yet
        ],
    ).id
    colleague = make_roster_manager(
        status="active", home_district="gamma", districts=[], languages=[], competences=[]
    ).id
    absent = make_roster_manager(
        status="active",
        competences=[holding("mediation", date(2024, 5, 6), TODAY + timedelta(days=61))],
    ).id
    make_absence(absent, TODAY - timedelta(days=2), TODAY, reason="Urlaub")
    make_absence(absent, TODAY + timedelta(days=10), TODAY + timedelta(days=12))
    make_absence(absent, TODAY - timedelta(days=40), TODAY - timedelta(days=30), reason="x")
    make_absence(absent, TODAY + timedelta(days=10), TODAY + timedelta(days=11))
    trainee = make_roster_manager(languages=["en"], districts=["alpha"]).id
    paused = make_roster_manager(status="active", home_district="delta").id
    with session_scope() as session:
        manager = session.get(Manager, paused)
        assert manager is not None
        manager.status = "paused"
    make_assignment(make_incident().id, colleague, status="accepted")
    return {
        "ids": {"me": me, "colleague": colleague, "absent": absent, "trainee": trainee},
        "all": [me, colleague, absent, trainee, paused],
        "admin": make_key("admin"),
        "coordinator": make_key("coordinator"),
        "manager_self": make_key("manager", manager_id=me),
        "manager_other": make_key("manager", manager_id=colleague),
        "partner": make_key("partner", organisation_id=organisation),
        "viewer": make_key("viewer"),
    }


def access_entries() -> Counter[tuple[str, str | None, tuple[str, ...]]]:
    """The ``access`` entries on managers: (manager id, who, fields), counted."""
    with session_scope(write=False) as session:
        return Counter(
            (e.resource_id, e.principal_subject, tuple(e.fields))
            for e in session.scalars(
                select(AuditEvent).where(
                    AuditEvent.kind == "access", AuditEvent.resource == "manager"
                )
            )
        )


def both(client: Any, url: str, headers: dict[str, str], **params: Any) -> Any:
    """The answer of both paths, asserted identical (status, headers, bytes, access entries)."""
    before = access_entries()
    fast = client.get(url, params=params, headers=headers)
    between = access_entries()
    with unit_of_work_path(client):
        slow = client.get(url, params=params, headers=headers)
    logged_fast, logged_slow = between - before, access_entries() - between
    assert fast.status_code == slow.status_code, (fast.text, slow.text)
    assert fast.headers.get("etag") == slow.headers.get("etag")
    assert fast.headers["content-type"] == slow.headers["content-type"]
    if fast.status_code < 400:
        assert fast.content == slow.content
    else:  # problems name the request (instance); everything else is the same
        assert {k: v for k, v in fast.json().items() if k != "instance"} == {
            k: v for k, v in slow.json().items() if k != "instance"
        }
    assert logged_fast == logged_slow
    return fast


def test_loop_path_is_on(client) -> None:
    assert client.app.state.reads is not None


@pytest.mark.parametrize("role", ROLES)
def test_get_by_id(client, world, role) -> None:
    for manager_id in world["all"]:
        response = both(client, f"{API}/{manager_id}", world[role])
        assert response.status_code == 200
        redacted = role in ("partner", "viewer")
        assert ("etag" in response.headers) is not redacted
    missing = both(client, f"{API}/{uuid.uuid4()}", world[role])
    assert missing.status_code == 404


def test_views_by_role(client, world) -> None:
    """What the loop path answers, spelled out (both paths agree on it: test_get_by_id)."""
    me = world["ids"]["me"]
    full = client.get(f"{API}/{me}", headers=world["admin"]).json()
    assert full["districts"] == ["alpha", "delta", "gamma"]
    assert full["languages"] == ["tr", "de", "ar"]
    assert [c["code"] for c in full["competences"]] == [
        "anti_discrimination",
        "mediation",
        "right_wing_extremism",
        "youth_work",
    ]
    assert full["expiring_competences"] == [
        {"code": "mediation", "expires_on": (TODAY + timedelta(days=60)).isoformat()},
        {"code": "youth_work", "expires_on": TODAY.isoformat()},
    ]
    assert full["notify_by_email"] is False and full["phone"] is None
    assert full["email"] is not None
    other = client.get(f"{API}/{me}", headers=world["manager_other"]).json()
    assert other["email"] is None and other["competences"] == full["competences"]
    own = client.get(f"{API}/{me}", headers=world["manager_self"]).json()
    assert own["email"] == full["email"]
    colleague = client.get(f"{API}/{world['ids']['colleague']}", headers=world["admin"]).json()
    assert colleague["open_assignments"] == 1
    absent = client.get(f"{API}/{world['ids']['absent']}", headers=world["viewer"]).json()
    assert absent["available_today"] is False and absent["email"] is None
    assert "competences" not in absent


FILTERS: list[dict[str, Any]] = [
    {},
    {"district": "alpha"},
    {"district": "GAMMA"},
    {"district": "nowhere"},
    {"competence": "mediation"},
    {"competence": ["mediation", "youth_work"]},
    {"competence": ["mediation", "mediation"]},
    {"competence": "anti_discrimination"},
    {"competence": "right_wing_extremism"},
    {"status": "active"},
    {"status": ["paused", "in_training"]},
    {"language": "de"},
    {"language": "tr"},
    {"language": "xx"},
    {"available": "true"},
    {"available": "false"},
    {"district": "alpha", "available": "true", "language": "de", "status": "active"},
]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("params", FILTERS)
def test_list_filters(client, world, role, params) -> None:
    response = both(client, API, world[role], **params)
    assert response.status_code == 200


@pytest.mark.parametrize("role", ["admin", "manager_self", "viewer"])
def test_pages_and_cursors(client, world, role) -> None:
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = both(client, API, world[role], **params).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(str(m) for m in world["all"])


@pytest.mark.parametrize("cursor", ["not-a-cursor", "WzEsMl0", "WyJ4IiwieSJd"])
def test_invalid_cursor(client, world, cursor) -> None:
    assert both(client, API, world["admin"], cursor=cursor).status_code == 400


@pytest.mark.parametrize("role", ["admin", "coordinator", "manager_self", "manager_other"])
def test_absences(client, world, role) -> None:
    absent = world["ids"]["absent"]
    make_key("manager", manager_id=absent)
    for manager_id in (absent, world["ids"]["me"], uuid.uuid4()):
        url = f"{API}/{manager_id}/absences"
        first = both(client, url, world[role])
        if first.status_code == 200:
            both(client, url, world[role], limit=1)
            cursor = both(client, url, world[role], limit=2).json()["next_cursor"]
            if cursor:
                both(client, url, world[role], limit=2, cursor=cursor)
        both(client, url, world[role], cursor="not-a-cursor")  # 404 / 403 before 400
    own = client.get(f"{API}/{world['ids']['me']}/absences", headers=world["manager_self"])
    assert own.status_code == 200 and own.json() == {"items": [], "next_cursor": None}


def test_absences_pages(client, world) -> None:
    url = f"{API}/{world['ids']['absent']}/absences"
    seen: list[dict[str, Any]] = []
    cursor = None
    for _ in range(5):
        params: dict[str, Any] = {"limit": 1}
        if cursor:
            params["cursor"] = cursor
        page = both(client, url, world["admin"], **params).json()
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [a["starts_on"] for a in seen] == sorted(a["starts_on"] for a in seen)
    assert len(seen) == 4 and {a["reason"] for a in seen} == {"Urlaub", None, "x"}


@pytest.mark.parametrize("role", ["partner", "viewer"])
def test_absences_refused_to_other_roles(client, world, role) -> None:
    url = f"{API}/{world['ids']['absent']}/absences"
    assert both(client, url, world[role]).status_code == 403


def test_contact_reads_are_logged(client, world) -> None:
    """Each returned manager whose e-mail or phone the caller sees: one entry (fields only)."""
    before = access_entries()
    client.get(API, headers=world["viewer"])
    assert access_entries() == before
    client.get(API, headers=world["manager_self"])
    logged = access_entries() - before
    assert [(manager_id, fields) for manager_id, _, fields in logged] == [
        (str(world["ids"]["me"]), ("email",))  # its own record; it has no phone
    ]
    before = access_entries()
    client.get(API, headers=world["coordinator"])
    logged = access_entries() - before
    assert sorted(manager_id for manager_id, _, _ in logged) == sorted(str(m) for m in world["all"])
    assert sum(logged.values()) == len(world["all"])

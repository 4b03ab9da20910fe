"""Reference data, assignment and recommendation reads: the event-loop path and the unit-of-work
path give the same answers — bodies (byte for byte), ETags, cursors, 400s, 403s and 404s — for
every role and filter (see tests/api/test_loop_reads.py for the incident reads)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.core.db import session_scope
from app.models.assignment import Assignment
from app.models.recommendation import Recommendation
from app.models.reference import District
from tests.api.test_loop_reads import unit_of_work_path
from tests.factories import (
    make_assignment,
    make_incident,
    make_key,
    make_manager,
    make_organisation,
    make_recommendation,
    seed_reference,
)

API = "/api/v1"
BAD_CURSOR = "bm90LWEtY3Vyc29y"  # base64 of "not-a-cursor"
WRONG_TYPES = "WzEsMl0"  # [1,2]: decodable, wrong types


def same(client: Any, url: str, headers: dict[str, str], **params: Any) -> Any:
    """GET on both paths; assert the same answer; return the loop path's response."""
    fast = client.get(url, headers=headers, params=params)
    with unit_of_work_path(client):
        slow = client.get(url, headers=headers, params=params)
    assert fast.status_code == slow.status_code, (url, params, fast.text, slow.text)
    assert fast.headers.get("etag") == slow.headers.get("etag")
    assert fast.headers.get("content-type") == slow.headers.get("content-type")
    if fast.headers.get("content-type") == "application/json":
        assert fast.content == slow.content, (url, params)
    else:  # problem+json: the request id differs
        fast_body, slow_body = fast.json(), slow.json()
        for body in (fast_body, slow_body):
            body.pop("request_id", None)
            body.pop("instance", None)
        assert fast_body == slow_body
    return fast


def walk(client: Any, url: str, headers: dict[str, str], **params: Any) -> list[Any]:
    """Every page (limit 2) on both paths; the items of all pages."""
    items: list[Any] = []
    cursor = None
    while True:
        extra = {"cursor": cursor} if cursor else {}
        body = same(client, url, headers, limit=2, **params, **extra).json()
        items.extend(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return items


@pytest.fixture
def world() -> dict[str, Any]:
    seed_reference()
    organisation = make_organisation("Streetwork e.V.")
    other = make_organisation("Stadtverwaltung", kind="city_department")
    return {
        "organisation": organisation,
        "other": other,
        "admin": make_key("admin"),
        "coordinator": make_key("coordinator"),
        "viewer": make_key("viewer"),
        "partner": make_key("partner", organisation_id=organisation),
    }


class TestReference:
    def test_lists_and_pages(self, client, world) -> None:
        with session_scope() as session:
            district = session.get(District, "gamma")
            district.area = "Nord"
            district.boundary = {
                "type": "Polygon",
                "coordinates": [[[11.0, 50.9], [11.05, 50.9], [11.05, 50.95], [11, 50.9]]],
            }
        make_organisation('Ümlaut ✓ "quoted"', kind="other")
        for role in ("admin", "viewer", "partner"):
            headers = world[role]
            districts = same(client, f"{API}/districts", headers).json()["items"]
            assert [d["code"] for d in districts] == ["alpha", "beta", "delta", "gamma"]
            assert districts[1]["neighbours"] == ["alpha", "gamma"]
            assert [d["code"] for d in walk(client, f"{API}/districts", headers)] == [
                d["code"] for d in districts
            ]
            same(client, f"{API}/districts", headers, city="Teststadt", limit=3)
            assert same(client, f"{API}/districts", headers, city="Elsewhere").json() == {
                "items": [],
                "next_cursor": None,
            }
            competences = walk(client, f"{API}/competences", headers)
            assert len(competences) == 4
            organisations = walk(client, f"{API}/organisations", headers)
            assert len(organisations) == 3
            same(client, f"{API}/organisations", headers, limit=500)

    @pytest.mark.parametrize("route", ["districts", "competences", "organisations"])
    @pytest.mark.parametrize("cursor", [BAD_CURSOR, WRONG_TYPES, "WzFd", "W251bGxd"])
    def test_bad_cursors(self, client, world, route, cursor) -> None:
        assert same(client, f"{API}/{route}", world["admin"], cursor=cursor).status_code == 400

    def test_get_one(self, client, world) -> None:
        with session_scope() as session:
            session.get(District, "alpha").boundary = {
                "type": "MultiPolygon",
                "coordinates": [[[[11, 50], [11.5, 50], [11.5, 50.5], [11, 50]]]],
            }
        for role in ("admin", "partner"):
            headers = world[role]
            for code in ("alpha", "beta", "delta", "ALPHA"):
                body = same(client, f"{API}/districts/{code}", headers).json()
                assert body["code"] == code.lower()
            assert same(client, f"{API}/districts/omega", headers).status_code == 404
            assert same(client, f"{API}/competences/mediation", headers).status_code == 200
            assert same(client, f"{API}/competences/nothing", headers).status_code == 404
            url = f"{API}/organisations/{world['other']}"
            assert same(client, url, headers).headers["etag"] == '"1"'
            assert same(client, f"{API}/organisations/{uuid.uuid4()}", headers).status_code == 404

    def test_after_an_edit(self, client, world) -> None:
        response = client.patch(
            f"{API}/districts/delta",
            json={"neighbours": ["gamma", "alpha"], "area": "Süd"},
            headers={**world["admin"], "If-Match": '"1"'},
        )
        assert response.status_code == 200, response.text
        body = same(client, f"{API}/districts/delta", world["admin"]).json()
        assert body["neighbours"] == ["alpha", "gamma"]
        assert same(client, f"{API}/districts/delta", world["admin"]).headers["etag"] == '"2"'
        assert same(client, f"{API}/districts/alpha", world["admin"]).json()["neighbours"] == [
            "beta",
            "delta",
        ]

    def test_unauthenticated(self, client, world) -> None:
        assert same(client, f"{API}/districts", {}).status_code == 401


@pytest.fixture
def assignments(world) -> dict[str, Any]:
    """Assignments on the partner's incident and on another one, of two managers."""
    ours = make_incident(organisation_id=str(world["organisation"]))
    theirs = make_incident()
    first, second = make_manager(display_name="Mara Ümlaut"), make_manager()
    rows = {
        "ours_first": make_assignment(ours.id, first, status="declined"),
        "ours_second": make_assignment(ours.id, second, role="co", status="accepted"),
        "theirs_first": make_assignment(theirs.id, first, status="completed"),
        "theirs_second": make_assignment(theirs.id, second, status="withdrawn"),
        "theirs_offer": make_assignment(theirs.id, first, status="offered"),
    }
    with session_scope() as session:
        for n, assignment_id in enumerate(rows.values()):
            assignment = session.get(Assignment, assignment_id)
            assignment.created_at = datetime(2026, 5, 1, 12, 0, n % 2, 5000 * n, tzinfo=UTC)
            assignment.score = [None, 0.8125, 1.0, 0.3333333333333333, 0][n]
            assignment.reasons = [
                {"factor": "district", "value": 1, "weight": 0.4, "detail": "home district"},
                {"factor": "load", "value": 0.5, "weight": 0.25, "detail": "1 of 2 — open"},
            ][: n % 3]
        first_row = session.get(Assignment, rows["ours_first"])
        first_row.decline_reason = 'on holiday, "sorry"'
        session.get(Assignment, rows["theirs_second"]).withdraw_reason = "conflict of interest"
        session.get(Assignment, rows["theirs_first"]).outcome = "Settled.\nBoth sides met."
    return {
        **rows,
        "ours": ours.id,
        "theirs": theirs.id,
        "first": first,
        "second": second,
        "first_key": make_key("manager", manager_id=first),
        "orphan_partner": make_key("partner", organisation_id=make_organisation("Third")),
    }


class TestAssignments:
    @pytest.mark.parametrize(
        ("role", "count"),
        [("admin", 5), ("coordinator", 5), ("first_key", 3), ("partner", 2), ("orphan", 0)],
    )
    def test_list_per_role(self, client, world, assignments, role, count) -> None:
        headers = (
            assignments[role]
            if role == "first_key"
            else assignments["orphan_partner"]
            if role == "orphan"
            else world[role]
        )
        url = f"{API}/assignments"
        items = same(client, url, headers).json()["items"]
        assert len(items) == count
        assert walk(client, url, headers) == items
        for params in (
            {"manager_id": str(assignments["first"])},
            {"incident_id": str(assignments["ours"])},
            {"status": ["declined", "withdrawn"]},
            {"status": "offered", "manager_id": str(assignments["second"])},
        ):
            same(client, url, headers, **params)
            walk(client, url, headers, **params)
        if role == "partner":
            declined = [i for i in items if i["status"] == "declined"]
            assert declined and declined[0]["decline_reason"] is None

    @pytest.mark.parametrize("role", ["admin", "first_key", "partner", "orphan_partner"])
    def test_get_per_role(self, client, world, assignments, role) -> None:
        headers = assignments.get(role) or world[role]
        seen = set()
        for name in ("ours_first", "ours_second", "theirs_first", "theirs_second"):
            response = same(client, f"{API}/assignments/{assignments[name]}", headers)
            if response.status_code == 200:
                seen.add(name)
            else:
                assert response.status_code == 404
        expected = {
            "admin": {"ours_first", "ours_second", "theirs_first", "theirs_second"},
            "first_key": {"ours_first", "theirs_first"},
            "partner": {"ours_first", "ours_second"},
            "orphan_partner": set(),
        }[role]
        assert seen == expected
        assert same(client, f"{API}/assignments/{uuid.uuid4()}", headers).status_code == 404

    def test_reasons_and_names(self, client, world, assignments) -> None:
        body = same(client, f"{API}/assignments/{assignments['ours_second']}", world["admin"])
        assert body.json()["reasons"][0]["value"] == 1.0
        body = same(client, f"{API}/assignments/{assignments['ours_first']}", world["admin"])
        assert body.json()["manager_display_name"] == "Mara Ümlaut"
        assert body.json()["decline_reason"] == 'on holiday, "sorry"'

    @pytest.mark.parametrize("cursor", [BAD_CURSOR, WRONG_TYPES, "WyJ4IiwieSJd"])
    def test_bad_cursor_and_forbidden(self, client, world, assignments, cursor) -> None:
        url = f"{API}/assignments"
        assert same(client, url, world["admin"], cursor=cursor).status_code == 400
        assert same(client, url, world["viewer"]).status_code == 403
        one = f"{url}/{assignments['ours_first']}"
        assert same(client, one, world["viewer"]).status_code == 403


@pytest.fixture
def recommendations(world, fixed_clock) -> dict[str, Any]:
    group, department = world["organisation"], world["other"]
    evidence = [make_incident(title=f"Incident {n}, with a comma").id for n in range(3)]
    ids = {
        "overdue": make_recommendation(
            group,
            department,
            statuses=["submitted", "accepted"],
            due_on="2026-06-01",
            districts=["gamma", "alpha", "beta"],
            incident_ids=[str(i) for i in evidence],
            title='Ümlaut "quoted" title',
        ),
        "due_today": make_recommendation(group, department, due_on="2026-06-15"),
        "closed": make_recommendation(
            group, department, statuses=["submitted", "rejected"], due_on="2026-01-01"
        ),
        "undated": make_recommendation(
            department, group, due_on=None, districts=[], category="prevention"
        ),
    }
    with session_scope() as session:
        for n, rec_id in enumerate(ids.values()):
            session.get(Recommendation, rec_id).created_at = datetime(
                2026, 6, 1, 9, 0, tzinfo=UTC
            ) + timedelta(microseconds=n % 2)
    return {**ids, "evidence": evidence}


class TestRecommendations:
    @pytest.mark.parametrize("role", ["admin", "viewer"])
    def test_list_and_filters(self, client, world, recommendations, role) -> None:
        headers = world[role]
        url = f"{API}/recommendations"
        items = same(client, url, headers).json()["items"]
        assert len(items) == 4
        assert walk(client, url, headers) == items
        overdue = next(i for i in items if i["id"] == str(recommendations["overdue"]))
        assert overdue["overdue"] is True
        assert overdue["districts"] == ["alpha", "beta", "gamma"]
        assert len(overdue["evidence"]) == 3
        assert overdue["incident_ids"] == [e["incident_id"] for e in overdue["evidence"]]
        for params in (
            {"overdue": "true"},
            {"overdue": "false"},
            {"status": ["draft", "rejected"]},
            {"category": "prevention"},
            {"addressee": str(world["other"])},
            {"district": "beta"},
            {"district": "ALPHA", "overdue": "true"},
        ):
            same(client, url, headers, **params)
            walk(client, url, headers, **params)
        assert len(same(client, url, headers, overdue="true").json()["items"]) == 1

    def test_get_and_events(self, client, world, recommendations) -> None:
        headers = world["viewer"]
        for name in ("overdue", "due_today", "closed", "undated"):
            url = f"{API}/recommendations/{recommendations[name]}"
            assert same(client, url, headers).status_code == 200
            events = walk(client, f"{url}/events", headers)
            assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
            same(client, f"{url}/events", headers, limit=1)
            assert same(client, f"{url}/events", headers, cursor=BAD_CURSOR).status_code == 400
            assert same(client, f"{url}/events", headers, cursor="WzEwMF0").json() == {
                "items": [],
                "next_cursor": None,
            }
        missing = f"{API}/recommendations/{uuid.uuid4()}"
        assert same(client, missing, headers).status_code == 404
        assert same(client, f"{missing}/events", headers).status_code == 404
        assert same(client, f"{missing}/events", headers, cursor=BAD_CURSOR).status_code == 404

    def test_forbidden_and_bad_cursor(self, client, world, recommendations) -> None:
        url = f"{API}/recommendations"
        assert same(client, url, world["partner"]).status_code == 403
        one = f"{url}/{recommendations['overdue']}"
        assert same(client, one, world["partner"]).status_code == 403
        assert same(client, f"{one}/events", world["partner"]).status_code == 403
        for cursor in (BAD_CURSOR, WRONG_TYPES):
            assert same(client, url, world["admin"], cursor=cursor).status_code == 400

"""Incidents: creation, references, lists and filters, edits, reporter visibility, lifecycle."""

from __future__ import annotations

import itertools
import re
import threading
import uuid
from typing import Any

import pytest
from sqlalchemy import func, select, update

from app.core.db import session_scope
from app.models.assignment import Assignment
from app.models.incident import (
    DISPATCH_ONLY_TRANSITIONS,
    INCIDENT_TRANSITIONS,
    Incident,
    IncidentEvent,
    IncidentStatus,
)
from app.models.manager import Manager
from app.models.system import AuditEvent
from tests.factories import (
    incident_body,
    make_assignment,
    make_incident,
    make_key,
    make_manager,
    make_organisation,
    seed_reference,
)

URL = "/api/v1/incidents"
REFERENCE_RE = re.compile(r"^KOK-\d{4}-\d{5}$")
S = IncidentStatus


def problem_type(response: Any) -> str:
    assert response.headers["content-type"] == "application/problem+json", response.text
    return response.json()["type"]


def count(model: Any) -> int:
    with session_scope(write=False) as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def set_status_in_db(incident_id: uuid.UUID, status: str) -> None:
    """Reach any status directly (dispatch sets some of them, not the API)."""
    with session_scope() as session:
        session.execute(update(Incident).where(Incident.id == incident_id).values(status=status))


def incident_row(incident_id: uuid.UUID) -> Incident:
    with session_scope(write=False) as session:
        incident = session.get(Incident, incident_id)
        assert incident is not None
        return incident


def events_of(client: Any, incident_id: Any, headers: dict[str, str]) -> list[dict[str, Any]]:
    response = client.get(f"{URL}/{incident_id}/events", params={"limit": 500}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["items"]


@pytest.fixture
def admin() -> dict[str, str]:
    seed_reference()
    return make_key("admin")


class TestCreateIncident:
    def test_valid(self, client, admin) -> None:
        body = incident_body(location={"lat": 50.97, "lon": 11.03}, external_id="ext-1")
        response = client.post(URL, json=body, headers=admin)
        assert response.status_code == 201, response.text
        data = response.json()
        assert REFERENCE_RE.match(data["reference"])
        assert data["status"] == "reported"
        assert data["source"] == "web"
        assert data["location"] == {"lat": 50.97, "lon": 11.03}
        assert data["required_competences"] == ["mediation"]
        assert data["reporter"] == {
            "name": "Erika Muster",
            "contact": "erika@example.org",
            "anonymous": False,
        }
        assert data["version"] == 1
        assert response.headers["etag"] == '"1"'
        assert response.headers["location"] == f"{URL}/{data['id']}"
        events = events_of(client, data["id"], admin)
        assert [(e["type"], e["to_status"]) for e in events] == [("created", "reported")]

    def test_reference_uses_year_and_counts_up(self, client, admin, fixed_clock) -> None:
        first = client.post(URL, json=incident_body(), headers=admin).json()["reference"]
        second = client.post(URL, json=incident_body(), headers=admin).json()["reference"]
        assert (first, second) == ("KOK-2026-00001", "KOK-2026-00002")

    def test_partner_creates_for_its_organisation_with_source_partner(self, client, admin) -> None:
        organisation = make_organisation()
        partner = make_key("partner", organisation_id=organisation)
        response = client.post(URL, json=incident_body(source="hotline"), headers=partner)
        assert response.status_code == 201, response.text
        assert response.json()["organisation_id"] == str(organisation)
        assert response.json()["source"] == "partner"

    def test_partner_may_not_create_for_another_organisation(self, client, admin) -> None:
        partner = make_key("partner", organisation_id=make_organisation("Own"))
        other = make_organisation("Other")
        response = client.post(URL, json=incident_body(organisation_id=str(other)), headers=partner)
        assert response.status_code == 403
        assert problem_type(response) == "/problems/forbidden"
        assert count(Incident) == 0

    @pytest.mark.parametrize(
        ("overrides", "field"),
        [
            ({"district": "nowhere"}, "district"),
            ({"required_competences": ["juggling"]}, "required_competences"),
            ({"organisation_id": str(uuid.uuid4())}, "organisation_id"),
        ],
    )
    def test_unknown_reference(self, client, admin, overrides, field) -> None:
        response = client.post(URL, json=incident_body(**overrides), headers=admin)
        assert response.status_code == 422
        assert problem_type(response) == "/problems/validation-error"
        assert response.json()["errors"][0]["loc"] == ["body", field]
        assert count(Incident) == 0
        assert count(IncidentEvent) == 0
        assert count(AuditEvent) == 1  # only the key's creation

    def test_duplicate_external_id(self, client, admin) -> None:
        body = incident_body(source="hotline", external_id="call-17")
        assert client.post(URL, json=body, headers=admin).status_code == 201
        response = client.post(URL, json=body, headers=admin)
        assert response.status_code == 409
        assert problem_type(response) == "/problems/duplicate"
        assert count(Incident) == 1


class TestConcurrentReferences:
    def test_twenty_concurrent_creations_get_distinct_references(self, client, admin) -> None:
        """20 threads POST at once through the app's thread pool: 20 distinct references."""
        barrier = threading.Barrier(20)
        results: list[Any] = []
        lock = threading.Lock()

        def create(i: int) -> None:
            barrier.wait()
            response = client.post(URL, json=incident_body(title=f"Concurrent {i}"), headers=admin)
            with lock:
                results.append(response)

        threads = [threading.Thread(target=create, args=(i,)) for i in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert len(results) == 20
        assert all(r.status_code == 201 for r in results), [r.text for r in results]
        references = {r.json()["reference"] for r in results}
        assert len(references) == 20
        assert all(REFERENCE_RE.match(ref) for ref in references)
        numbers = sorted(int(ref[-5:]) for ref in references)
        assert numbers == list(range(1, 21))
        with session_scope(write=False) as session:
            assert set(session.scalars(select(Incident.reference))) == references


class TestListIncidents:
    @pytest.fixture
    def spread(self, admin) -> dict[str, Any]:
        organisation = make_organisation()
        ids = {
            "a": make_incident(
                title="Graffiti 100% real",
                district="alpha",
                category="hate_speech",
                escalation_level=2,
                reported_at="2026-01-10T10:00:00Z",
            ).id,
            "b": make_incident(
                title="Park fight",
                district="beta",
                category="youth_conflict",
                escalation_level=5,
                reported_at="2026-03-10T10:00:00Z",
                organisation_id=str(organisation),
            ).id,
            "c": make_incident(
                title="Noise",
                description="Loud music at night",
                district="beta",
                category="neighbourhood_dispute",
                escalation_level=7,
                reported_at="2026-05-10T10:00:00Z",
            ).id,
        }
        set_status_in_db(ids["c"], "triaged")
        return {"ids": ids, "organisation": organisation}

    def listed(self, client, headers, **params: Any) -> set[uuid.UUID]:
        response = client.get(URL, params={"limit": 500, **params}, headers=headers)
        assert response.status_code == 200, response.text
        return {uuid.UUID(item["id"]) for item in response.json()["items"]}

    def test_filters(self, client, admin, spread) -> None:
        ids = spread["ids"]
        assert self.listed(client, admin) == set(ids.values())
        assert self.listed(client, admin, district="beta") == {ids["b"], ids["c"]}
        assert self.listed(client, admin, status="triaged") == {ids["c"]}
        assert self.listed(client, admin, status=["triaged", "reported"]) == set(ids.values())
        assert self.listed(client, admin, category="hate_speech") == {ids["a"]}
        assert self.listed(client, admin, min_escalation=5) == {ids["b"], ids["c"]}
        assert self.listed(client, admin, reported_after="2026-02-01T00:00:00Z") == {
            ids["b"],
            ids["c"],
        }
        assert self.listed(client, admin, reported_before="2026-04-01T00:00:00Z") == {
            ids["a"],
            ids["b"],
        }
        assert self.listed(client, admin, organisation_id=str(spread["organisation"])) == {ids["b"]}
        assert self.listed(client, admin, q="loud MUSIC") == {ids["c"]}
        assert self.listed(client, admin, q="100%") == {ids["a"]}
        assert self.listed(client, admin, q="_") == set()

    def test_newest_first(self, client, admin) -> None:
        first = make_incident(title="first").id
        second = make_incident(title="second").id
        items = client.get(URL, headers=admin).json()["items"]
        assert [uuid.UUID(i["id"]) for i in items] == [second, first]

    def test_partner_sees_only_its_organisation(self, client, spread) -> None:
        partner = make_key("partner", organisation_id=spread["organisation"])
        assert self.listed(client, partner) == {spread["ids"]["b"]}
        other = make_key("partner", organisation_id=make_organisation("Other"))
        assert self.listed(client, other) == set()
        # a filter naming another organisation does not widen the scope
        assert self.listed(client, other, organisation_id=str(spread["organisation"])) == set()

    def test_manager_sees_only_incidents_with_an_open_assignment(self, client, spread) -> None:
        ids = spread["ids"]
        manager = make_manager()
        make_assignment(ids["a"], manager, status="accepted")
        make_assignment(ids["b"], manager, status="declined")
        headers = make_key("manager", manager_id=manager)
        assert self.listed(client, headers) == {ids["a"]}


class TestGetIncident:
    def test_valid_with_etag(self, client, admin) -> None:
        incident = make_incident()
        response = client.get(f"{URL}/{incident.id}", headers=admin)
        assert response.status_code == 200
        assert response.json()["reference"] == incident.reference
        assert response.headers["etag"] == '"1"'

    def test_unknown(self, client, admin) -> None:
        response = client.get(f"{URL}/{uuid.uuid4()}", headers=admin)
        assert response.status_code == 404
        assert problem_type(response) == "/problems/not-found"


class TestUpdateIncident:
    def test_valid_bumps_version_and_records_event(self, client, admin) -> None:
        incident = make_incident()
        response = client.patch(
            f"{URL}/{incident.id}",
            json={
                "title": "New title",
                "required_competences": ["youth_work"],
                "location": {"lat": 1.5, "lon": 2.5},
            },
            headers={**admin, "If-Match": '"1"'},
        )
        assert response.status_code == 200, response.text
        data = response.json()
        assert (data["title"], data["version"]) == ("New title", 2)
        assert data["required_competences"] == ["youth_work"]
        assert data["location"] == {"lat": 1.5, "lon": 2.5}
        assert response.headers["etag"] == '"2"'
        updated = [e for e in events_of(client, incident.id, admin) if e["type"] == "updated"]
        assert updated[0]["data"]["fields"] == ["location", "required_competences", "title"]

    def test_no_change_keeps_version(self, client, admin) -> None:
        incident = make_incident()
        response = client.patch(
            f"{URL}/{incident.id}", json={"title": incident.title}, headers=admin
        )
        assert response.status_code == 200
        assert response.json()["version"] == 1

    def test_stale_if_match(self, client, admin) -> None:
        incident = make_incident()
        assert (
            client.patch(f"{URL}/{incident.id}", json={"title": "v2"}, headers=admin).status_code
            == 200
        )
        response = client.patch(
            f"{URL}/{incident.id}",
            json={"title": "lost update"},
            headers={**admin, "If-Match": '"1"'},
        )
        assert response.status_code == 412
        assert problem_type(response) == "/problems/stale-version"
        row = incident_row(incident.id)
        assert (row.title, row.version) == ("v2", 2)

    def test_status_is_read_only(self, client, admin) -> None:
        incident = make_incident()
        response = client.patch(f"{URL}/{incident.id}", json={"status": "triaged"}, headers=admin)
        assert response.status_code == 422
        assert problem_type(response) == "/problems/validation-error"
        assert incident_row(incident.id).status == "reported"

    @pytest.mark.parametrize("field", ["title", "district", "category", "escalation_level"])
    def test_required_field_cannot_be_null(self, client, admin, field) -> None:
        incident = make_incident()
        response = client.patch(f"{URL}/{incident.id}", json={field: None}, headers=admin)
        assert response.status_code == 422
        assert incident_row(incident.id).version == 1

    def test_unknown_district(self, client, admin) -> None:
        incident = make_incident()
        response = client.patch(f"{URL}/{incident.id}", json={"district": "nowhere"}, headers=admin)
        assert response.status_code == 422
        assert incident_row(incident.id).district == "alpha"

    def test_partner_of_another_organisation_gets_404(self, client, admin) -> None:
        incident = make_incident(organisation_id=str(make_organisation("Own")))
        other = make_key("partner", organisation_id=make_organisation("Other"))
        response = client.patch(f"{URL}/{incident.id}", json={"title": "x"}, headers=other)
        assert response.status_code == 404
        assert incident_row(incident.id).title == incident.title


# --- reporter visibility -----------------------------------------------------------------------

EMAIL_A, EMAIL_B, EMAIL_C = "rep-a@example.org", "rep-b@example.org", "rep-c@example.org"
NAME_A, NAME_B, NAME_C = "Anna Alpha", "Bert Beta", "Cora Gamma"
SHOWN, HIDDEN = "shown", "hidden"

#: role → what it gets for incident A (in_progress, accepted lead M1 + accepted co M2),
#: incident B (dispatched, offered lead M3), PATCH of A, and the status change of C (reported).
#: SHOWN/HIDDEN: 200 with/without reporter; an int: that status, and no reporter anywhere.
REPORTER_VISIBILITY: dict[str, dict[str, Any]] = {
    "admin": {"a": SHOWN, "b": SHOWN, "patch_a": SHOWN, "status_c": SHOWN},
    "coordinator": {"a": SHOWN, "b": SHOWN, "patch_a": SHOWN, "status_c": SHOWN},
    "partner_own": {"a": SHOWN, "b": SHOWN, "patch_a": SHOWN, "status_c": SHOWN},
    "partner_other": {"a": 404, "b": 404, "patch_a": 404, "status_c": 404},
    "manager_accepted_lead": {"a": SHOWN, "b": 404, "patch_a": 403, "status_c": 403},
    "manager_accepted_co": {"a": HIDDEN, "b": 404, "patch_a": 403, "status_c": 403},
    "manager_offered_lead": {"a": 404, "b": HIDDEN, "patch_a": 403, "status_c": 403},
    "viewer": {"a": 403, "b": 403, "patch_a": 403, "status_c": 403},
}


@pytest.fixture
def reporter_world(admin) -> dict[str, Any]:
    own = make_organisation("Own")
    other = make_organisation("Other")
    a = make_incident(
        organisation_id=str(own), title="A", reporter={"name": NAME_A, "contact": EMAIL_A}
    ).id
    b = make_incident(
        organisation_id=str(own), title="B", reporter={"name": NAME_B, "contact": EMAIL_B}
    ).id
    c = make_incident(
        organisation_id=str(own), title="C", reporter={"name": NAME_C, "contact": EMAIL_C}
    ).id
    m1, m2, m3 = (make_manager(display_name=n) for n in ("M1", "M2", "M3"))
    make_assignment(a, m1, role="lead", status="accepted")
    make_assignment(a, m2, role="co", status="accepted")
    make_assignment(b, m3, role="lead", status="offered")
    set_status_in_db(a, "in_progress")
    set_status_in_db(b, "dispatched")
    headers = {
        "admin": admin,
        "coordinator": make_key("coordinator"),
        "partner_own": make_key("partner", organisation_id=own),
        "partner_other": make_key("partner", organisation_id=other),
        "manager_accepted_lead": make_key("manager", manager_id=m1),
        "manager_accepted_co": make_key("manager", manager_id=m2),
        "manager_offered_lead": make_key("manager", manager_id=m3),
        "viewer": make_key("viewer"),
    }
    return {"ids": {"a": a, "b": b, "c": c}, "headers": headers}


def _assert_reporter(response: Any, expected: Any, name: str, email: str) -> None:
    if expected in (SHOWN, HIDDEN):
        assert response.status_code == 200, response.text
        reporter = response.json()["reporter"]
        if expected == SHOWN:
            assert reporter == {"name": name, "contact": email, "anonymous": False}
        else:
            assert reporter is None
            assert email not in response.text and name not in response.text
    else:
        assert response.status_code == expected, response.text
        assert email not in response.text and name not in response.text


class TestReporterVisibility:
    @pytest.mark.parametrize("role", list(REPORTER_VISIBILITY))
    def test_role(self, client, reporter_world, role) -> None:
        expected = REPORTER_VISIBILITY[role]
        ids = reporter_world["ids"]
        headers = reporter_world["headers"][role]
        people = {"a": (NAME_A, EMAIL_A), "b": (NAME_B, EMAIL_B), "c": (NAME_C, EMAIL_C)}

        # list: only visible incidents, with the reporter exactly where the role may see it
        listing = client.get(URL, params={"limit": 500}, headers=headers)
        if expected["a"] == 403:
            assert listing.status_code == 403
        else:
            assert listing.status_code == 200
            items = {uuid.UUID(i["id"]): i for i in listing.json()["items"]}
            for key in ("a", "b"):
                if expected[key] == 404:
                    assert ids[key] not in items
                else:
                    reporter = items[ids[key]]["reporter"]
                    assert (reporter is not None) == (expected[key] == SHOWN)
            for key, (name, email) in people.items():
                shown = expected.get(key) == SHOWN or (key == "c" and expected["status_c"] == SHOWN)
                if not shown:
                    assert email not in listing.text and name not in listing.text

        for key in ("a", "b"):
            response = client.get(f"{URL}/{ids[key]}", headers=headers)
            _assert_reporter(response, expected[key], *people[key])

        response = client.patch(f"{URL}/{ids['a']}", json={"title": "A edited"}, headers=headers)
        _assert_reporter(response, expected["patch_a"], *people["a"])

        response = client.post(
            f"{URL}/{ids['c']}/status", json={"status": "withdrawn"}, headers=headers
        )
        _assert_reporter(response, expected["status_c"], *people["c"])

    def test_lead_acceptance_reveals_reporter(self, client, reporter_world) -> None:
        """The same manager sees the reporter once the offered lead is accepted."""
        b = reporter_world["ids"]["b"]
        headers = reporter_world["headers"]["manager_offered_lead"]
        assert client.get(f"{URL}/{b}", headers=headers).json()["reporter"] is None
        with session_scope() as session:
            session.execute(
                update(Assignment).where(Assignment.incident_id == b).values(status="accepted")
            )
        assert client.get(f"{URL}/{b}", headers=headers).json()["reporter"]["contact"] == EMAIL_B

    def test_ended_assignment_hides_incident(self, client, reporter_world) -> None:
        a = reporter_world["ids"]["a"]
        headers = reporter_world["headers"]["manager_accepted_lead"]
        with session_scope() as session:
            session.execute(
                update(Assignment)
                .where(Assignment.incident_id == a, Assignment.role == "lead")
                .values(status="completed")
            )
        response = client.get(f"{URL}/{a}", headers=headers)
        assert response.status_code == 404
        assert EMAIL_A not in response.text


# --- status lifecycle --------------------------------------------------------------------------

#: DESIGN §1, written out independently of the code: transitions a person may make by hand.
BY_HAND = {
    (S.reported, S.triaged),
    (S.reported, S.withdrawn),
    (S.triaged, S.withdrawn),
    (S.reported, S.referred),
    (S.triaged, S.referred),
    (S.dispatched, S.referred),
    (S.in_progress, S.referred),
    (S.dispatched, S.triaged),
    (S.in_progress, S.triaged),
    (S.in_progress, S.resolved),
    (S.resolved, S.closed),
}
#: … and the ones only dispatch makes (by hand → 409).
BY_DISPATCH = {(S.triaged, S.dispatched), (S.dispatched, S.in_progress)}
ALL_PAIRS = list(itertools.product(IncidentStatus, IncidentStatus))


def test_lifecycle_table_matches_design() -> None:
    coded = {(a, b) for a, targets in INCIDENT_TRANSITIONS.items() for b in targets}
    assert coded == BY_HAND | BY_DISPATCH
    assert set(DISPATCH_ONLY_TRANSITIONS) == BY_DISPATCH


class TestStatusTransitions:
    @pytest.mark.parametrize(
        ("current", "target"), ALL_PAIRS, ids=[f"{a}->{b}" for a, b in ALL_PAIRS]
    )
    def test_pair(self, client, admin, current, target) -> None:
        coordinator = make_key("coordinator")
        incident = make_incident()
        set_status_in_db(incident.id, current)
        before_events = events_of(client, incident.id, admin)
        response = client.post(
            f"{URL}/{incident.id}/status",
            json={"status": target, "note": "checked by phone"},
            headers=coordinator,
        )
        events = events_of(client, incident.id, admin)
        row = incident_row(incident.id)
        if (current, target) in BY_HAND:
            assert response.status_code == 200, response.text
            assert response.json()["status"] == target
            assert (row.status, row.version) == (target, 2)
            new = [e for e in events if e not in before_events]
            assert [
                (e["type"], e["from_status"], e["to_status"], e["note"], e["actor_role"])
                for e in new
            ] == [("status_changed", current, target, "checked by phone", "coordinator")]
        else:
            assert response.status_code == 409, response.text
            assert problem_type(response) == "/problems/invalid-transition"
            assert (row.status, row.version) == (current, 1)
            assert events == before_events

    def test_unknown_status(self, client, admin) -> None:
        incident = make_incident()
        response = client.post(
            f"{URL}/{incident.id}/status", json={"status": "lost"}, headers=admin
        )
        assert response.status_code == 422
        assert problem_type(response) == "/problems/validation-error"
        assert incident_row(incident.id).status == "reported"

    def test_partner_may_only_withdraw(self, client, admin) -> None:
        organisation = make_organisation()
        incident = make_incident(organisation_id=str(organisation))
        partner = make_key("partner", organisation_id=organisation)
        response = client.post(
            f"{URL}/{incident.id}/status", json={"status": "triaged"}, headers=partner
        )
        assert response.status_code == 403
        assert incident_row(incident.id).status == "reported"
        response = client.post(
            f"{URL}/{incident.id}/status", json={"status": "withdrawn"}, headers=partner
        )
        assert response.status_code == 200
        assert incident_row(incident.id).status == "withdrawn"


def open_count(manager_id: uuid.UUID) -> int:
    with session_scope(write=False) as session:
        manager = session.get(Manager, manager_id)
        assert manager is not None
        return manager.open_assignments


def assignment_status(assignment_id: uuid.UUID) -> str:
    with session_scope(write=False) as session:
        assignment = session.get(Assignment, assignment_id)
        assert assignment is not None
        return assignment.status


class TestStatusAndAssignments:
    @pytest.mark.parametrize("current", [S.dispatched, S.in_progress])
    def test_back_to_triaged_refused_with_open_assignment(self, client, admin, current) -> None:
        incident = make_incident()
        manager = make_manager()
        status = "offered" if current == S.dispatched else "accepted"
        assignment = make_assignment(incident.id, manager, status=status)
        set_status_in_db(incident.id, current)
        response = client.post(
            f"{URL}/{incident.id}/status", json={"status": "triaged"}, headers=admin
        )
        assert response.status_code == 409
        assert problem_type(response).startswith("/problems/")
        assert incident_row(incident.id).status == current
        assert assignment_status(assignment) == status
        assert open_count(manager) == 1

    @pytest.mark.parametrize("current", [S.dispatched, S.in_progress])
    def test_back_to_triaged_allowed_without_open_assignment(self, client, admin, current) -> None:
        incident = make_incident()
        make_assignment(incident.id, make_manager(), status="declined")
        set_status_in_db(incident.id, current)
        response = client.post(
            f"{URL}/{incident.id}/status", json={"status": "triaged"}, headers=admin
        )
        assert response.status_code == 200, response.text
        assert incident_row(incident.id).status == "triaged"

    @pytest.mark.parametrize(
        ("current", "target"),
        [
            (S.triaged, S.withdrawn),
            (S.reported, S.referred),
            (S.dispatched, S.referred),
            (S.in_progress, S.referred),
        ],
    )
    def test_referred_or_withdrawn_ends_every_open_assignment(
        self, client, admin, current, target
    ) -> None:
        incident = make_incident()
        lead, co, declined = make_manager(), make_manager(), make_manager()
        lead_id = make_assignment(incident.id, lead, role="lead", status="accepted")
        co_id = make_assignment(incident.id, co, role="co", status="offered")
        declined_id = make_assignment(incident.id, declined, role="co", status="declined")
        other_incident = make_incident()
        kept = make_assignment(other_incident.id, lead, role="lead", status="offered")
        set_status_in_db(incident.id, current)
        assert (open_count(lead), open_count(co), open_count(declined)) == (2, 1, 0)

        response = client.post(
            f"{URL}/{incident.id}/status", json={"status": target}, headers=admin
        )
        assert response.status_code == 200, response.text
        assert assignment_status(lead_id) == "withdrawn"
        assert assignment_status(co_id) == "withdrawn"
        assert assignment_status(declined_id) == "declined"
        assert assignment_status(kept) == "offered"
        assert (open_count(lead), open_count(co), open_count(declined)) == (1, 0, 0)
        change = [e for e in events_of(client, incident.id, admin) if e["type"] == "status_changed"]
        assert sorted(change[-1]["data"]["withdrawn_assignments"]) == sorted(
            [str(lead_id), str(co_id)]
        )

    def test_resolved_withdraws_offers_and_keeps_accepted(self, client, admin) -> None:
        incident = make_incident()
        lead, co = make_manager(), make_manager()
        lead_id = make_assignment(incident.id, lead, role="lead", status="accepted")
        co_id = make_assignment(incident.id, co, role="co", status="offered")
        set_status_in_db(incident.id, S.in_progress)
        response = client.post(
            f"{URL}/{incident.id}/status", json={"status": "resolved"}, headers=admin
        )
        assert response.status_code == 200, response.text
        assert assignment_status(lead_id) == "accepted"
        assert assignment_status(co_id) == "withdrawn"
        assert (open_count(lead), open_count(co)) == (1, 0)


class TestNotes:
    def test_add_and_list(self, client, admin) -> None:
        incident = make_incident()
        response = client.post(
            f"{URL}/{incident.id}/notes", json={"text": "  Called back.  "}, headers=admin
        )
        assert response.status_code == 201, response.text
        note = response.json()
        assert (note["text"], note["author_role"]) == ("Called back.", "admin")
        listed = client.get(f"{URL}/{incident.id}/notes", headers=admin).json()["items"]
        assert [n["id"] for n in listed] == [note["id"]]
        events = events_of(client, incident.id, admin)
        assert [e["data"] for e in events if e["type"] == "note_added"] == [{"note_id": note["id"]}]

    def test_empty_note(self, client, admin) -> None:
        incident = make_incident()
        response = client.post(f"{URL}/{incident.id}/notes", json={"text": "   "}, headers=admin)
        assert response.status_code == 422
        assert client.get(f"{URL}/{incident.id}/notes", headers=admin).json()["items"] == []

    def test_assigned_manager_may_add_note(self, client, admin) -> None:
        incident = make_incident()
        manager = make_manager()
        make_assignment(incident.id, manager)
        headers = make_key("manager", manager_id=manager)
        response = client.post(
            f"{URL}/{incident.id}/notes", json={"text": "On my way."}, headers=headers
        )
        assert response.status_code == 201
        assert response.json()["author_role"] == "manager"


class TestTimelineOrder:
    def test_events_of_one_instant_keep_their_order(self, client, admin, fixed_clock) -> None:
        """With the clock pinned every event shares one timestamp; the timeline still reads in
        the order things happened (time-ordered event ids)."""
        created = client.post(URL, json=incident_body(), headers=admin).json()
        steps = ["triaged", "withdrawn"]
        for step in steps:
            response = client.post(
                f"{URL}/{created['id']}/status", json={"status": step}, headers=admin
            )
            assert response.status_code == 200
        client.post(f"{URL}/{created['id']}/notes", json={"text": "after"}, headers=admin)
        events = events_of(client, created["id"], admin)
        assert len({e["at"] for e in events}) == 1
        assert [(e["type"], e["to_status"]) for e in events] == [
            ("created", "reported"),
            ("status_changed", "triaged"),
            ("status_changed", "withdrawn"),
            ("note_added", None),
        ]

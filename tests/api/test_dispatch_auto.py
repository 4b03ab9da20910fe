"""POST /dispatch/auto: the API wiring of the batch planner (its optimality is proven by the
engine's own property test)."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from app.core.db import session_scope
from app.models.assignment import Assignment
from app.models.incident import Incident
from tests.factories import (
    make_dispatch_manager,
    make_incident,
    make_key,
    make_triaged_incident,
    seed_reference,
    table_counts,
)

URL = "/api/v1/dispatch/auto"


@pytest.fixture
def staff(fixed_clock: object) -> dict[str, str]:
    seed_reference()
    return make_key("coordinator")


def statuses() -> dict[uuid.UUID, str]:
    with session_scope(write=False) as session:
        return dict(session.execute(select(Incident.id, Incident.status)).all())  # type: ignore[arg-type]


def open_assignments() -> list[tuple[uuid.UUID, uuid.UUID, str]]:
    with session_scope(write=False) as session:
        return [
            tuple(r)
            for r in session.execute(  # type: ignore[misc]
                select(Assignment.incident_id, Assignment.manager_id, Assignment.role).where(
                    Assignment.status == "offered"
                )
            )
        ]


class TestAutoDispatch:
    def test_dry_run_writes_nothing(self, client, staff) -> None:
        incident = make_triaged_incident()
        manager = make_dispatch_manager()
        before = table_counts()
        response = client.post(URL, headers=staff, json={"dry_run": True})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["dry_run"] is True
        assert [
            (a["incident_id"], a["manager_id"], a["role"], a["status"]) for a in body["assignments"]
        ] == [(str(incident), str(manager), "lead", "planned")]
        assert body["assignments"][0]["reasons"]
        assert body["unassigned"] == []
        assert body["optimal"] is True
        assert table_counts() == before

    def test_offers_and_reasons(self, client, staff) -> None:
        single = make_triaged_incident()
        tandem = make_triaged_incident(escalation_level=4, district="gamma")
        above = make_triaged_incident(escalation_level=8)
        nobody = make_triaged_incident(district="delta", required_competences=["youth_work"])
        lonely = make_triaged_incident(escalation_level=5, district="delta")
        reported = make_incident().id
        alpha = make_dispatch_manager()
        gammas = [make_dispatch_manager(home_district="gamma") for _ in range(2)]
        make_dispatch_manager(home_district="delta")  # one only: the tandem in delta cannot fill
        candidates = client.get(f"/api/v1/incidents/{single}/candidates", headers=staff).json()

        response = client.post(
            URL,
            headers=staff,
            json={
                "incident_ids": [str(i) for i in (single, tandem, above, nobody, lonely, reported)]
            },
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["dry_run"] is False
        unassigned = {u["incident_id"]: u["reason"] for u in body["unassigned"]}
        assert unassigned == {
            str(above): "escalation_above_volunteer_level",
            str(nobody): "no_candidate",
            str(lonely): "no_tandem_partner",
            str(reported): "not_triaged",
        }
        made = {(a["incident_id"], a["manager_id"], a["role"]) for a in body["assignments"]}
        assert (str(single), str(alpha), "lead") in made
        assert {m for i, m, _ in made if i == str(tandem)} == {str(g) for g in gammas}
        assert {r for i, _, r in made if i == str(tandem)} == {"lead", "co"}
        assert all(a["status"] == "offered" and a["id"] for a in body["assignments"])
        # the same scores as the candidates endpoint
        planned = next(a for a in body["assignments"] if a["incident_id"] == str(single))
        assert planned["score"] == candidates["candidates"][0]["score"]
        assert planned["reasons"] == candidates["candidates"][0]["reasons"]
        now = statuses()
        assert now[single] == now[tandem] == "dispatched"
        assert now[above] == now[nobody] == now[lonely] == "triaged"
        assert len(open_assignments()) == 3
        # a second run has nothing left to do for the dispatched ones
        again = client.post(URL, headers=staff, json={"incident_ids": [str(single)]}).json()
        assert again["assignments"] == []
        assert again["unassigned"] == [{"incident_id": str(single), "reason": "not_triaged"}]

    def test_all_triaged_by_default(self, client, staff) -> None:
        first, second = make_triaged_incident(), make_triaged_incident()
        make_incident()  # reported: not part of the default batch
        managers = [make_dispatch_manager(max_open_assignments=1) for _ in range(2)]
        body = client.post(URL, headers=staff, json={}).json()
        assert {a["incident_id"] for a in body["assignments"]} == {str(first), str(second)}
        assert {a["manager_id"] for a in body["assignments"]} == {str(m) for m in managers}
        assert body["unassigned"] == []
        assert client.post(URL, headers=staff).status_code == 200  # body optional

    def test_capacity_respected(self, client, staff) -> None:
        incidents = [make_triaged_incident() for _ in range(3)]
        manager = make_dispatch_manager(max_open_assignments=2)
        body = client.post(URL, headers=staff, json={}).json()
        assert len(body["assignments"]) == 2
        assert [u["reason"] for u in body["unassigned"]] == ["no_candidate"]
        assert {a["manager_id"] for a in body["assignments"]} == {str(manager)}
        assert len(incidents) == 3

    def test_unknown_incident(self, client, staff) -> None:
        known = make_triaged_incident()
        make_dispatch_manager()
        before = table_counts()
        response = client.post(
            URL, headers=staff, json={"incident_ids": [str(known), str(uuid.uuid4())]}
        )
        assert response.status_code == 422
        problem = response.json()
        assert problem["errors"][0]["loc"] == ["body", "incident_ids", 1]
        assert table_counts() == before

    def test_roles(self, client, staff) -> None:
        for role in ("viewer",):
            assert client.post(URL, headers=make_key(role), json={}).status_code == 403
        manager = make_dispatch_manager()
        key = make_key("manager", manager_id=manager)
        assert client.post(URL, headers=key, json={}).status_code == 403

    def test_writes_what_single_offers_write(self, client, staff) -> None:
        from collections import Counter

        from app.models.incident import IncidentEvent
        from app.models.manager import Manager
        from app.models.outbox import OutboxEvent
        from app.models.system import AuditEvent

        incident = make_triaged_incident(escalation_level=4)
        lead, co = make_dispatch_manager(), make_dispatch_manager()
        version = client.get(f"/api/v1/incidents/{incident}", headers=staff).json()["version"]
        body = client.post(URL, headers=staff, json={}).json()
        assert len(body["assignments"]) == 2
        got = client.get(f"/api/v1/incidents/{incident}", headers=staff).json()
        assert got["status"] == "dispatched" and got["version"] == version + 1
        with session_scope(write=False) as session:
            events = Counter(
                session.scalars(
                    select(IncidentEvent.type).where(IncidentEvent.incident_id == incident)
                )
            )
            outbox = Counter(session.scalars(select(OutboxEvent.event_type)))
            payloads = list(session.scalars(select(OutboxEvent.payload)))
            audits = Counter(session.execute(select(AuditEvent.resource, AuditEvent.action)).all())
            counts = {
                m: session.get(Manager, m).open_assignments  # type: ignore[union-attr]
                for m in (lead, co)
            }
        assert events["assignment_offered"] == 2 and events["status_changed"] == 2
        assert outbox["assignment.offered"] == 2
        assert outbox["incident.status_changed"] == 2  # triaged (factory) and dispatched
        assert audits[("assignment", "offer")] == 2 and audits[("incident", "status")] == 2
        assert counts == {lead: 1, co: 1}
        assert "erika@example.org" not in str(payloads)
        listed = client.get(f"/api/v1/assignments?incident_id={incident}", headers=staff).json()
        assert {a["id"] for a in listed["items"]} == {a["id"] for a in body["assignments"]}
        # the batch's entries list in the order written, as a single offer's (time-ordered ids)
        timeline = client.get(f"/api/v1/incidents/{incident}/events", headers=staff).json()
        batch = timeline["items"][-3:]
        assert [e["type"] for e in batch] == [
            "assignment_offered",
            "assignment_offered",
            "status_changed",
        ]
        assert [e["data"]["assignment_id"] for e in batch[:2]] == [
            a["id"] for a in sorted(body["assignments"], key=lambda a: a["role"] != "lead")
        ]

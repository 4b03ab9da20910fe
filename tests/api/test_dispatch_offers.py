"""Offers: POST /assignments and accept / decline / complete / withdraw, with the incident lifecycle
that follows them (DESIGN §1 Assignment, Tandem; §2)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from app.core import clock as clock_module
from app.core.db import session_scope
from app.models.assignment import Assignment
from app.models.incident import Incident, IncidentEvent
from app.models.manager import Manager
from app.models.outbox import OutboxEvent
from app.models.system import AuditEvent
from tests.factories import (
    make_dispatch_manager,
    make_incident,
    make_key,
    make_organisation,
    make_triaged_incident,
    seed_reference,
    table_counts,
)

NOW = datetime(2026, 6, 15, 10, 0, tzinfo=UTC)


@pytest.fixture
def staff(fixed_clock: object) -> dict[str, str]:
    seed_reference()
    return make_key("coordinator")


def offer(
    client: Any,
    headers: dict[str, str],
    incident: uuid.UUID,
    manager: uuid.UUID | None = None,
    role: str | None = None,
    status: int = 201,
) -> dict[str, Any]:
    body: dict[str, Any] = {"incident_id": str(incident)}
    if manager is not None:
        body["manager_id"] = str(manager)
    if role is not None:
        body["role"] = role
    response = client.post("/api/v1/assignments", headers=headers, json=body)
    assert response.status_code == status, response.text
    return response.json()


def answer(
    client: Any,
    headers: dict[str, str],
    assignment_id: str,
    action: str,
    body: dict[str, Any] | None = None,
    status: int = 200,
) -> dict[str, Any]:
    response = client.post(
        f"/api/v1/assignments/{assignment_id}/{action}", headers=headers, json=body
    )
    assert response.status_code == status, response.text
    return response.json()


def incident_status(incident_id: uuid.UUID) -> str:
    with session_scope(write=False) as session:
        return session.get(Incident, incident_id).status  # type: ignore[union-attr]


def events(incident_id: uuid.UUID) -> list[str]:
    with session_scope(write=False) as session:
        return list(
            session.scalars(
                select(IncidentEvent.type).where(IncidentEvent.incident_id == incident_id)
            )
        )


def assignments(incident_id: uuid.UUID) -> list[Assignment]:
    with session_scope(write=False) as session:
        return list(
            session.scalars(
                select(Assignment)
                .where(Assignment.incident_id == incident_id)
                .order_by(Assignment.created_at, Assignment.id)
            )
        )


def open_count(manager_id: uuid.UUID) -> int:
    with session_scope(write=False) as session:
        return session.get(Manager, manager_id).open_assignments  # type: ignore[union-attr]


def outbox_types() -> list[str]:
    with session_scope(write=False) as session:
        return list(
            session.scalars(select(OutboxEvent.event_type).order_by(OutboxEvent.created_at))
        )


def manager_key(manager_id: uuid.UUID) -> dict[str, str]:
    return make_key("manager", manager_id=manager_id)


class TestCreateAssignment:
    def test_manual_pick(self, client, staff) -> None:
        incident = make_triaged_incident()
        manager = make_dispatch_manager(display_name="Mara")
        body = offer(client, staff, incident, manager)
        assert body["status"] == "offered"
        assert body["role"] == "lead"
        assert body["manager_id"] == str(manager)
        assert body["manager_display_name"] == "Mara"
        assert body["offered_at"] == "2026-06-15T10:00:00Z"
        assert body["expires_at"] == "2026-06-17T10:00:00Z"  # KOKOMA_OFFER_TTL_HOURS = 48
        assert body["score"] > 0 and body["reasons"]
        assert "email" not in body and "phone" not in body
        assert incident_status(incident) == "dispatched"
        assert {"assignment_offered", "status_changed"} <= set(events(incident))
        assert "assignment.offered" in outbox_types()
        assert open_count(manager) == 1
        with session_scope(write=False) as session:
            payload = session.scalars(
                select(OutboxEvent.payload).where(OutboxEvent.event_type == "assignment.offered")
            ).one()
            audited = session.scalar(
                select(func.count())
                .select_from(AuditEvent)
                .where(AuditEvent.resource == "assignment", AuditEvent.action == "offer")
            )
        assert payload["assignment"]["id"] == body["id"]
        assert "@" not in str(payload)
        assert audited == 1

    def test_auto_pick_takes_the_best(self, client, staff) -> None:
        incident = make_triaged_incident()
        make_dispatch_manager(home_district="gamma", districts=["alpha"])
        best = make_dispatch_manager()
        body = offer(client, staff, incident)
        assert body["manager_id"] == str(best)
        assert body["reasons"][0] == {
            "factor": "district",
            "value": 1.0,
            "weight": 0.35,
            "detail": "home district",
        }

    def test_auto_pick_refused_above_volunteer_level(self, client, staff) -> None:
        incident = make_triaged_incident(escalation_level=7)
        manager = make_dispatch_manager()
        problem = offer(client, staff, incident, status=409)
        assert problem["type"] == "/problems/escalation-above-volunteer-level"
        assert incident_status(incident) == "triaged"
        offer(client, staff, incident, manager)  # by hand it is allowed

    def test_no_candidate(self, client, staff) -> None:
        incident = make_triaged_incident()
        make_dispatch_manager(home_district="delta")
        before = table_counts()
        problem = offer(client, staff, incident, status=409)
        assert problem["type"] == "/problems/no-candidate"
        assert table_counts() == before

    def test_incident_not_triaged(self, client, staff) -> None:
        incident = make_incident().id
        manager = make_dispatch_manager()
        problem = offer(client, staff, incident, manager, status=409)
        assert problem["type"] == "/problems/incident-not-dispatchable"
        assert open_count(manager) == 0

    def test_unknown_incident_and_manager(self, client, staff) -> None:
        incident = make_triaged_incident()
        assert offer(client, staff, uuid.uuid4(), status=404)["type"] == "/problems/not-found"
        problem = offer(client, staff, incident, uuid.uuid4(), status=422)
        assert problem["errors"][0]["loc"] == ["body", "manager_id"]

    def test_unknown_field(self, client, staff) -> None:
        incident = make_triaged_incident()
        response = client.post(
            "/api/v1/assignments", headers=staff, json={"incident_id": str(incident), "priority": 1}
        )
        assert response.status_code == 422

    def test_slots(self, client, staff) -> None:
        incident = make_triaged_incident()  # level 3: no tandem
        first, second = make_dispatch_manager(), make_dispatch_manager()
        offer(client, staff, incident, first)
        assert offer(client, staff, incident, second, status=409)["type"] == "/problems/slot-taken"
        assert (
            offer(client, staff, incident, second, role="lead", status=409)["type"]
            == "/problems/slot-taken"
        )
        assert (
            offer(client, staff, incident, second, role="co", status=409)["type"]
            == "/problems/not-tandem"
        )
        assert open_count(second) == 0

    def test_tandem_default_roles(self, client, staff) -> None:
        incident = make_triaged_incident(escalation_level=4)
        managers = [make_dispatch_manager() for _ in range(3)]
        assert offer(client, staff, incident, managers[0])["role"] == "lead"
        assert offer(client, staff, incident, managers[1])["role"] == "co"
        assert offer(client, staff, incident, managers[2], status=409)["type"] == (
            "/problems/slot-taken"
        )

    def test_roles(self, client, staff) -> None:
        incident = make_triaged_incident()
        manager = make_dispatch_manager()
        for headers in (
            make_key("viewer"),
            manager_key(manager),
            make_key("partner", organisation_id=make_organisation()),
        ):
            response = client.post(
                "/api/v1/assignments", headers=headers, json={"incident_id": str(incident)}
            )
            assert response.status_code == 403
        assert incident_status(incident) == "triaged"

    def test_dispatched_by_hand_is_refused(self, client, staff) -> None:
        incident = make_triaged_incident()
        response = client.post(
            f"/api/v1/incidents/{incident}/status", headers=staff, json={"status": "dispatched"}
        )
        assert response.status_code == 409


class TestAccept:
    def test_lead_accept_starts_the_incident(self, client, staff) -> None:
        incident = make_triaged_incident()
        manager = make_dispatch_manager()
        created = offer(client, staff, incident, manager)
        accepted = answer(client, manager_key(manager), created["id"], "accept")
        assert accepted["status"] == "accepted"
        assert accepted["responded_at"] == "2026-06-15T10:00:00Z"
        assert incident_status(incident) == "in_progress"
        assert "assignment.accepted" in outbox_types()
        again = answer(client, manager_key(manager), created["id"], "accept")
        assert again == accepted  # idempotent
        assert events(incident).count("assignment_accepted") == 1
        problem = answer(
            client,
            manager_key(manager),
            created["id"],
            "decline",
            {"reason": "changed my mind"},
            status=409,
        )
        assert problem["type"] == "/problems/offer-not-open"

    def test_tandem_needs_both(self, client, staff) -> None:
        incident = make_triaged_incident(escalation_level=5)
        lead, co = make_dispatch_manager(), make_dispatch_manager()
        lead_offer = offer(client, staff, incident, lead)
        co_offer = offer(client, staff, incident, co)
        answer(client, manager_key(lead), lead_offer["id"], "accept")
        assert incident_status(incident) == "dispatched"
        answer(client, manager_key(co), co_offer["id"], "accept")
        assert incident_status(incident) == "in_progress"

    def test_tandem_co_first(self, client, staff) -> None:
        incident = make_triaged_incident(escalation_level=4)
        lead, co = make_dispatch_manager(), make_dispatch_manager()
        lead_offer = offer(client, staff, incident, lead)
        co_offer = offer(client, staff, incident, co)
        answer(client, staff, co_offer["id"], "accept")  # a coordinator on the manager's behalf
        assert incident_status(incident) == "dispatched"
        answer(client, staff, lead_offer["id"], "accept")
        assert incident_status(incident) == "in_progress"

    def test_expired_offer(self, client, staff) -> None:
        incident = make_triaged_incident()
        manager = make_dispatch_manager()
        created = offer(client, staff, incident, manager)
        clock_module.set_clock(
            clock_module.Clock(tz=clock_module.get_clock().tz, fixed_now=NOW + timedelta(hours=49))
        )
        problem = answer(client, manager_key(manager), created["id"], "accept", status=409)
        assert problem["type"] == "/problems/offer-not-open"
        assert assignments(incident)[0].status == "offered"  # the worker expires it

    def test_only_own_offers(self, client, staff) -> None:
        incident = make_triaged_incident()
        manager, other = make_dispatch_manager(), make_dispatch_manager()
        created = offer(client, staff, incident, manager)
        response = client.post(
            f"/api/v1/assignments/{created['id']}/accept", headers=manager_key(other)
        )
        assert response.status_code == 404
        assert assignments(incident)[0].status == "offered"
        partner = make_key("partner", organisation_id=make_organisation())
        assert (
            client.post(f"/api/v1/assignments/{created['id']}/accept", headers=partner).status_code
            == 403
        )

    def test_unknown(self, client, staff) -> None:
        response = client.post(f"/api/v1/assignments/{uuid.uuid4()}/accept", headers=staff)
        assert response.status_code == 404


class TestDecline:
    def test_next_candidate_offered(self, client, staff) -> None:
        incident = make_triaged_incident()
        first = make_dispatch_manager()
        second = make_dispatch_manager(home_district="gamma", districts=["alpha"])
        created = offer(client, staff, incident, first)
        declined = answer(
            client, manager_key(first), created["id"], "decline", {"reason": "on holiday"}
        )
        assert declined["status"] == "declined"
        assert declined["decline_reason"] == "on holiday"
        rows = assignments(incident)
        assert sorted((str(r.manager_id), r.status, r.role) for r in rows) == sorted(
            [(str(first), "declined", "lead"), (str(second), "offered", "lead")]
        )
        assert incident_status(incident) == "dispatched"
        assert open_count(first) == 0 and open_count(second) == 1
        assert "assignment.declined" in outbox_types()
        again = answer(client, manager_key(first), created["id"], "decline", {"reason": "other"})
        assert again == declined  # idempotent
        assert len(assignments(incident)) == 2
        problem = answer(client, manager_key(first), created["id"], "accept", status=409)
        assert problem["type"] == "/problems/offer-not-open"

    def test_none_left_back_to_triaged(self, client, staff) -> None:
        incident = make_triaged_incident()
        only = make_dispatch_manager()
        created = offer(client, staff, incident, only)
        answer(client, manager_key(only), created["id"], "decline", {"reason": "no time"})
        assert incident_status(incident) == "triaged"
        assert "no_candidate" in events(incident)
        assert open_count(only) == 0

    def test_lead_gone_withdraws_co(self, client, staff) -> None:
        incident = make_triaged_incident(escalation_level=4)
        lead, co = make_dispatch_manager(), make_dispatch_manager()
        lead_offer = offer(client, staff, incident, lead)
        co_offer = offer(client, staff, incident, co)
        answer(client, manager_key(co), co_offer["id"], "accept")
        answer(client, manager_key(lead), lead_offer["id"], "decline", {"reason": "ill"})
        # nobody else: back to the queue, the accepted co is withdrawn
        assert incident_status(incident) == "triaged"
        assert {r.manager_id: r.status for r in assignments(incident)} == {
            lead: "declined",
            co: "withdrawn",
        }
        assert open_count(co) == 0

    def test_co_gone_keeps_status(self, client, staff) -> None:
        incident = make_triaged_incident(escalation_level=4)
        lead, co = make_dispatch_manager(), make_dispatch_manager()
        offer(client, staff, incident, lead)
        co_offer = offer(client, staff, incident, co)
        answer(client, manager_key(co), co_offer["id"], "decline", {"reason": "ill"})
        assert incident_status(incident) == "dispatched"
        assert {r.manager_id: r.status for r in assignments(incident)} == {
            lead: "offered",
            co: "declined",
        }

    def test_glasl_gate_on_refill(self, client, staff) -> None:
        incident = make_triaged_incident(escalation_level=7)
        first, spare = make_dispatch_manager(), make_dispatch_manager()
        created = offer(client, staff, incident, first)
        answer(client, manager_key(first), created["id"], "decline", {"reason": "too heavy"})
        assert "coordinator_pick_required" in events(incident)
        assert open_count(spare) == 0  # never offered automatically above the volunteer level
        assert incident_status(incident) == "triaged"

    def test_reason_required(self, client, staff) -> None:
        incident = make_triaged_incident()
        manager = make_dispatch_manager()
        created = offer(client, staff, incident, manager)
        answer(client, manager_key(manager), created["id"], "decline", {}, status=422)
        answer(client, manager_key(manager), created["id"], "decline", {"reason": " "}, status=422)
        assert assignments(incident)[0].status == "offered"


class TestComplete:
    def test_complete(self, client, staff) -> None:
        incident = make_triaged_incident()
        manager = make_dispatch_manager()
        created = offer(client, staff, incident, manager)
        problem = answer(
            client, manager_key(manager), created["id"], "complete", {"outcome": "done"}, status=409
        )
        assert problem["type"] == "/problems/assignment-not-accepted"
        answer(client, manager_key(manager), created["id"], "accept")
        done = answer(
            client,
            manager_key(manager),
            created["id"],
            "complete",
            {"outcome": "agreement reached"},
        )
        assert done["status"] == "completed" and done["outcome"] == "agreement reached"
        assert open_count(manager) == 0
        assert (
            answer(client, manager_key(manager), created["id"], "complete", {"outcome": "again"})
            == done
        )
        assert incident_status(incident) == "in_progress"


class TestWithdraw:
    def test_withdraw_accepted_in_progress_reoffers(self, client, staff) -> None:
        incident = make_triaged_incident()
        first, second = make_dispatch_manager(), make_dispatch_manager()
        created = offer(client, staff, incident, first)
        answer(client, manager_key(first), created["id"], "accept")
        assert incident_status(incident) == "in_progress"
        withdrawn = answer(client, staff, created["id"], "withdraw", {"reason": "moved away"})
        assert withdrawn["status"] == "withdrawn"
        assert withdrawn["withdraw_reason"] == "moved away"
        assert incident_status(incident) == "in_progress"
        rows = {r.manager_id: r.status for r in assignments(incident)}
        assert rows == {first: "withdrawn", second: "offered"}
        assert open_count(first) == 0 and open_count(second) == 1
        assert answer(client, staff, created["id"], "withdraw") == withdrawn

    def test_withdraw_offer_without_body(self, client, staff) -> None:
        incident = make_triaged_incident()
        manager = make_dispatch_manager()
        created = offer(client, staff, incident, manager)
        response = client.post(f"/api/v1/assignments/{created['id']}/withdraw", headers=staff)
        assert response.status_code == 200, response.text
        assert incident_status(incident) == "triaged"
        problem = answer(client, manager_key(manager), created["id"], "accept", status=409)
        assert problem["type"] == "/problems/offer-not-open"

    def test_manager_cannot_withdraw(self, client, staff) -> None:
        incident = make_triaged_incident()
        manager = make_dispatch_manager()
        created = offer(client, staff, incident, manager)
        response = client.post(
            f"/api/v1/assignments/{created['id']}/withdraw", headers=manager_key(manager), json={}
        )
        assert response.status_code == 403


class TestRead:
    def test_scopes(self, client, staff) -> None:
        organisation = make_organisation()
        ours = make_triaged_incident(organisation_id=str(organisation))
        theirs = make_triaged_incident()
        mine, other = make_dispatch_manager(), make_dispatch_manager()
        a = offer(client, staff, ours, mine)
        b = offer(client, staff, theirs, other)
        answer(client, manager_key(mine), a["id"], "decline", {"reason": "personal matter"})

        listed = client.get("/api/v1/assignments", headers=staff).json()
        assert {i["id"] for i in listed["items"]} >= {a["id"], b["id"]}

        own = client.get("/api/v1/assignments", headers=manager_key(mine)).json()["items"]
        assert [i["id"] for i in own] == [a["id"]]
        assert (
            client.get(f"/api/v1/assignments/{b['id']}", headers=manager_key(mine)).status_code
            == 404
        )
        foreign = client.get(
            f"/api/v1/assignments?manager_id={other}", headers=manager_key(mine)
        ).json()
        assert foreign["items"] == []

        partner = make_key("partner", organisation_id=organisation)
        seen = client.get("/api/v1/assignments", headers=partner).json()["items"]
        assert {i["incident_id"] for i in seen} == {str(ours)}
        assert all(i["decline_reason"] is None for i in seen)
        assert client.get(f"/api/v1/assignments/{b['id']}", headers=partner).status_code == 404
        got = client.get(f"/api/v1/assignments/{a['id']}", headers=partner)
        assert got.status_code == 200 and got.json()["status"] == "declined"
        assert client.get("/api/v1/assignments", headers=make_key("viewer")).status_code == 403

    def test_filters_and_pages(self, client, staff) -> None:
        managers = [make_dispatch_manager() for _ in range(3)]
        incidents = [make_triaged_incident() for _ in range(3)]
        made = [offer(client, staff, i, m) for i, m in zip(incidents, managers, strict=True)]
        answer(client, staff, made[0]["id"], "accept")
        accepted = client.get("/api/v1/assignments?status=accepted", headers=staff).json()
        assert [i["id"] for i in accepted["items"]] == [made[0]["id"]]
        by_incident = client.get(
            f"/api/v1/assignments?incident_id={incidents[1]}", headers=staff
        ).json()
        assert [i["id"] for i in by_incident["items"]] == [made[1]["id"]]
        seen: list[str] = []
        url = "/api/v1/assignments?limit=2"
        while url:
            page = client.get(url, headers=staff).json()
            seen += [i["id"] for i in page["items"]]
            url = (
                f"/api/v1/assignments?limit=2&cursor={page['next_cursor']}"
                if page["next_cursor"]
                else ""
            )
        assert sorted(seen) == sorted(m["id"] for m in made)
        bad = client.get("/api/v1/assignments?status=lost", headers=staff)
        assert bad.status_code == 422

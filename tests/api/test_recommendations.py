"""Recommendations: create, list (filters, overdue in SQL), PATCH, lifecycle, progress rules,
timeline, outbox, audit, the steering group's report, roles and the demo seed."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import func, select

from app.core.db import session_scope
from app.models.outbox import OutboxEvent
from app.models.recommendation import Recommendation, RecommendationEvent
from app.models.system import AuditEvent
from tests.factories import (
    make_incident,
    make_key,
    make_organisation,
    make_recommendation,
    recommendation_body,
    seed_reference,
)

BASE = "/api/v1/recommendations"
PROBLEM = "application/problem+json"

# Every status and the path that reaches it from draft.
PATHS: dict[str, list[str]] = {
    "draft": [],
    "submitted": ["submitted"],
    "accepted": ["submitted", "accepted"],
    "rejected": ["submitted", "rejected"],
    "in_implementation": ["submitted", "accepted", "in_implementation"],
    "implemented": ["submitted", "accepted", "in_implementation", "implemented"],
    "withdrawn": ["withdrawn"],
}
ALLOWED = {
    ("draft", "submitted"),
    ("draft", "withdrawn"),
    ("submitted", "accepted"),
    ("submitted", "rejected"),
    ("submitted", "withdrawn"),
    ("accepted", "in_implementation"),
    ("accepted", "withdrawn"),
    ("rejected", "withdrawn"),
    ("in_implementation", "implemented"),
    ("in_implementation", "withdrawn"),
}


@pytest.fixture
def world(fixed_clock: Any) -> dict[str, Any]:
    """Reference data, two organisations and keys for each role (today = 2026-06-15)."""
    seed_reference()
    steering = make_organisation("Lenkungsgruppe", "steering_group")
    city = make_organisation("Amt für Soziales", "city_department")
    ngo = make_organisation("NGO", "ngo")
    return {
        "steering": steering,
        "city": city,
        "ngo": ngo,
        "admin": make_key("admin"),
        "coordinator": make_key("coordinator"),
        "viewer": make_key("viewer"),
        "partner": make_key("partner", organisation_id=ngo),
    }


def _body(world: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    return recommendation_body(world["steering"], world["city"], **overrides)


def _make(world: dict[str, Any], statuses: Any = (), **overrides: Any) -> uuid.UUID:
    return make_recommendation(world["steering"], world["city"], statuses=statuses, **overrides)


def _problem(response: Any, status: int, type_: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["type"] == f"/problems/{type_}"
    return body


def _row(rec_id: uuid.UUID | str) -> Recommendation:
    with session_scope(write=False) as session:
        rec = session.get(Recommendation, uuid.UUID(str(rec_id)))
        assert rec is not None
        return rec


def _count(model: Any, *where: Any) -> int:
    with session_scope(write=False) as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def _events(rec_id: uuid.UUID | str) -> list[RecommendationEvent]:
    with session_scope(write=False) as session:
        return list(
            session.scalars(
                select(RecommendationEvent)
                .where(RecommendationEvent.recommendation_id == uuid.UUID(str(rec_id)))
                .order_by(RecommendationEvent.seq)
            )
        )


class TestCreateRecommendation:
    def test_valid(self, client: Any, world: dict[str, Any]) -> None:
        incident = make_incident(title="Threats at the youth club")
        response = client.post(
            BASE,
            json=_body(world, incident_ids=[str(incident.id)], districts=["beta", "alpha"]),
            headers=world["coordinator"],
        )
        assert response.status_code == 201, response.text
        rec = response.json()
        assert rec["reference"] == "REC-2026-001"
        assert rec["status"] == "draft"
        assert rec["progress"] == 0
        assert rec["overdue"] is False
        assert rec["districts"] == ["alpha", "beta"]
        assert rec["incident_ids"] == [str(incident.id)]
        assert rec["evidence"] == [
            {
                "incident_id": str(incident.id),
                "reference": incident.reference,
                "title": "Threats at the youth club",
            }
        ]
        assert response.headers["ETag"] == '"1"'
        assert response.headers["Location"] == f"{BASE}/{rec['id']}"
        events = _events(rec["id"])
        assert [e.type for e in events] == ["created"]
        assert events[0].actor_role == "coordinator" and events[0].actor_id is not None
        assert (
            _count(
                AuditEvent, AuditEvent.resource == "recommendation", AuditEvent.action == "create"
            )
            == 1
        )

    def test_references_count_up(self, client: Any, world: dict[str, Any]) -> None:
        refs = [
            client.post(BASE, json=_body(world, title=f"R {i}"), headers=world["admin"]).json()[
                "reference"
            ]
            for i in range(3)
        ]
        assert refs == ["REC-2026-001", "REC-2026-002", "REC-2026-003"]

    def test_evidence_never_carries_reporter_data(self, client: Any, world: dict[str, Any]) -> None:
        incident = make_incident(
            reporter={"name": "Erika Muster", "contact": "erika@example.org", "anonymous": False}
        )
        rec_id = _make(world, incident_ids=[str(incident.id)])
        for role in ("admin", "coordinator", "viewer"):
            response = client.get(f"{BASE}/{rec_id}", headers=world[role])
            assert response.status_code == 200
            assert "Erika" not in response.text and "erika@example.org" not in response.text
            assert set(response.json()["evidence"][0]) == {"incident_id", "reference", "title"}

    def test_unknown_references(self, client: Any, world: dict[str, Any]) -> None:
        for overrides, loc in (
            ({"districts": ["alpha", "atlantis"]}, "districts"),
            ({"incident_ids": [str(uuid.uuid4())]}, "incident_ids"),
            ({"addressee": str(uuid.uuid4())}, "addressee"),
            ({"issued_by": str(uuid.uuid4())}, "issued_by"),
        ):
            response = client.post(BASE, json=_body(world, **overrides), headers=world["admin"])
            body = _problem(response, 422, "validation-error")
            assert body["errors"][0]["loc"] == ["body", loc]
        assert _count(Recommendation) == 0

    def test_invalid_body(self, client: Any, world: dict[str, Any]) -> None:
        for overrides in (
            {"progress": 101},
            {"progress": -1},
            {"category": "gossip"},
            {"status": "accepted"},
            {"colour": "red"},
            {"title": ""},
            {"due_on": "tomorrow"},
        ):
            response = client.post(BASE, json=_body(world, **overrides), headers=world["admin"])
            _problem(response, 422, "validation-error")
        assert _count(Recommendation) == 0

    def test_progress_100_needs_implemented(self, client: Any, world: dict[str, Any]) -> None:
        response = client.post(BASE, json=_body(world, progress=100), headers=world["admin"])
        _problem(response, 409, "progress-requires-implemented")
        assert _count(Recommendation) == 0


class TestListRecommendations:
    def test_filters(self, client: Any, world: dict[str, Any]) -> None:
        other = make_organisation("Ordnungsamt", "city_department")
        overdue = _make(world, title="late", due_on="2026-06-14", districts=["alpha"])
        on_time = _make(
            world,
            ["submitted"],
            title="due today",
            due_on="2026-06-15",
            districts=["beta"],
            category="prevention",
        )
        done_late = _make(
            world, PATHS["implemented"], title="done", due_on="2026-01-01", districts=[]
        )
        no_due = _make(world, ["submitted", "rejected"], title="no due", due_on=None)
        other_addr = make_recommendation(world["steering"], other, title="other", due_on=None)
        headers = world["viewer"]

        def ids(**params: Any) -> set[str]:
            response = client.get(BASE, params=params, headers=headers)
            assert response.status_code == 200, response.text
            return {item["id"] for item in response.json()["items"]}

        everything = {str(x) for x in (overdue, on_time, done_late, no_due, other_addr)}
        assert ids() == everything
        assert ids(overdue="true") == {str(overdue)}
        assert ids(overdue="false") == everything - {str(overdue)}
        assert ids(status=["draft", "rejected"]) == {str(overdue), str(no_due), str(other_addr)}
        assert ids(category="prevention") == {str(on_time)}
        assert ids(addressee=str(other)) == {str(other_addr)}
        assert ids(district="beta") == {str(on_time)}
        assert ids(district="alpha", overdue="true") == {str(overdue)}
        listed = client.get(BASE, params={"overdue": "true"}, headers=headers).json()["items"]
        assert listed[0]["overdue"] is True

    def test_unknown_status_filter(self, client: Any, world: dict[str, Any]) -> None:
        _problem(
            client.get(BASE, params={"status": "lost"}, headers=world["admin"]),
            422,
            "validation-error",
        )

    def test_keyset_pagination(self, client: Any, world: dict[str, Any]) -> None:
        made = {str(_make(world, title=f"R {i}")) for i in range(5)}
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 2}
            if cursor:
                params["cursor"] = cursor
            page = client.get(BASE, params=params, headers=world["admin"]).json()
            seen += [item["id"] for item in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert len(seen) == 5 and set(seen) == made

    def test_bad_cursor(self, client: Any, world: dict[str, Any]) -> None:
        _problem(
            client.get(BASE, params={"cursor": "!!"}, headers=world["admin"]), 400, "invalid-cursor"
        )


class TestGetRecommendation:
    def test_found(self, client: Any, world: dict[str, Any]) -> None:
        rec_id = _make(world)
        response = client.get(f"{BASE}/{rec_id}", headers=world["viewer"])
        assert response.status_code == 200
        assert response.headers["ETag"] == '"1"'
        assert response.json()["body"].startswith("## Why")

    def test_unknown(self, client: Any, world: dict[str, Any]) -> None:
        _problem(client.get(f"{BASE}/{uuid.uuid4()}", headers=world["admin"]), 404, "not-found")

    def test_report_is_not_taken_for_an_id(self, client: Any, world: dict[str, Any]) -> None:
        response = client.get(
            f"{BASE}/report", headers={**world["admin"], "Accept": "application/json"}
        )
        assert response.status_code == 200
        assert response.json()["total"] == 0


class TestUpdateRecommendation:
    def test_edit_fields(self, client: Any, world: dict[str, Any]) -> None:
        rec_id = _make(world)
        incident = make_incident()
        response = client.patch(
            f"{BASE}/{rec_id}",
            json={
                "title": "Revised concept",
                "districts": ["gamma"],
                "incident_ids": [str(incident.id)],
                "due_on": None,
            },
            headers={**world["coordinator"], "If-Match": '"1"'},
        )
        assert response.status_code == 200, response.text
        rec = response.json()
        assert rec["title"] == "Revised concept"
        assert rec["districts"] == ["gamma"]
        assert rec["evidence"][0]["reference"] == incident.reference
        assert rec["due_on"] is None
        assert rec["version"] == 2 and response.headers["ETag"] == '"2"'
        updated = [e for e in _events(rec_id) if e.type == "updated"]
        assert updated[0].data == {"fields": ["districts", "due_on", "incident_ids", "title"]}
        assert (
            _count(
                AuditEvent, AuditEvent.resource == "recommendation", AuditEvent.action == "update"
            )
            == 1
        )

    def test_no_change_keeps_the_version(self, client: Any, world: dict[str, Any]) -> None:
        rec_id = _make(world)
        response = client.patch(
            f"{BASE}/{rec_id}",
            json={"title": "Deployment concept for the conflict managers"},
            headers=world["admin"],
        )
        assert response.status_code == 200
        assert response.json()["version"] == 1

    def test_stale_if_match(self, client: Any, world: dict[str, Any]) -> None:
        rec_id = _make(world)
        response = client.patch(
            f"{BASE}/{rec_id}", json={"title": "x"}, headers={**world["admin"], "If-Match": '"7"'}
        )
        _problem(response, 412, "stale-version")
        assert _row(rec_id).title == "Deployment concept for the conflict managers"

    def test_status_is_read_only(self, client: Any, world: dict[str, Any]) -> None:
        rec_id = _make(world)
        response = client.patch(
            f"{BASE}/{rec_id}", json={"status": "accepted"}, headers=world["admin"]
        )
        _problem(response, 422, "validation-error")
        assert _row(rec_id).status == "draft"

    def test_null_for_required_field(self, client: Any, world: dict[str, Any]) -> None:
        rec_id = _make(world)
        for field in ("title", "category", "addressee", "issued_by", "progress"):
            response = client.patch(f"{BASE}/{rec_id}", json={field: None}, headers=world["admin"])
            _problem(response, 422, "validation-error")
        assert _row(rec_id).version == 1

    def test_unknown_district(self, client: Any, world: dict[str, Any]) -> None:
        rec_id = _make(world)
        response = client.patch(
            f"{BASE}/{rec_id}", json={"districts": ["atlantis"]}, headers=world["admin"]
        )
        _problem(response, 422, "validation-error")
        assert _row(rec_id).version == 1

    def test_unknown_id(self, client: Any, world: dict[str, Any]) -> None:
        _problem(
            client.patch(f"{BASE}/{uuid.uuid4()}", json={"title": "x"}, headers=world["admin"]),
            404,
            "not-found",
        )


class TestProgress:
    def test_increase(self, client: Any, world: dict[str, Any]) -> None:
        rec_id = _make(world, PATHS["in_implementation"])
        response = client.patch(f"{BASE}/{rec_id}", json={"progress": 40}, headers=world["admin"])
        assert response.status_code == 200
        assert response.json()["progress"] == 40
        event = _events(rec_id)[-1]
        assert event.type == "progress_changed" and event.data == {"from": 0, "to": 40}

    def test_decrease_without_note_is_refused(self, client: Any, world: dict[str, Any]) -> None:
        rec_id = _make(world, PATHS["in_implementation"], progress=50)
        before = len(_events(rec_id))
        response = client.patch(
            f"{BASE}/{rec_id}", json={"progress": 30, "title": "changed"}, headers=world["admin"]
        )
        _problem(response, 409, "progress-decrease")
        row = _row(rec_id)
        assert (row.progress, row.title, row.version) == (
            50,
            "Deployment concept for the conflict managers",
            4,
        )
        assert len(_events(rec_id)) == before

    def test_reset_with_note(self, client: Any, world: dict[str, Any]) -> None:
        rec_id = _make(world, PATHS["in_implementation"], progress=50)
        response = client.patch(
            f"{BASE}/{rec_id}",
            json={"progress": 10, "reset_note": "Budget cut: the concept starts over."},
            headers=world["coordinator"],
        )
        assert response.status_code == 200, response.text
        assert response.json()["progress"] == 10
        event = _events(rec_id)[-1]
        assert event.type == "progress_reset"
        assert event.note == "Budget cut: the concept starts over."
        assert event.data == {"from": 50, "to": 10}
        assert event.actor_role == "coordinator"

    def test_reset_note_without_a_decrease(self, client: Any, world: dict[str, Any]) -> None:
        rec_id = _make(world, progress=50)
        for body in (
            {"progress": 50, "reset_note": "why"},
            {"progress": 60, "reset_note": "why"},
            {"reset_note": "why"},
        ):
            _problem(
                client.patch(f"{BASE}/{rec_id}", json=body, headers=world["admin"]),
                422,
                "validation-error",
            )
        row = _row(rec_id)
        assert (row.progress, row.version) == (50, 1)

    def test_blank_reset_note(self, client: Any, world: dict[str, Any]) -> None:
        rec_id = _make(world, progress=50)
        response = client.patch(
            f"{BASE}/{rec_id}", json={"progress": 10, "reset_note": "  "}, headers=world["admin"]
        )
        _problem(response, 422, "validation-error")
        assert _row(rec_id).progress == 50

    def test_out_of_range(self, client: Any, world: dict[str, Any]) -> None:
        rec_id = _make(world)
        for value in (101, -5, 2.5, "ten"):
            _problem(
                client.patch(f"{BASE}/{rec_id}", json={"progress": value}, headers=world["admin"]),
                422,
                "validation-error",
            )
        assert _row(rec_id).progress == 0

    def test_100_only_by_implementing(self, client: Any, world: dict[str, Any]) -> None:
        rec_id = _make(world, PATHS["in_implementation"], progress=90)
        _problem(
            client.patch(f"{BASE}/{rec_id}", json={"progress": 100}, headers=world["admin"]),
            409,
            "progress-requires-implemented",
        )
        assert _row(rec_id).progress == 90
        response = client.post(
            f"{BASE}/{rec_id}/status", json={"status": "implemented"}, headers=world["admin"]
        )
        assert response.status_code == 200
        assert response.json()["progress"] == 100
        assert response.json()["implemented_at"] == "2026-06-15T10:00:00Z"

    def test_implemented_stays_at_100(self, client: Any, world: dict[str, Any]) -> None:
        rec_id = _make(world, PATHS["implemented"])
        for body in ({"progress": 80}, {"progress": 80, "reset_note": "reopen"}):
            _problem(
                client.patch(f"{BASE}/{rec_id}", json=body, headers=world["admin"]),
                409,
                "progress-fixed-when-implemented",
            )
        assert _row(rec_id).progress == 100
        ok = client.patch(f"{BASE}/{rec_id}", json={"progress": 100}, headers=world["admin"])
        assert ok.status_code == 200 and ok.json()["version"] == _row(rec_id).version

    def test_database_guards_the_invariant(self, world: dict[str, Any]) -> None:
        from sqlalchemy.exc import IntegrityError

        rec_id = _make(world)
        with pytest.raises(IntegrityError), session_scope() as session:
            rec = session.get(Recommendation, rec_id)
            assert rec is not None
            rec.progress = 100
        assert _row(rec_id).progress == 0


class TestStatusLifecycle:
    def test_transition_matrix(self, client: Any, world: dict[str, Any]) -> None:
        """Every (from, to) pair of the 7 statuses: the 10 lifecycle edges succeed, the other
        39 are 409 ``invalid-transition`` and change nothing."""
        for source in PATHS:
            for target in PATHS:
                rec_id = _make(world, PATHS[source])
                version = _row(rec_id).version
                outbox_before = _count(OutboxEvent)
                response = client.post(
                    f"{BASE}/{rec_id}/status", json={"status": target}, headers=world["coordinator"]
                )
                if (source, target) in ALLOWED:
                    assert response.status_code == 200, (source, target, response.text)
                    assert response.json()["status"] == target
                    assert _row(rec_id).version == version + 1
                    assert _count(OutboxEvent) == outbox_before + 1
                else:
                    assert response.status_code == 409, (source, target, response.text)
                    _problem(response, 409, "invalid-transition")
                    row = _row(rec_id)
                    assert (row.status, row.version) == (source, version)
                    assert _count(OutboxEvent) == outbox_before

    def test_timeline_outbox_and_audit(self, client: Any, world: dict[str, Any]) -> None:
        rec_id = _make(world)
        for status, note in (("submitted", "to the department"), ("accepted", None)):
            response = client.post(
                f"{BASE}/{rec_id}/status",
                json={"status": status, "note": note},
                headers=world["coordinator"],
            )
            assert response.status_code == 200
        timeline = client.get(f"{BASE}/{rec_id}/events", headers=world["viewer"]).json()
        items = timeline["items"]
        assert [(e["type"], e["from_status"], e["to_status"]) for e in items] == [
            ("created", None, "draft"),
            ("status_changed", "draft", "submitted"),
            ("status_changed", "submitted", "accepted"),
        ]
        assert items[1]["note"] == "to the department"
        assert items[1]["actor_role"] == "coordinator" and items[1]["actor_id"]
        assert items[1]["at"] == "2026-06-15T10:00:00Z"
        with session_scope(write=False) as session:
            events = session.scalars(
                select(OutboxEvent)
                .where(OutboxEvent.event_type == "recommendation.status_changed")
                .order_by(OutboxEvent.created_at, OutboxEvent.id)
            ).all()
            payloads = [e.payload for e in events]
        assert [(p["from_status"], p["to_status"]) for p in payloads] == [
            ("draft", "submitted"),
            ("submitted", "accepted"),
        ]
        assert payloads[0]["recommendation"]["id"] == str(rec_id)
        assert "body" not in payloads[0]["recommendation"]
        assert (
            _count(
                AuditEvent, AuditEvent.resource == "recommendation", AuditEvent.action == "status"
            )
            == 2
        )

    def test_unknown_status(self, client: Any, world: dict[str, Any]) -> None:
        rec_id = _make(world)
        _problem(
            client.post(
                f"{BASE}/{rec_id}/status", json={"status": "forgotten"}, headers=world["admin"]
            ),
            422,
            "validation-error",
        )
        assert _row(rec_id).status == "draft"

    def test_unknown_recommendation(self, client: Any, world: dict[str, Any]) -> None:
        _problem(
            client.post(
                f"{BASE}/{uuid.uuid4()}/status",
                json={"status": "submitted"},
                headers=world["admin"],
            ),
            404,
            "not-found",
        )

    def test_events_pagination(self, client: Any, world: dict[str, Any]) -> None:
        rec_id = _make(world, PATHS["implemented"])
        first = client.get(
            f"{BASE}/{rec_id}/events", params={"limit": 3}, headers=world["admin"]
        ).json()
        second = client.get(
            f"{BASE}/{rec_id}/events",
            params={"limit": 3, "cursor": first["next_cursor"]},
            headers=world["admin"],
        ).json()
        assert len(first["items"]) == 3 and len(second["items"]) == 2
        assert second["next_cursor"] is None
        assert second["items"][-1]["data"] == {"progress_from": 0, "progress_to": 100}


class TestReport:
    @pytest.fixture
    def reported(self, world: dict[str, Any]) -> dict[str, Any]:
        incidents = [make_incident(title=f"Incident {i}") for i in range(3)]
        late = _make(
            world,
            ["submitted", "accepted", "in_implementation"],
            title="Protect | civil society",
            due_on="2026-05-01",
            progress=30,
            incident_ids=[str(i.id) for i in incidents],
            districts=["alpha", "beta"],
        )
        _make(world, PATHS["implemented"], title="Training done", due_on="2026-01-01")
        _make(world, ["submitted"], title="Network", due_on=None, progress=20)
        return {"late": late, **world}

    def test_markdown(self, client: Any, reported: dict[str, Any]) -> None:
        response = client.get(
            f"{BASE}/report", headers={**reported["viewer"], "Accept": "text/markdown"}
        )
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/markdown")
        text = response.text
        assert text.startswith("# Recommendations of the steering group")
        assert "3 recommendation(s) · 1 overdue" in text
        assert (
            "| Addressee | draft | submitted | accepted | rejected | in implementation | "
            "implemented | withdrawn | total | overdue | Ø progress |"
        ) in text
        # Amt für Soziales: 1 submitted, 1 in implementation, 1 implemented; mean of 20, 30, 100
        assert "| Amt für Soziales | 0 | 1 | 0 | 0 | 1 | 1 | 0 | 3 | 1 | 50 % |" in text
        overdue = text.split("## Overdue")[1].split("## Progress and evidence")[0]
        late_ref = _row(reported["late"]).reference
        assert (
            f"| {late_ref} | Protect \\| civil society | Amt für Soziales | 2026-05-01 | 45 |"
            in overdue
        )
        assert "Training done" not in overdue
        evidence = text.split("## Progress and evidence")[1]
        assert "███░░░░░░░ 30 % | 2026-05-01 (overdue) | 3 | alpha, beta |" in evidence

    def test_json_has_the_same_data(self, client: Any, reported: dict[str, Any]) -> None:
        response = client.get(
            f"{BASE}/report", headers={**reported["admin"], "Accept": "application/json"}
        )
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/json")
        report = response.json()
        assert report["generated_on"] == "2026-06-15"
        assert (report["total"], report["overdue"]) == (3, 1)
        assert report["overdue_items"][0]["days_overdue"] == 45
        assert report["overdue_items"][0]["evidence_count"] == 3
        summary = report["by_addressee"][0]
        assert summary["by_status"]["implemented"] == 1 and summary["total"] == 3
        assert summary["average_progress"] == 50.0

    def test_negotiation(self, client: Any, world: dict[str, Any]) -> None:
        for accept, kind in (
            ("text/markdown;q=0.5, application/json", "application/json"),
            ("*/*", "text/markdown"),
            ("text/*", "text/markdown"),
            ("application/*;q=1, text/markdown;q=0.2", "application/json"),
            ("text/html, application/json;q=0.9", "application/json"),
        ):
            response = client.get(f"{BASE}/report", headers={**world["admin"], "Accept": accept})
            assert response.status_code == 200, accept
            assert response.headers["content-type"].startswith(kind), accept

    def test_not_acceptable(self, client: Any, world: dict[str, Any]) -> None:
        for accept in ("text/csv", "application/xml", "text/markdown;q=0", "image/*"):
            response = client.get(f"{BASE}/report", headers={**world["admin"], "Accept": accept})
            _problem(response, 406, "not-acceptable")

    def test_empty(self, client: Any, world: dict[str, Any]) -> None:
        response = client.get(
            f"{BASE}/report", headers={**world["admin"], "Accept": "text/markdown"}
        )
        assert "_No recommendation is overdue._" in response.text


class TestRoles:
    def test_readers(self, client: Any, world: dict[str, Any]) -> None:
        rec_id = _make(world)
        for role in ("admin", "coordinator", "viewer"):
            for path in (BASE, f"{BASE}/{rec_id}", f"{BASE}/{rec_id}/events", f"{BASE}/report"):
                assert client.get(path, headers=world[role]).status_code == 200, (role, path)

    def test_partner_and_manager_keys_do_not_read(self, client: Any, world: dict[str, Any]) -> None:
        # DESIGN §4 grants recommendations to coordinators and viewers (and admins) only
        from tests.factories import make_manager

        rec_id = _make(world)
        for headers in (world["partner"], make_key("manager", manager_id=make_manager())):
            for path in (BASE, f"{BASE}/{rec_id}", f"{BASE}/{rec_id}/events", f"{BASE}/report"):
                _problem(client.get(path, headers=headers), 403, "forbidden")

    @pytest.mark.parametrize("role", ["viewer", "partner"])
    def test_writers_only_staff(self, client: Any, world: dict[str, Any], role: str) -> None:
        rec_id = _make(world)
        headers = world[role]
        _problem(client.post(BASE, json=_body(world), headers=headers), 403, "forbidden")
        _problem(
            client.patch(f"{BASE}/{rec_id}", json={"title": "x"}, headers=headers), 403, "forbidden"
        )
        _problem(
            client.post(f"{BASE}/{rec_id}/status", json={"status": "submitted"}, headers=headers),
            403,
            "forbidden",
        )
        row = _row(rec_id)
        assert (row.status, row.version) == ("draft", 1)
        assert _count(Recommendation) == 1

    def test_no_key(self, client: Any, world: dict[str, Any]) -> None:
        rec_id = _make(world)
        for method, path in (
            ("GET", BASE),
            ("POST", BASE),
            ("GET", f"{BASE}/{rec_id}"),
            ("PATCH", f"{BASE}/{rec_id}"),
            ("GET", f"{BASE}/report"),
            ("POST", f"{BASE}/{rec_id}/status"),
            ("GET", f"{BASE}/{rec_id}/events"),
        ):
            _problem(client.request(method, path, json={}), 401, "unauthorized")


class TestDemoSeed:
    def test_three_recommendations_idempotent(self, client: Any) -> None:
        from app.services.seed import seed_demo_data

        seed_demo_data()
        seed_demo_data()
        with session_scope(write=False) as session:
            recs = session.scalars(select(Recommendation).order_by(Recommendation.reference)).all()
            categories = {r.category for r in recs}
            statuses = {r.status for r in recs}
        assert len(recs) == 3
        assert categories == {
            "deployment_concept",
            "competence_building",
            "protection_of_civil_society",
        }
        assert len(statuses) == 3
        headers = make_key("viewer")
        listed = client.get(BASE, headers=headers).json()["items"]
        assert all(item["districts"] and item["evidence"] for item in listed)

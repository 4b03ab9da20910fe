"""Notes are free text and may name the reporter: who reads an incident's notes
(app/services/visibility.py, DESIGN.md §1 "Notes"); and the redacted incident view.

A manager reads them once they accepted an assignment on the incident, lead or co — not while it is
only offered to them (``GET …/notes`` → 403, timeline ``note`` → null); staff and the incident's
partner always; anybody who cannot see the incident gets 404.
"""

from __future__ import annotations

import uuid
from functools import partial
from typing import Any

import pytest
from sqlalchemy import func, select

from app.core.db import session_scope
from app.models.incident import Incident, IncidentNote
from app.services import visibility
from tests.factories import (
    make_assignment,
    make_dispatch_manager,
    make_incident,
    make_key,
    make_manager,
    make_organisation,
    make_triaged_incident,
    seed_reference,
)

API = "/api/v1"
NOTE = "Frau Erika Muster (the reporter) asked to be called after 18:00."
STATUS_NOTE = "Erika Muster confirmed the address."

#: caller → (status of GET …/notes, whether the timeline shows the status-change note).
#: ``None``: the incident itself is out of the caller's sight (404 on both).
NOTES_VISIBILITY: dict[str, tuple[int, bool | None]] = {
    "admin": (200, True),
    "coordinator": (200, True),
    "partner_own": (200, True),
    "partner_other": (404, None),
    "manager_offered_lead": (403, False),
    "manager_offered_co": (403, False),
    "manager_accepted_lead": (200, True),
    "manager_accepted_co": (200, True),
    "manager_declined": (404, None),
    "manager_other": (404, None),
    "viewer": (403, None),
}


def _problem_type(response: Any) -> str:
    assert response.headers["content-type"] == "application/problem+json", response.text
    return str(response.json()["type"])


def _note_count() -> int:
    with session_scope(write=False) as session:
        return int(session.scalar(select(func.count()).select_from(IncidentNote)) or 0)


@pytest.fixture
def world(client: Any) -> dict[str, Any]:
    """Incident ``accepted`` (in progress: accepted lead and co, one declined offer) and incident
    ``offered`` (dispatched: lead and co only offered), both of organisation ``own``, each with a
    staff note and a status change with a note that name the reporter."""
    seed_reference()
    admin = make_key("admin")
    own, other = make_organisation("Own"), make_organisation("Other")
    ids = {}
    for name in ("accepted", "offered"):
        ids[name] = make_incident(
            organisation_id=str(own), reporter={"name": "Erika Muster", "contact": "e@example.org"}
        ).id
        for path, body in (
            ("notes", {"text": NOTE}),
            ("status", {"status": "triaged", "note": STATUS_NOTE}),
        ):
            response = client.post(f"{API}/incidents/{ids[name]}/{path}", json=body, headers=admin)
            assert response.status_code in (200, 201), response.text
    managers = {
        name: make_manager(display_name=name)
        for name in (
            "accepted_lead",
            "accepted_co",
            "declined",
            "offered_lead",
            "offered_co",
            "other",
        )
    }
    make_assignment(ids["accepted"], managers["accepted_lead"], role="lead", status="accepted")
    make_assignment(ids["accepted"], managers["accepted_co"], role="co", status="accepted")
    make_assignment(ids["accepted"], managers["declined"], role="co", status="declined")
    make_assignment(ids["offered"], managers["offered_lead"], role="lead", status="offered")
    make_assignment(ids["offered"], managers["offered_co"], role="co", status="offered")
    headers = {
        "admin": admin,
        "coordinator": make_key("coordinator"),
        "partner_own": make_key("partner", organisation_id=own),
        "partner_other": make_key("partner", organisation_id=other),
        "viewer": make_key("viewer"),
        **{
            f"manager_{name}": make_key("manager", manager_id=manager_id)
            for name, manager_id in managers.items()
        },
    }
    return {"ids": ids, "headers": headers}


def _incident_for(caller: str, world: dict[str, Any]) -> uuid.UUID:
    """The offered managers are tried on the incident offered to them, everyone else on the one
    with accepted assignments."""
    return world["ids"]["offered" if "offered" in caller else "accepted"]


@pytest.mark.parametrize("caller", sorted(NOTES_VISIBILITY))
def test_who_reads_the_notes(client: Any, world: dict[str, Any], caller: str) -> None:
    expected_status, timeline_note = NOTES_VISIBILITY[caller]
    incident_id = _incident_for(caller, world)
    headers = world["headers"][caller]

    notes = client.get(f"{API}/incidents/{incident_id}/notes", headers=headers)
    assert notes.status_code == expected_status, notes.text
    if expected_status == 200:
        assert [n["text"] for n in notes.json()["items"]] == [NOTE]
    else:
        assert NOTE not in notes.text
        assert (
            _problem_type(notes)
            == {403: "/problems/forbidden", 404: "/problems/not-found"}[expected_status]
        )

    events = client.get(f"{API}/incidents/{incident_id}/events", headers=headers)
    if timeline_note is None:
        assert events.status_code == notes.status_code, events.text
        assert STATUS_NOTE not in events.text
        return
    assert events.status_code == 200, events.text
    [status_change] = [e for e in events.json()["items"] if e["type"] == "status_changed"]
    assert status_change["to_status"] == "triaged"
    assert status_change["note"] == (STATUS_NOTE if timeline_note else None)
    assert (STATUS_NOTE in events.text) is timeline_note


def test_offered_manager_sees_the_incident_but_not_its_notes(
    client: Any, world: dict[str, Any]
) -> None:
    """The offer is readable (to decide on it); the refusal says why and changes nothing."""
    headers = world["headers"]["manager_offered_lead"]
    incident_id = world["ids"]["offered"]
    before = _note_count()
    assert client.get(f"{API}/incidents/{incident_id}", headers=headers).status_code == 200
    refused = client.get(f"{API}/incidents/{incident_id}/notes", headers=headers)
    assert refused.status_code == 403
    assert "accept" in refused.json()["detail"]
    assert _note_count() == before


def test_notes_become_visible_on_accepting(client: Any, fixed_clock: object) -> None:
    """Through the API: offered → 403; accepted → the notes; the answer to the offer is what
    opens them."""
    seed_reference()
    coordinator = make_key("coordinator")
    incident_id = make_triaged_incident()
    assert (
        client.post(
            f"{API}/incidents/{incident_id}/notes", json={"text": NOTE}, headers=coordinator
        ).status_code
        == 201
    )
    manager_id = make_dispatch_manager()
    manager = make_key("manager", manager_id=manager_id)
    offered = client.post(
        f"{API}/assignments",
        headers=coordinator,
        json={"incident_id": str(incident_id), "manager_id": str(manager_id), "role": "lead"},
    )
    assert offered.status_code == 201, offered.text
    assert client.get(f"{API}/incidents/{incident_id}/notes", headers=manager).status_code == 403

    accepted = client.post(f"{API}/assignments/{offered.json()['id']}/accept", headers=manager)
    assert accepted.status_code == 200, accepted.text
    notes = client.get(f"{API}/incidents/{incident_id}/notes", headers=manager)
    assert notes.status_code == 200, notes.text
    assert [n["text"] for n in notes.json()["items"]] == [NOTE]


def test_webhook_payload_is_the_redacted_view(client: Any) -> None:
    """Webhook payloads are built without a model pass; they must equal the redacted view the
    API gives a caller who may not see the reporter — and carry no reporter data."""
    seed_reference()
    created = make_incident(
        reporter={"name": "Erika Muster", "contact": "e@example.org"},
        location={"lat": 50.98, "lon": 11.03},
        required_competences=["mediation"],
    )
    with session_scope(write=False) as session:
        incident = session.get(Incident, created.id)
        assert incident is not None
        payload = visibility.webhook_incident_view(partial(getattr, incident), ["mediation"])
        redacted = visibility.incident_view(incident, ["mediation"], sees_reporter=False)
        full = visibility.incident_view(incident, ["mediation"], sees_reporter=True)
    assert payload == redacted.model_dump(mode="json")
    assert payload["reporter"] is None and "Erika" not in str(payload)
    assert full.reporter is not None and full.reporter.name == "Erika Muster"

"""An open slot is visible: ``open_slots`` on the incident (reads, lists, webhooks) and a timeline
event saying the co slot stays open when a tandem incident's co found nobody."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from app.core.db import session_scope
from app.models.incident import Incident
from app.services.incidents import webhook_view
from tests.factories import (
    make_dispatch_manager,
    make_key,
    make_triaged_incident,
    seed_reference,
)


@pytest.fixture
def staff(fixed_clock: object) -> dict[str, str]:
    seed_reference()
    return make_key("coordinator")


def offer(
    client: Any,
    headers: dict[str, str],
    incident: uuid.UUID,
    manager: uuid.UUID,
    role: str | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"incident_id": str(incident), "manager_id": str(manager)}
    if role:
        body["role"] = role
    response = client.post("/api/v1/assignments", headers=headers, json=body)
    assert response.status_code == 201, response.text
    return response.json()


def act(
    client: Any,
    headers: dict[str, str],
    assignment: dict[str, Any],
    action: str,
    body: dict[str, Any] | None = None,
) -> None:
    response = client.post(
        f"/api/v1/assignments/{assignment['id']}/{action}", headers=headers, json=body
    )
    assert response.status_code == 200, response.text


def read(client: Any, headers: dict[str, str], incident: uuid.UUID) -> dict[str, Any]:
    response = client.get(f"/api/v1/incidents/{incident}", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def test_triaged_and_single_incidents_have_none(client: Any, staff: dict[str, str]) -> None:
    incident = make_triaged_incident(escalation_level=5)
    assert read(client, staff, incident)["open_slots"] == []
    single = make_triaged_incident(escalation_level=2)
    lead = offer(client, staff, single, make_dispatch_manager())
    assert read(client, staff, single)["open_slots"] == []
    act(client, staff, lead, "accept")
    assert read(client, staff, single)["open_slots"] == []


def test_tandem_filled_slot_by_slot(client: Any, staff: dict[str, str]) -> None:
    incident = make_triaged_incident(escalation_level=5)
    offer(client, staff, incident, make_dispatch_manager(), role="co")
    assert read(client, staff, incident)["open_slots"] == ["lead"]
    offer(client, staff, incident, make_dispatch_manager(), role="lead")
    assert read(client, staff, incident)["open_slots"] == []


def test_co_slot_that_found_nobody(client: Any, staff: dict[str, str]) -> None:
    """The co declines and nobody else fits: the incident stays dispatched with its lead, and
    both the incident and its timeline say the co slot is open."""
    incident = make_triaged_incident(escalation_level=5)
    lead_id, co_id = make_dispatch_manager(), make_dispatch_manager()
    lead = offer(client, staff, incident, lead_id)
    co = offer(client, staff, incident, co_id)
    act(client, staff, lead, "accept")
    act(client, staff, co, "decline", {"reason": "no time"})

    view = read(client, staff, incident)
    assert view["status"] == "dispatched"
    assert view["open_slots"] == ["co"]
    listed = client.get("/api/v1/incidents", headers=staff, params={"status": "dispatched"})
    assert [(i["id"], i["open_slots"]) for i in listed.json()["items"]] == [(str(incident), ["co"])]
    events = client.get(f"/api/v1/incidents/{incident}/events", headers=staff).json()["items"]
    slot_events = [e for e in events if e["type"] == "no_candidate"]
    assert len(slot_events) == 1
    assert slot_events[0]["data"] == {"role": "co", "slot_open": True}
    assert "stays open" in slot_events[0]["note"]
    with session_scope(write=False) as session:
        payload = webhook_view(session, session.get(Incident, incident))
    assert payload["open_slots"] == ["co"]

    offer(client, staff, incident, make_dispatch_manager(), role="co")  # a coordinator picks
    assert read(client, staff, incident)["open_slots"] == []


def test_lead_that_found_nobody_goes_back_to_the_queue(client: Any, staff: dict[str, str]) -> None:
    incident = make_triaged_incident(escalation_level=2)
    lead = offer(client, staff, incident, make_dispatch_manager())
    act(client, staff, lead, "decline", {"reason": "no time"})
    view = read(client, staff, incident)
    assert (view["status"], view["open_slots"]) == ("triaged", [])
    events = client.get(f"/api/v1/incidents/{incident}/events", headers=staff).json()["items"]
    [event] = [e for e in events if e["type"] == "no_candidate"]
    assert event["data"] == {"role": "lead"}

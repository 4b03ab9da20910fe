"""What an offer writes, built once: the assignment row, its timeline entry, its audit entry and
its outbox payload.

Both writers use these builders: a single offer (:meth:`DispatchService._offer
<app.services.dispatch.service.DispatchService._offer>`, ORM objects) and the batch
(:mod:`app.services.dispatch.batch_writer`, set-based rows). So an offer made one by one and an
offer made by ``POST /dispatch/auto`` are the same rows.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from app.core.security import Principal
from app.models.assignment import AssignmentRole, AssignmentStatus
from app.models.base import new_id
from app.models.incident import Incident
from app.services.dispatch.matching import Candidate

#: The assignment fields an offer's audit entry names.
OFFER_AUDIT_FIELDS = ("incident_id", "manager_id", "role", "status", "expires_at")


def reasons_of(candidate: Candidate) -> list[dict[str, Any]]:
    """A candidate's score breakdown as the assignment stores it."""
    return [
        {"factor": r.factor, "value": r.value, "weight": r.weight, "detail": r.detail}
        for r in candidate.reasons
    ]


def offer_row(
    incident_id: uuid.UUID,
    candidate: Candidate,
    role: AssignmentRole | str,
    principal: Principal,
    *,
    now: datetime,
    ttl_hours: float,
) -> dict[str, Any]:
    """Every column of a new offer (``Assignment(**row)`` or a bulk insert row)."""
    return {
        "id": new_id(),
        "incident_id": incident_id,
        "manager_id": candidate.manager_id,
        "role": role,
        "status": AssignmentStatus.offered,
        "offered_at": now,
        "responded_at": None,
        "expires_at": now + timedelta(hours=ttl_hours),
        "ended_at": None,
        "score": candidate.score,
        "reasons": reasons_of(candidate),
        "decline_reason": None,
        "withdraw_reason": None,
        "outcome": None,
        "offered_by": principal.key_id,
        "version": 1,
        "created_at": now,
        "updated_at": now,
    }


def offered_event_data(row: dict[str, Any], *, auto: bool) -> dict[str, Any]:
    """The ``assignment_offered`` timeline entry's data for an offer row."""
    return {
        "assignment_id": str(row["id"]),
        "manager_id": str(row["manager_id"]),
        "role": row["role"],
        "score": row["score"],
        "auto": auto,
    }


def assignment_payload(assignment: Any, incident: Incident) -> dict[str, Any]:
    """An outbox payload: the assignment's dispatch facts, never contact or personal reasons."""
    get = (
        assignment.get if isinstance(assignment, dict) else (lambda name: getattr(assignment, name))
    )
    return {
        "assignment": {
            "id": str(get("id")),
            "incident_id": str(get("incident_id")),
            "manager_id": str(get("manager_id")),
            "role": str(get("role")),
            "status": str(get("status")),
            "offered_at": _iso(get("offered_at")),
            "responded_at": _iso(get("responded_at")),
            "expires_at": _iso(get("expires_at")),
            "score": get("score"),
        },
        "incident": {
            "id": str(incident.id),
            "reference": incident.reference,
            "status": str(incident.status),
        },
    }


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")

"""Erasure of a reporter (incident) and of a retired manager, everywhere the values were copied."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlmodel import Session, col

from app.core.clock import get_clock
from app.core.db import affected_rows
from app.core.errors import Conflict, NotFound
from app.core.problems import ProblemType
from app.core.security import Principal, forget_keys
from app.models.assignment import Assignment
from app.models.incident import Incident, IncidentEvent, IncidentNote
from app.models.manager import Absence, Manager, ManagerStatus
from app.models.outbox import OutboxEvent
from app.models.recommendation import RecommendationEvent
from app.models.system import ApiKey, AuditEvent, IdempotencyRecord, Role
from app.services import audit
from app.services.privacy.access_log import reporter_fields
from app.services.privacy.scrubbing import (
    ScrubTarget,
    ValueEraser,
    clip_text,
    contains_text,
    erase_in_rows,
    scrub_idempotency_records,
    scrub_outbox,
)
from app.services.versioning import bump

# --- reporter erasure ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReporterErasure:
    incident_id: uuid.UUID
    reference: str
    erased: bool
    fields: list[str]
    erased_in: list[str]


def erase_reporter(
    session: Session, incident: Incident, principal: Principal, *, reason: str = "request"
) -> ReporterErasure:
    """Erase the reporter's name and contact of ``incident`` (locked by the caller) everywhere.

    Idempotent: an incident without reporter name and contact is left as it is. ``has_reporter``
    and ``anonymous`` stay (they are not personal): the API then shows
    ``reporter = {"name": null, "contact": null, "anonymous": …}``.
    """
    return erase_reporters(session, [incident], principal, reason=reason)[0]


def erase_reporters(
    session: Session, incidents: Sequence[Incident], principal: Principal, *, reason: str
) -> list[ReporterErasure]:
    """:func:`erase_reporter` for a batch: the copies (outbox, idempotency records) are scrubbed
    in one pass for all of them."""
    now = get_clock().now()
    work: list[tuple[Incident, list[str], list[str]]] = []
    targets: list[ScrubTarget] = []
    results: dict[uuid.UUID, ReporterErasure] = {}
    for incident in incidents:
        fields = reporter_fields(incident.reporter_name, incident.reporter_contact)
        if not fields:
            results[incident.id] = ReporterErasure(incident.id, incident.reference, False, [], [])
            continue
        # earlier values (the reporter was edited) are known while a stored response holds them
        earlier = _stored_reporter_values(session, incident.id)
        eraser = ValueEraser([incident.reporter_name, incident.reporter_contact, *earlier])
        incident.reporter_name = None
        incident.reporter_contact = None
        incident.reporter_erased_at = now
        work.append((incident, fields, _erase_in_incident_texts(session, incident, eraser)))
        targets.append(
            ScrubTarget(
                incident.id, eraser, nulls={"name": None, "contact": None}, nested="reporter"
            )
        )
    in_outbox: set[uuid.UUID] = set()
    in_responses: set[uuid.UUID] = set()
    if targets:
        in_outbox = scrub_outbox(
            session, _outbox_about_incidents([t.record_id for t in targets]), targets
        )
        in_responses = scrub_idempotency_records(session, targets)
    from app.services.incidents import record_event

    for incident, fields, erased_in in work:
        if incident.id in in_outbox:
            erased_in.append("webhook_outbox")
        if incident.id in in_responses:
            erased_in.append("idempotency_records")
        bump(session, incident)
        record_event(
            session,
            incident,
            "reporter_erased",
            principal,
            data={
                "fields": fields,
                "reason": reason,
                # the key predates the word "erasure" for this; stored events keep it
                "redacted_in": erased_in,
            },
        )
        audit.record(
            session, principal, "erase_reporter", "incident", incident.id, [*fields, *erased_in]
        )
        results[incident.id] = ReporterErasure(
            incident.id, incident.reference, True, fields, erased_in
        )
    session.flush()
    return [results[incident.id] for incident in incidents]


def _erase_in_incident_texts(
    session: Session, incident: Incident, eraser: ValueEraser
) -> list[str]:
    """Erase the values in the incident's own free text; returns where they were found."""
    found: list[str] = []
    title = clip_text(eraser.text(incident.title), 200) or ""
    description = eraser.text(incident.description) or ""
    if title != incident.title:
        incident.title = title
        found.append("title")
    if description != incident.description:
        incident.description = description
        found.append("description")
    if erase_in_rows(
        session, IncidentNote, IncidentNote.incident_id == incident.id, eraser, {"text": None}
    ):
        found.append("notes")
    if erase_in_rows(
        session,
        IncidentEvent,
        IncidentEvent.incident_id == incident.id,
        eraser,
        {"note": None, "data": None},
    ):
        found.append("timeline")
    if erase_in_rows(
        session,
        Assignment,
        Assignment.incident_id == incident.id,
        eraser,
        {"decline_reason": 2000, "withdraw_reason": 2000, "outcome": 5000},
    ):
        found.append("assignments")
    return found


def _stored_reporter_values(session: Session, incident_id: uuid.UUID) -> set[str]:
    """Reporter names and contacts of ``incident_id`` found in stored responses."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, dict):
            reporter = value.get("reporter")
            if str(value.get("id")) == str(incident_id) and isinstance(reporter, dict):
                found.update(
                    v for k in ("name", "contact") if isinstance(v := reporter.get(k), str)
                )
            for item in value.values():
                walk(item)

    bodies = session.scalars(
        select(col(IdempotencyRecord.response_body)).where(
            contains_text(IdempotencyRecord.response_body, str(incident_id))
        )
    )
    for body in bodies:
        try:
            walk(json.loads(body or ""))
        except ValueError:
            continue
    return found


def _outbox_about_incidents(ids: Sequence[uuid.UUID]) -> Any:
    """Outbox events whose payload is about one of these incidents (incident.* and assignment.*)."""
    wanted = [str(i) for i in ids]
    return or_(
        OutboxEvent.payload["incident"]["id"].as_string().in_(wanted),  # type: ignore[index]
        OutboxEvent.payload["assignment"]["incident_id"].as_string().in_(wanted),  # type: ignore[index]
    )


def erase_reporter_by_id(
    session: Session, incident_id: uuid.UUID, principal: Principal
) -> Incident:
    """The API's erasure: the incident (404 when unknown), erased and returned."""
    from app.repositories.incidents import IncidentRepository

    incident = IncidentRepository(session).get(incident_id, for_update=True)
    if incident is None:
        raise NotFound(f"No incident {incident_id}.")
    erase_reporter(session, incident, principal, reason="request")
    return incident


# --- manager erasure -----------------------------------------------------------------------------


def manager_pseudonym(manager_id: uuid.UUID) -> tuple[str, str]:
    """The stable pseudonym of an erased manager: ``(display_name, email)``."""
    digest = hashlib.sha256(manager_id.bytes).hexdigest()[:8]
    return f"Former manager {digest}", f"erased-{manager_id}@invalid"


def _pseudonymise_actor_names(session: Session, names: Sequence[str], pseudonym: str) -> None:
    """Entries a person with the manager role made (signed in, so named by display name or
    e-mail at the time) carry the pseudonym instead: timelines and the audit trail."""
    wanted = sorted({n.strip().lower() for n in names if n and n.strip()})
    if not wanted:
        return
    for model, role, name, field in (
        (IncidentEvent, col(IncidentEvent.actor_role), col(IncidentEvent.actor_name), "actor_name"),
        (
            RecommendationEvent,
            col(RecommendationEvent.actor_role),
            col(RecommendationEvent.actor_name),
            "actor_name",
        ),
        (
            AuditEvent,
            col(AuditEvent.principal_role),
            col(AuditEvent.principal_name),
            "principal_name",
        ),
    ):
        session.execute(
            update(model)
            .where(role == Role.manager.value, func.lower(name).in_(wanted))
            .values({field: pseudonym})
        )


def erase_manager(session: Session, manager_id: uuid.UUID, principal: Principal) -> Manager:
    """Replace a retired manager's name and contact by a pseudonym; idempotent.

    Kept: the id, status, districts, competences, assignments (and so every statistic). Removed:
    display name, e-mail, phone, absence reasons, the values wherever they were copied
    (idempotency responses, free text of the manager's assignments). API keys bound to the
    manager are revoked.
    """
    manager = session.scalars(
        select(Manager).where(col(Manager.id) == manager_id).with_for_update()
    ).first()
    if manager is None:
        raise NotFound(f"No manager {manager_id}.")
    if manager.status != ManagerStatus.retired:
        raise Conflict(
            "Only retired managers can be erased; retire the manager first.",
            type_=ProblemType.NOT_RETIRED,
        )
    if manager.erased_at is not None:
        return manager
    eraser = ValueEraser([manager.display_name, manager.email, manager.phone])
    own_names = [manager.display_name, manager.email]
    now = get_clock().now()
    display_name, email = manager_pseudonym(manager.id)
    manager.display_name, manager.email, manager.phone = display_name, email, None
    manager.erased_at = now
    fields = ["display_name", "email", "phone"]
    absences = session.execute(
        update(Absence)
        .where(col(Absence.manager_id) == manager.id, col(Absence.reason).is_not(None))
        .values(reason=None)
    )
    if affected_rows(absences):
        fields.append("absences.reason")
    revoked = session.execute(
        update(ApiKey)
        .where(col(ApiKey.manager_id) == manager.id, col(ApiKey.revoked_at).is_(None))
        .values(revoked_at=now)
    )
    if affected_rows(revoked):
        forget_keys(session)  # again after commit: no request re-caches a revoked key
    erase_in_rows(
        session,
        Assignment,
        Assignment.manager_id == manager.id,
        eraser,
        {"decline_reason": 2000, "withdraw_reason": 2000, "outcome": 5000},
    )
    _pseudonymise_actor_names(session, own_names, display_name)
    target = ScrubTarget(
        manager.id,
        eraser,
        nulls={"display_name": display_name, "email": email, "phone": None},
    )
    scrub_idempotency_records(session, [target])
    scrub_outbox(
        session,
        OutboxEvent.payload["assignment"]["manager_id"].as_string() == str(manager.id),  # type: ignore[index]
        [target],
    )
    from app.services.notifications.record import forget_manager

    if forget_manager(session, manager.id, now, eraser.text):
        fields.append("notifications.recipient")
    bump(session, manager)
    audit.record(session, principal, "erase", "manager", manager.id, fields)
    session.flush()
    return manager

"""Queueing: notification rows written in the transaction of the change that causes them."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col

from app.core.clock import get_clock
from app.core.config import Settings, get_settings
from app.models.assignment import Assignment
from app.models.base import table_of
from app.models.incident import Incident
from app.models.manager import Manager
from app.models.notification import (
    COORDINATOR_EVENT_KINDS,
    Notification,
    NotificationKind,
    NotificationStatus,
)
from app.models.reference import District

K = NotificationKind
COORDINATOR_KINDS = sorted(k.value for k in COORDINATOR_EVENT_KINDS)


def is_postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _domain(settings: Settings) -> str:
    sender = settings.mail_from or ""
    domain = sender.rsplit("@", 1)[-1].strip(" >") if "@" in sender else ""
    return domain or "kokoma.invalid"


def iso_instant(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def _district_names(session: Session, codes: Iterable[str]) -> dict[str, str]:
    return dict(
        session.execute(  # type: ignore[arg-type]
            select(col(District.code), col(District.name)).where(col(District.code).in_(set(codes)))
        ).all()
    )


def incident_facts(
    session: Session, incident: Incident, names: dict[str, str] | None = None
) -> dict[str, Any]:
    """What a mail may say about an incident: never reporter, title, description or notes."""
    if names is None:
        names = _district_names(session, [incident.district])
    name = names.get(incident.district)
    return {
        "incident_id": str(incident.id),
        "reference": incident.reference,
        "district": incident.district,
        "district_name": name or incident.district,
        "category": str(incident.category),
        "escalation_level": incident.escalation_level,
    }


def notification_row(
    kind: NotificationKind,
    recipient: str,
    payload: dict[str, Any],
    now: datetime,
    settings: Settings,
    *,
    manager_id: uuid.UUID | None = None,
    incident_id: uuid.UUID | None = None,
    assignment_id: uuid.UUID | None = None,
    dedupe_key: str | None = None,
) -> dict[str, Any]:
    notification_id = uuid.uuid4()
    return {
        "id": notification_id,
        "kind": kind.value,
        "recipient": recipient,
        "manager_id": manager_id,
        "incident_id": incident_id,
        "assignment_id": assignment_id,
        "payload": payload,
        "message_id": f"<{notification_id.hex}@{_domain(settings)}>",
        "dedupe_key": dedupe_key,
        "digest_id": None,
        "status": NotificationStatus.pending.value,
        "attempts": 0,
        "last_error": None,
        "next_attempt_at": now,
        "locked_until": None,
        "lease_token": None,
        "created_at": now,
        "updated_at": now,
        "sent_at": None,
    }


def insert_notifications(session: Session, rows: list[dict[str, Any]]) -> int:
    """Insert, skipping rows whose ``dedupe_key`` exists (a timer that fired already)."""
    if not rows:
        return 0
    insert = pg_insert if is_postgresql(session) else sqlite_insert
    table = table_of(Notification)
    result = session.connection().execute(
        insert(table).on_conflict_do_nothing(index_elements=["dedupe_key"]), rows
    )
    count = result.rowcount
    return len(rows) if count is None or count < 0 else int(count)


def manager_addresses(session: Session, manager_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The addresses of the managers who want mail (not erased)."""
    ids = list(set(manager_ids))
    if not ids:
        return {}
    rows = session.execute(
        select(col(Manager.id), col(Manager.email)).where(
            col(Manager.id).in_(ids),
            col(Manager.notify_by_email).is_(True),
            col(Manager.erased_at).is_(None),
        )
    ).all()
    return {row.id: row.email for row in rows}


def _get(assignment: Any, name: str) -> Any:
    return assignment[name] if isinstance(assignment, dict) else getattr(assignment, name)


def offers_made(
    session: Session, assignments: Sequence[Any], incidents: dict[uuid.UUID, Incident]
) -> int:
    """Queue the offer mail for each new offer (ORM objects or the batch's row dicts)."""
    settings = get_settings()
    if not settings.mail_enabled or not assignments:
        return 0
    recipients = manager_addresses(session, (_get(a, "manager_id") for a in assignments))
    if not recipients:
        return 0
    now = get_clock().now()
    names = _district_names(session, (i.district for i in incidents.values()))
    facts: dict[uuid.UUID, dict[str, Any]] = {}
    rows = []
    for assignment in assignments:
        address = recipients.get(_get(assignment, "manager_id"))
        if address is None:
            continue
        incident = incidents[_get(assignment, "incident_id")]
        if incident.id not in facts:
            facts[incident.id] = incident_facts(session, incident, names)
        rows.append(
            notification_row(
                K.offer,
                address,
                {
                    **facts[incident.id],
                    "assignment_id": str(_get(assignment, "id")),
                    "role": str(_get(assignment, "role")),
                    "expires_at": iso_instant(_get(assignment, "expires_at")),
                },
                now,
                settings,
                manager_id=_get(assignment, "manager_id"),
                incident_id=incident.id,
                assignment_id=_get(assignment, "id"),
            )
        )
    return insert_notifications(session, rows)


def offer_made(session: Session, assignment: Assignment, incident: Incident) -> int:
    return offers_made(session, [assignment], {incident.id: incident})


def offer_withdrawn(session: Session, assignment: Assignment, was_offered: bool) -> int:
    """Tell the manager an open assignment of theirs was withdrawn (offer or accepted)."""
    settings = get_settings()
    if not settings.mail_enabled:
        return 0
    address = manager_addresses(session, [assignment.manager_id]).get(assignment.manager_id)
    incident = session.get(Incident, assignment.incident_id)
    if address is None or incident is None:
        return 0
    payload = {
        **incident_facts(session, incident),
        "assignment_id": str(assignment.id),
        "role": str(assignment.role),
        "was_offered": was_offered,
    }
    return insert_notifications(
        session,
        [
            notification_row(
                K.offer_withdrawn,
                address,
                payload,
                get_clock().now(),
                settings,
                manager_id=assignment.manager_id,
                incident_id=incident.id,
                assignment_id=assignment.id,
            )
        ],
    )


def tell_coordinators(
    session: Session,
    kind: NotificationKind,
    incident: Incident,
    *,
    role: str | None = None,
    dedupe: str | None = None,
) -> int:
    """One row per address in ``KOKOMA_COORDINATOR_EMAILS`` (none configured → nothing)."""
    settings = get_settings()
    addresses = settings.coordinator_addresses
    if not settings.mail_enabled or not addresses:
        return 0
    now = get_clock().now()
    payload = {
        **incident_facts(session, incident),
        "role": role,
        "reported_at": iso_instant(incident.reported_at),
    }
    return insert_notifications(
        session,
        [
            notification_row(
                kind,
                address,
                payload,
                now,
                settings,
                incident_id=incident.id,
                dedupe_key=None if dedupe is None else f"{dedupe}:{address}"[:200],
            )
            for address in addresses
        ],
    )

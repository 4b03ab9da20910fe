"""Timers (worker jobs): offer reminders, triage deadlines and coordinator digests."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from typing import Any

from sqlalchemy import select, text, update
from sqlmodel import col

from app.core.clock import get_clock
from app.core.config import get_settings
from app.core.db import session_scope
from app.models.assignment import Assignment, AssignmentStatus
from app.models.incident import Incident, IncidentStatus
from app.models.manager import Manager
from app.models.notification import (
    Notification,
    NotificationStatus,
)
from app.services.notifications.queueing import (
    COORDINATOR_KINDS,
    K,
    incident_facts,
    insert_notifications,
    is_postgresql,
    iso_instant,
    manager_addresses,
    notification_row,
    tell_coordinators,
)

#: PostgreSQL advisory lock of the digest collector ("kmdig").
_DIGEST_LOCK = 0x6B6D646967


def queue_reminders(limit: int = 500) -> int:
    """Remind the manager of an offer still open ``KOKOMA_OFFER_REMINDER_HOURS`` before it
    expires — once (``dedupe_key``), and only for offers that ran longer than that."""
    settings = get_settings()
    hours = settings.offer_reminder_hours
    if not settings.mail_enabled or hours <= 0:
        return 0
    now = get_clock().now()
    lead = timedelta(hours=hours)
    with session_scope() as session:
        reminded = select(col(Notification.id)).where(
            col(Notification.assignment_id) == col(Assignment.id),
            col(Notification.kind) == K.offer_reminder.value,
        )
        stmt = (
            select(
                col(Assignment.id),
                col(Assignment.incident_id),
                col(Assignment.manager_id),
                col(Assignment.role),
                col(Assignment.offered_at),
                col(Assignment.expires_at),
            )
            .join(Manager, col(Manager.id) == col(Assignment.manager_id))
            .where(
                col(Assignment.status) == AssignmentStatus.offered,
                col(Manager.notify_by_email).is_(True),
                col(Manager.erased_at).is_(None),
                col(Assignment.expires_at) > now,
                col(Assignment.expires_at) <= now + lead,
                ~reminded.exists(),
            )
            .order_by(col(Assignment.expires_at), col(Assignment.id))
            .limit(limit)
        )
        due = [a for a in session.execute(stmt).all() if a.expires_at - a.offered_at > lead]
        if not due:
            return 0
        recipients = manager_addresses(session, (a.manager_id for a in due))
        incidents = {
            i.id: i
            for i in session.scalars(
                select(Incident).where(col(Incident.id).in_({a.incident_id for a in due}))
            )
        }
        rows = [
            notification_row(
                K.offer_reminder,
                recipients[a.manager_id],
                {
                    **incident_facts(session, incidents[a.incident_id]),
                    "assignment_id": str(a.id),
                    "role": str(a.role),
                    "expires_at": iso_instant(a.expires_at),
                },
                now,
                settings,
                manager_id=a.manager_id,
                incident_id=a.incident_id,
                assignment_id=a.id,
                dedupe_key=f"offer_reminder:{a.id}",
            )
            for a in due
            if a.manager_id in recipients
        ]
        insert_notifications(session, rows)
        return len(rows)


def queue_triage_overdue(limit: int = 200) -> int:
    """Tell the coordinators of incidents still ``reported`` ``KOKOMA_TRIAGE_SLA_HOURS`` after
    they came in (``reported_at``) — once per incident."""
    settings = get_settings()
    if not settings.mail_enabled or not settings.coordinator_addresses:
        return 0
    now = get_clock().now()
    cutoff = now - timedelta(hours=settings.triage_sla_hours)
    with session_scope() as session:
        told = select(col(Notification.id)).where(
            col(Notification.incident_id) == col(Incident.id),
            col(Notification.kind) == K.triage_overdue.value,
        )
        incidents = list(
            session.scalars(
                select(Incident)
                .where(
                    col(Incident.status) == IncidentStatus.reported,
                    col(Incident.reported_at) <= cutoff,
                    ~told.exists(),
                )
                .order_by(col(Incident.reported_at), col(Incident.id))
                .limit(limit)
            )
        )
        for incident in incidents:
            tell_coordinators(
                session, K.triage_overdue, incident, dedupe=f"triage_overdue:{incident.id}"
            )
        return len(incidents)


def collect_digests() -> int:
    """Bundle each coordinator's pending events into one digest once the oldest waited
    ``KOKOMA_COORDINATOR_DIGEST_MINUTES``; returns how many digests were made."""
    settings = get_settings()
    minutes = settings.coordinator_digest_minutes
    if not settings.mail_enabled or not minutes:
        return 0
    now = get_clock().now()
    n = Notification
    with session_scope() as session:
        if is_postgresql(session) and not session.scalar(
            text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": _DIGEST_LOCK}
        ):
            return 0  # another worker is collecting: one digest per coordinator and period
        stmt = (
            select(col(n.id), col(n.kind), col(n.recipient), col(n.payload), col(n.created_at))
            .where(
                col(n.status) == NotificationStatus.pending.value,
                col(n.kind).in_(COORDINATOR_KINDS),
                col(n.digest_id).is_(None),
                col(n.recipient).is_not(None),
            )
            .order_by(col(n.created_at), col(n.id))
            .limit(2000)
        )
        if is_postgresql(session):
            stmt = stmt.with_for_update(skip_locked=True)
        by_recipient: dict[str, list[Any]] = defaultdict(list)
        for row in session.execute(stmt):
            by_recipient[row.recipient].append(row)
        made = 0
        for recipient, rows in by_recipient.items():
            if rows[0].created_at > now - timedelta(minutes=minutes):
                continue
            digest = notification_row(
                K.coordinator_digest,
                recipient,
                {"items": [{"kind": r.kind, **r.payload} for r in rows]},
                now,
                settings,
            )
            insert_notifications(session, [digest])
            session.execute(
                update(n)
                .where(col(n.id).in_([r.id for r in rows]))
                .values(digest_id=digest["id"], updated_at=now)
            )
            made += 1
        return made

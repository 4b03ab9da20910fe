"""Retention: reporter data of finished incidents is erased once its retention period ends."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import delete, or_, select
from sqlmodel import Session, col

from app.core.clock import get_clock
from app.core.config import get_settings
from app.core.db import affected_rows, session_scope
from app.core.security import SYSTEM_PRINCIPAL
from app.models.incident import Incident, IncidentStatus
from app.models.system import IdempotencyRecord
from app.services.privacy.erasure import erase_reporters

#: Incidents in these statuses are subject to reporter retention.
RETENTION_STATUSES = (IncidentStatus.closed, IncidentStatus.withdrawn, IncidentStatus.referred)
#: Incidents erased per retention transaction (the worker job drains the backlog batch by batch).
RETENTION_BATCH = 200


def retention_cutoff(today: date, days: int | None = None) -> datetime:
    """The instant before which a closing makes reporter data due for erasure.

    An incident closed (withdrawn, referred) on local date *D* keeps its reporter data while
    ``today - D <= days`` and loses it from the local date ``D + days + 1`` on: the cut-off is
    the start of the local day ``today - days`` (``KOKOMA_TIMEZONE``), in UTC.
    """
    days = get_settings().reporter_retention_days if days is None else days
    local = datetime.combine(today - timedelta(days=days), time(0), tzinfo=get_clock().tz)
    return local.astimezone(UTC)


def retention_ends_on(status_changed_at: datetime, days: int | None = None) -> date:
    """The first local date on which retention erases an incident closed at that instant."""
    days = get_settings().reporter_retention_days if days is None else days
    return status_changed_at.astimezone(get_clock().tz).date() + timedelta(days=days + 1)


def _due(cutoff: datetime) -> Any:
    return select(Incident).where(
        col(Incident.status).in_([s.value for s in RETENTION_STATUSES]),
        col(Incident.status_changed_at) < cutoff,
        or_(col(Incident.reporter_name).is_not(None), col(Incident.reporter_contact).is_not(None)),
    )


def retention_due(session: Session, today: date | None = None) -> list[str]:
    """References of the incidents whose reporter data retention would erase now (dry run)."""
    cutoff = retention_cutoff(today or get_clock().today())
    stmt = _due(cutoff).with_only_columns(Incident.reference).order_by(Incident.reference)
    return list(session.scalars(stmt))


def run_retention_batch(
    session: Session, *, today: date | None = None, limit: int = RETENTION_BATCH
) -> list[str]:
    """Erase the reporter data of up to ``limit`` due incidents; returns their references.

    Safe with several workers: on PostgreSQL the rows are locked with SKIP LOCKED (another worker
    takes the next ones); on SQLite writers are serialised; erasure re-checks under the lock.
    """
    cutoff = retention_cutoff(today or get_clock().today())
    stmt = _due(cutoff).order_by(Incident.status_changed_at, Incident.id).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    due = list(session.scalars(stmt).all())
    results = erase_reporters(session, due, SYSTEM_PRINCIPAL, reason="retention")
    return [r.reference for r in results if r.erased]


def purge_expired_idempotency_records(session: Session, now: datetime | None = None) -> int:
    """Delete idempotency records past their TTL (they may hold copies of personal data)."""
    result = session.execute(
        delete(IdempotencyRecord).where(
            col(IdempotencyRecord.expires_at) <= (now or get_clock().now())
        )
    )
    return affected_rows(result)


@dataclass(frozen=True, slots=True)
class RetentionReport:
    cutoff: datetime
    references: list[str]
    idempotency_purged: int
    dry_run: bool


def run_retention(*, dry_run: bool = False, today: date | None = None) -> RetentionReport:
    """``kokoma retention run``: erase everything due, batch by batch (or list it, dry run)."""
    today = today or get_clock().today()
    cutoff = retention_cutoff(today)
    if dry_run:
        with session_scope(write=False) as session:
            return RetentionReport(cutoff, retention_due(session, today), 0, True)
    references: list[str] = []
    while True:
        with session_scope() as session:
            erased = run_retention_batch(session, today=today)
        references.extend(erased)
        if len(erased) < RETENTION_BATCH:
            break
    with session_scope() as session:
        purged = purge_expired_idempotency_records(session)
    return RetentionReport(cutoff, references, purged, False)


def run_retention_once() -> int:
    """The ``kokoma worker`` job: one batch of erasures plus the idempotency purge."""
    with session_scope() as session:
        erased = run_retention_batch(session)
        purged = purge_expired_idempotency_records(session)
    return len(erased) + purged

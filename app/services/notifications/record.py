"""The notification record: the coordinators' API over it, and a manager's erasure from it."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlmodel import Session, col

from app.core.db import affected_rows
from app.core.pagination import PageParams, keyset, page_slice
from app.models.notification import (
    Notification,
    NotificationPublic,
    NotificationStatus,
)


@dataclass(frozen=True, slots=True)
class NotificationFilter:
    manager_id: uuid.UUID | None = None
    incident_id: uuid.UUID | None = None
    status: NotificationStatus | None = None


class NotificationService:
    def __init__(self, session: Session) -> None:
        self.session = session

    def page(
        self, flt: NotificationFilter, params: PageParams
    ) -> tuple[list[NotificationPublic], str | None]:
        n = Notification
        stmt = select(n)
        if flt.manager_id is not None:
            stmt = stmt.where(col(n.manager_id) == flt.manager_id)
        if flt.incident_id is not None:
            stmt = stmt.where(col(n.incident_id) == flt.incident_id)
        if flt.status is not None:
            stmt = stmt.where(col(n.status) == flt.status.value)
        stmt = keyset(stmt, [col(n.created_at), col(n.id)], params, descending=True)
        rows, cursor = page_slice(
            self.session.scalars(stmt).all(), params.limit, lambda r: [r.created_at, r.id]
        )
        return [
            NotificationPublic.model_validate(
                {
                    **r.model_dump(),
                    "next_attempt_at": (
                        r.next_attempt_at if r.status == NotificationStatus.pending else None
                    ),
                }
            )
            for r in rows
        ], cursor


def forget_manager(
    session: Session,
    manager_id: uuid.UUID,
    now: datetime,
    erase: Callable[[str | None], str | None] | None = None,
) -> int:
    """Manager erasure: their address leaves the record (also from SMTP error texts, through
    ``erase``); what was still pending is not sent."""
    n = Notification
    if erase is not None:
        for row_id, error in session.execute(
            select(col(n.id), col(n.last_error)).where(
                col(n.manager_id) == manager_id, col(n.last_error).is_not(None)
            )
        ).all():
            if erase(error) != error:
                session.execute(update(n).where(n.id == row_id).values(last_error=erase(error)))
    session.execute(
        update(n)
        .where(col(n.manager_id) == manager_id, col(n.status) == NotificationStatus.pending.value)
        .values(
            status=NotificationStatus.failed.value,
            last_error="recipient erased",
            locked_until=None,
            lease_token=None,
            updated_at=now,
        )
    )
    result = session.execute(
        update(n)
        .where(col(n.manager_id) == manager_id, col(n.recipient).is_not(None))
        .values(recipient=None, updated_at=now)
    )
    return affected_rows(result)

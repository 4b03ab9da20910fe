"""The record of e-mail notifications (admins and coordinators)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from app.api.deps import (
    AllowedNotificationsRead,
    PageDep,
    SessionDep,
)
from app.api.problems import problems
from app.models.common import Page
from app.models.notification import NotificationPublic, NotificationStatus
from app.services.notifications.record import NotificationFilter, NotificationService

router = APIRouter(prefix="/notifications", tags=["notifications"])
Staff = AllowedNotificationsRead


@router.get(
    "",
    summary="E-mail notifications, newest first: recipient, kind, status, attempts, last error",
    responses=problems(400, 403),
)
def notifications_list(
    session: SessionDep,
    _: Staff,
    page: PageDep,
    manager_id: uuid.UUID | None = None,
    incident_id: uuid.UUID | None = None,
    status: Annotated[
        NotificationStatus | None, Query(description="pending, sent or failed")
    ] = None,
) -> Page[NotificationPublic]:
    flt = NotificationFilter(manager_id=manager_id, incident_id=incident_id, status=status)
    items, cursor = NotificationService(session).page(flt, page)
    return Page(items=items, next_cursor=cursor)

"""Write domain events to the outbox, in the caller's transaction."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select, text
from sqlmodel import Session, col

from app.core.clock import get_clock
from app.models.outbox import WEBHOOK_EVENT_TYPES, OutboxEvent
from app.models.webhook import WebhookSubscription

#: PostgreSQL advisory lock that orders "is anybody listening?" (asked, shared, by bulk writers
#: that then skip the outbox) against a subscription starting to listen (exclusive).
_LISTENERS_LOCK = 0x6B6F6B6D61  # "kokma"


def emit(
    session: Session,
    event_type: str,
    data: dict[str, Any],
    *,
    organisation_id: uuid.UUID | None = None,
) -> OutboxEvent:
    """Record ``event_type`` with ``data`` (JSON-ready, no personal contact data)."""
    if event_type not in WEBHOOK_EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type}")
    event = OutboxEvent(
        event_type=event_type,
        payload=data,
        organisation_id=organisation_id,
        created_at=get_clock().now(),
    )
    session.add(event)
    return event


def listening(session: Session, event_type: str) -> bool:
    """Whether an active subscription takes ``event_type`` — asked by bulk writers (imports),
    which write no outbox rows for events that nobody could receive.

    The answer holds until the caller's transaction ends: on PostgreSQL the shared advisory lock
    taken here makes :func:`lock_listeners` (a subscription being created, re-activated or given
    new events) wait for it; on SQLite the caller's write transaction already excludes every other
    writer. So a subscription either exists before the bulk write asks, and gets its events, or
    starts after the write has committed, like any subscription that starts after an event.
    """
    if session.connection().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock_shared(:key)"), {"key": _LISTENERS_LOCK})
    subscribed = session.scalars(
        select(col(WebhookSubscription.events)).where(col(WebhookSubscription.active).is_(True))
    )
    return any(event_type in events for events in subscribed)


def lock_listeners(session: Session) -> None:
    """Call before a subscription starts listening (see :func:`listening`)."""
    if session.connection().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LISTENERS_LOCK})

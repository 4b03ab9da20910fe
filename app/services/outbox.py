"""Write domain events to the outbox, in the caller's transaction."""

from __future__ import annotations

import uuid
from typing import Any

from sqlmodel import Session

from app.core.clock import get_clock
from app.models.outbox import WEBHOOK_EVENT_TYPES, OutboxEvent


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

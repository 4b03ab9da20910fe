"""Fan-out: each outbox event becomes one delivery per matching active subscription."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col

from app.models.outbox import OutboxEvent
from app.models.webhook import (
    DeliveryStatus,
    WebhookDelivery,
    WebhookSubscription,
)

_MESSAGE_NAMESPACE = uuid.UUID("6f1c3f52-3f0e-4d55-9a53-7b3c6c1f2a10")


def message_id(event_id: uuid.UUID, subscription_id: uuid.UUID) -> str:
    """The ``webhook-id``: the same for an event and a subscription, whatever happens."""
    return "msg_" + uuid.uuid5(_MESSAGE_NAMESPACE, f"{event_id}:{subscription_id}").hex


def is_postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def fan_out(session: Session, now: datetime, limit: int = 500) -> int:
    """Turn up to ``limit`` pending outbox events into deliveries; return how many events."""
    stmt = (
        select(
            col(OutboxEvent.id),
            col(OutboxEvent.event_type),
            col(OutboxEvent.organisation_id),
            col(OutboxEvent.created_at),
        )
        .where(col(OutboxEvent.fanned_out_at).is_(None))
        .order_by(col(OutboxEvent.created_at), col(OutboxEvent.id))
        .limit(limit)
    )
    if is_postgresql(session):
        stmt = stmt.with_for_update(skip_locked=True)
    events = session.execute(stmt).all()
    if not events:
        return 0
    subscriptions = session.execute(
        select(
            col(WebhookSubscription.id),
            col(WebhookSubscription.events),
            col(WebhookSubscription.organisation_id),
            col(WebhookSubscription.created_at),
        ).where(col(WebhookSubscription.active).is_(True))
    ).all()
    rows = [
        {
            "id": uuid.uuid4(),
            "subscription_id": sub.id,
            "event_id": event.id,
            "event_type": event.event_type,
            "message_id": message_id(event.id, sub.id),
            "status": DeliveryStatus.pending.value,
            "attempts": 0,
            "next_attempt_at": now,
            "locked_until": None,
            "lease_token": None,
            "created_at": now,
            "delivered_at": None,
        }
        for event in events
        for sub in subscriptions
        if event.event_type in sub.events
        and (sub.organisation_id is None or sub.organisation_id == event.organisation_id)
        and sub.created_at <= event.created_at  # a subscription gets what happens from then on
    ]
    if rows:
        insert = pg_insert if is_postgresql(session) else sqlite_insert
        session.execute(
            insert(WebhookDelivery).on_conflict_do_nothing(
                index_elements=["subscription_id", "event_id"]
            ),
            rows,
        )
    session.execute(
        update(OutboxEvent)
        .where(col(OutboxEvent.id).in_([e.id for e in events]))
        .values(fanned_out_at=now)
    )
    return len(events)

"""The transactional outbox: domain events written in the same transaction as the change.

``kokoma worker`` fans them out to webhook subscriptions and delivers them (at least once, with a
stable ``webhook-id``). Payloads never carry reporter or manager contact data (data minimisation:
a subscriber that may see them fetches the record over the API with its own key).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Column, Index
from sqlalchemy import Uuid as SAUuid
from sqlmodel import Field, SQLModel

from app.models.base import JSONType, UTCDateTime, new_ordered_id, table_name, utcnow

WEBHOOK_EVENT_TYPES = (
    "incident.created",
    "incident.status_changed",
    "assignment.offered",
    "assignment.accepted",
    "assignment.declined",
    "assignment.expired",
    "recommendation.status_changed",
)


class OutboxEvent(SQLModel, table=True):
    __tablename__ = table_name("outbox_event")
    __table_args__ = (Index("ix_outbox_event_pending", "fanned_out_at", "created_at"),)

    id: uuid.UUID = Field(default_factory=new_ordered_id, primary_key=True)
    event_type: str = Field(max_length=64)
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType)
    #: The organisation whose data this is (partner subscriptions see only their own events).
    organisation_id: uuid.UUID | None = Field(default=None, sa_column=Column(SAUuid, nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    fanned_out_at: datetime | None = Field(default=None, sa_type=UTCDateTime)

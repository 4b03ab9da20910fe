"""Webhook subscriptions, their deliveries (one per event and subscription) and every attempt.

A delivery is created when ``kokoma worker`` fans an outbox event out to the matching
subscriptions; its ``message_id`` (the ``webhook-id`` header) is derived from the event and the
subscription, so it stays the same across retries, restarts and a repeated fan-out.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field as PField
from pydantic import StrictBool, StringConstraints, field_validator
from sqlalchemy import Column, ForeignKey, Index, Text, UniqueConstraint
from sqlalchemy import Uuid as SAUuid
from sqlmodel import Field, SQLModel

from app.models.base import JSONType, UTCDateTime, new_id, table_name, utcnow
from app.models.common import NotNull, RequestModel, ResponseModel, UTCTimestamp
from app.models.outbox import WEBHOOK_EVENT_TYPES

WebhookEventType = Literal[
    "incident.created",
    "incident.status_changed",
    "assignment.offered",
    "assignment.accepted",
    "assignment.declined",
    "assignment.expired",
    "recommendation.status_changed",
]
assert set(WebhookEventType.__args__) == set(WEBHOOK_EVENT_TYPES)


class DeliveryStatus(StrEnum):
    pending = "pending"
    delivered = "delivered"
    failed = "failed"  # gave up after KOKOMA_WEBHOOK_MAX_ATTEMPTS


class WebhookSubscription(SQLModel, table=True):
    __tablename__ = table_name("webhook_subscription")
    __table_args__ = (Index("ix_webhook_subscription_created_at_id", "created_at", "id"),)

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    url: str = Field(max_length=2000)
    events: list[str] = Field(default_factory=list, sa_type=JSONType)
    #: Set: only events of this organisation's data are delivered.
    organisation_id: uuid.UUID | None = Field(
        default=None,
        sa_column=Column(SAUuid, ForeignKey("organisation.id", ondelete="RESTRICT"), index=True),
    )
    #: ``whsec_`` + base64; needed in clear to sign, shown to the client once.
    secret: str = Field(max_length=200)
    active: bool = Field(default=True)
    version: int = Field(default=1)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class WebhookDelivery(SQLModel, table=True):
    """One event for one subscription: claimed by a worker with a lease, retried with backoff."""

    __tablename__ = table_name("webhook_delivery")
    __table_args__ = (
        UniqueConstraint("subscription_id", "event_id"),
        Index("ix_webhook_delivery_due", "status", "next_attempt_at"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    subscription_id: uuid.UUID = Field(
        sa_column=Column(
            SAUuid, ForeignKey("webhook_subscription.id", ondelete="CASCADE"), nullable=False
        )
    )
    event_id: uuid.UUID = Field(
        sa_column=Column(
            SAUuid, ForeignKey("outbox_event.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    event_type: str = Field(max_length=64)
    message_id: str = Field(max_length=64)
    status: str = Field(default=DeliveryStatus.pending, max_length=16)
    attempts: int = Field(default=0)
    next_attempt_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    #: Lease: a worker that claimed the delivery owns it until then (a crashed worker's claim
    #: simply runs out and another worker takes the delivery over).
    locked_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    lease_token: uuid.UUID | None = Field(default=None)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    delivered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class WebhookAttempt(SQLModel, table=True):
    __tablename__ = table_name("webhook_attempt")
    __table_args__ = (
        Index("ix_webhook_attempt_subscription_started", "subscription_id", "started_at", "id"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    delivery_id: uuid.UUID = Field(
        sa_column=Column(
            SAUuid,
            ForeignKey("webhook_delivery.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        )
    )
    subscription_id: uuid.UUID = Field(
        sa_column=Column(
            SAUuid, ForeignKey("webhook_subscription.id", ondelete="CASCADE"), nullable=False
        )
    )
    event_id: uuid.UUID = Field(sa_column=Column(SAUuid, nullable=False))
    event_type: str = Field(max_length=64)
    message_id: str = Field(max_length=64)
    attempt: int = Field()
    succeeded: bool = Field(default=False)
    status_code: int | None = Field(default=None)
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    started_at: datetime = Field(sa_type=UTCDateTime)
    finished_at: datetime = Field(sa_type=UTCDateTime)
    next_retry_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


# --- API schemas -------------------------------------------------------------------------------

#: The ``pattern`` is declared, not validated here: the service refuses other schemes and
#: private targets alike, as ``webhook-target-refused``.
WebhookUrl = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=8, max_length=2000),
    PField(json_schema_extra={"pattern": r"^\s*https?://[^\s/]+"}),
]


def _unique_events(value: list[str] | None) -> list[str] | None:
    return None if value is None else list(dict.fromkeys(value))


class WebhookCreate(RequestModel):
    url: WebhookUrl = PField(description="http(s) URL; private/loopback targets are refused")
    events: list[WebhookEventType] = PField(min_length=1, max_length=20)
    organisation_id: uuid.UUID | None = PField(
        default=None, description="Only events concerning this organisation's data"
    )

    _events = field_validator("events")(_unique_events)


class WebhookUpdate(RequestModel):
    url: Annotated[WebhookUrl | None, NotNull()] = None
    events: Annotated[list[WebhookEventType] | None, NotNull()] = PField(
        default=None, min_length=1, max_length=20
    )
    active: Annotated[StrictBool | None, NotNull()] = None

    _events = field_validator("events")(_unique_events)


class WebhookPublic(ResponseModel):
    id: uuid.UUID
    url: str
    events: list[str]
    organisation_id: uuid.UUID | None
    active: bool
    version: int
    created_at: UTCTimestamp
    updated_at: UTCTimestamp


class WebhookCreated(WebhookPublic):
    """Returned once, on creation: ``secret`` is never shown again."""

    secret: str = PField(description="whsec_… — verify signatures with it; shown only now")


class WebhookAttemptPublic(ResponseModel):
    id: uuid.UUID
    delivery_id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    webhook_id: str = PField(description="The webhook-id header (stable across retries)")
    attempt: int
    succeeded: bool
    status_code: int | None
    error: str | None
    started_at: UTCTimestamp
    finished_at: UTCTimestamp
    next_retry_at: UTCTimestamp | None = PField(
        description="When the next try is due; null after success or when the worker gave up"
    )

"""E-mail notifications: one row per message to one recipient, sent by ``kokoma worker``.

A row is written in the same transaction as the change it tells of (an offer, a withdrawal, a
slot nobody could fill) or by a worker timer (reminder, triage deadline), so a change that rolls
back never mails anybody. ``message_id`` (the ``Message-ID`` header) is fixed when the row is
written: a retry after a crash carries the same id. ``payload`` holds only what the mail shows —
references, codes, levels, times — never reporter data, descriptions or notes.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import Field as PField
from sqlalchemy import Column, Index, Text
from sqlalchemy import Uuid as SAUuid
from sqlmodel import Field, SQLModel

from app.models.base import JSONType, UTCDateTime, new_id, table_name, utcnow
from app.models.common import ResponseModel, UTCTimestamp
from app.models.privacy import personal


class NotificationStatus(StrEnum):
    pending = "pending"
    sent = "sent"
    failed = "failed"  # gave up after KOKOMA_MAIL_MAX_ATTEMPTS (or the recipient was erased)


class NotificationKind(StrEnum):
    # to the manager
    offer = "offer"
    offer_reminder = "offer_reminder"
    offer_withdrawn = "offer_withdrawn"
    # to the coordinators
    no_candidate = "no_candidate"
    offer_expired_unfilled = "offer_expired_unfilled"
    tandem_slot_open = "tandem_slot_open"
    coordinator_pick_required = "coordinator_pick_required"
    triage_overdue = "triage_overdue"
    coordinator_digest = "coordinator_digest"


MANAGER_KINDS = frozenset(
    {NotificationKind.offer, NotificationKind.offer_reminder, NotificationKind.offer_withdrawn}
)
#: Coordinator events: collected into a digest when KOKOMA_COORDINATOR_DIGEST_MINUTES is set.
COORDINATOR_EVENT_KINDS = frozenset(
    {
        NotificationKind.no_candidate,
        NotificationKind.offer_expired_unfilled,
        NotificationKind.tandem_slot_open,
        NotificationKind.coordinator_pick_required,
        NotificationKind.triage_overdue,
    }
)


class Notification(SQLModel, table=True):
    __tablename__ = table_name("notification")
    __table_args__ = (
        Index("ix_notification_due", "status", "next_attempt_at"),
        Index("ix_notification_created_at_id", "created_at", "id"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    kind: str = Field(max_length=40)
    #: The address; NULL once the manager it belonged to was erased.
    recipient: str | None = Field(default=None, max_length=320, sa_column_kwargs=personal())
    manager_id: uuid.UUID | None = Field(
        default=None, sa_column=Column(SAUuid, nullable=True, index=True)
    )
    incident_id: uuid.UUID | None = Field(
        default=None, sa_column=Column(SAUuid, nullable=True, index=True)
    )
    assignment_id: uuid.UUID | None = Field(default=None, sa_column=Column(SAUuid, nullable=True))
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType)
    message_id: str = Field(max_length=200)
    #: Once-only timers (reminder, triage deadline) and repeatable batch runs: one row per key.
    dedupe_key: str | None = Field(default=None, max_length=200, unique=True)
    #: The coordinator digest that carries this event (its status follows the digest's).
    digest_id: uuid.UUID | None = Field(
        default=None, sa_column=Column(SAUuid, nullable=True, index=True)
    )
    status: str = Field(default=NotificationStatus.pending, max_length=16)
    attempts: int = Field(default=0)
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    next_attempt_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    locked_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    lease_token: uuid.UUID | None = Field(default=None, sa_column=Column(SAUuid, nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class NotificationPublic(ResponseModel):
    id: uuid.UUID
    kind: NotificationKind
    recipient: str | None = PField(description="null once the manager was erased")
    manager_id: uuid.UUID | None
    incident_id: uuid.UUID | None
    assignment_id: uuid.UUID | None
    status: NotificationStatus
    attempts: int
    last_error: str | None
    message_id: str = PField(description="the Message-ID header, the same on every attempt")
    digest_id: uuid.UUID | None = PField(description="the coordinator digest that carried it")
    next_attempt_at: UTCTimestamp | None = PField(description="null once sent or failed")
    created_at: UTCTimestamp
    updated_at: UTCTimestamp
    sent_at: UTCTimestamp | None

"""Assignments: offers of an incident slot (lead or co) to a manager, and their answers.

Request/response schemas live in :mod:`app.models.assignment_schemas`.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Column, ForeignKey, Index, text
from sqlalchemy import Uuid as SAUuid
from sqlmodel import Field, SQLModel

from app.models.base import JSONType, UTCDateTime, new_id, table_name, utcnow
from app.models.privacy import personal


class AssignmentRole(StrEnum):
    lead = "lead"
    co = "co"


class AssignmentStatus(StrEnum):
    offered = "offered"
    accepted = "accepted"
    declined = "declined"
    expired = "expired"
    withdrawn = "withdrawn"
    completed = "completed"


OPEN_ASSIGNMENT_STATUSES = frozenset({AssignmentStatus.offered, AssignmentStatus.accepted})
_OPEN_SQL = "status IN ('offered', 'accepted')"


class Assignment(SQLModel, table=True):
    __tablename__ = table_name("assignment")
    __table_args__ = (
        # An incident never has two open leads (or two open cos) ...
        Index(
            "uq_assignment_open_slot",
            "incident_id",
            "role",
            unique=True,
            sqlite_where=text(_OPEN_SQL),
            postgresql_where=text(_OPEN_SQL),
        ),
        # ... and a manager holds at most one open assignment per incident.
        Index(
            "uq_assignment_open_manager",
            "incident_id",
            "manager_id",
            unique=True,
            sqlite_where=text(_OPEN_SQL),
            postgresql_where=text(_OPEN_SQL),
        ),
        Index("ix_assignment_manager_status", "manager_id", "status"),
        Index("ix_assignment_status_expires", "status", "expires_at"),
        Index("ix_assignment_created_at_id", "created_at", "id"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    incident_id: uuid.UUID = Field(
        sa_column=Column(
            SAUuid, ForeignKey("incident.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    manager_id: uuid.UUID = Field(
        sa_column=Column(SAUuid, ForeignKey("manager.id", ondelete="RESTRICT"), nullable=False)
    )
    role: str = Field(max_length=8)
    status: str = Field(default=AssignmentStatus.offered, max_length=16)
    offered_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    responded_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    ended_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    score: float | None = Field(default=None)
    reasons: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSONType)
    decline_reason: str | None = Field(
        default=None, max_length=2000, sa_column_kwargs=personal("free_text")
    )
    withdraw_reason: str | None = Field(
        default=None, max_length=2000, sa_column_kwargs=personal("free_text")
    )
    outcome: str | None = Field(
        default=None, max_length=5000, sa_column_kwargs=personal("free_text")
    )
    offered_by: uuid.UUID | None = Field(default=None)
    version: int = Field(default=1)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)

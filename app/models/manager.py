"""Conflict managers (mostly volunteers), their competences, served districts and absences.

Request/response schemas live in :mod:`app.models.manager_schemas`.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, Column, Date, ForeignKey, Index, String, true
from sqlalchemy import Uuid as SAUuid
from sqlmodel import Field, SQLModel

from app.models.base import JSONType, UTCDateTime, new_id, table_name, utcnow
from app.models.privacy import personal


class ManagerStatus(StrEnum):
    in_training = "in_training"
    active = "active"
    paused = "paused"
    retired = "retired"


MANAGER_TRANSITIONS: dict[ManagerStatus, frozenset[ManagerStatus]] = {
    ManagerStatus.in_training: frozenset({ManagerStatus.active, ManagerStatus.retired}),
    ManagerStatus.active: frozenset({ManagerStatus.paused, ManagerStatus.retired}),
    ManagerStatus.paused: frozenset({ManagerStatus.active, ManagerStatus.retired}),
    ManagerStatus.retired: frozenset(),
}


class Manager(SQLModel, table=True):
    __tablename__ = table_name("manager")
    __table_args__ = (
        CheckConstraint("max_open_assignments >= 1", name="max_open_positive"),
        CheckConstraint("open_assignments >= 0", name="open_non_negative"),
        # The last line of defence under app/services/dispatch/slots.py: never overbooked.
        CheckConstraint("open_assignments <= max_open_assignments", name="open_within_capacity"),
        Index("ix_manager_created_at_id", "created_at", "id"),
        # A district's roster from the indexes alone (migration 0011): who lives there, which
        # of them are active.
        Index("ix_manager_home_district_id", "home_district", "id"),
        Index("ix_manager_id_status", "id", "status"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    display_name: str = Field(max_length=200, sa_column_kwargs=personal())
    email: str = Field(max_length=320, unique=True, sa_column_kwargs=personal())
    phone: str | None = Field(default=None, max_length=50, sa_column_kwargs=personal())
    organisation_id: uuid.UUID | None = Field(
        default=None,
        sa_column=Column(SAUuid, ForeignKey("organisation.id", ondelete="RESTRICT"), index=True),
    )
    status: str = Field(default=ManagerStatus.in_training, max_length=32, index=True)
    home_district: str = Field(
        sa_column=Column(
            String(64), ForeignKey("district.code", ondelete="RESTRICT"), nullable=False
        )
    )
    languages: list[str] = Field(default_factory=list, sa_type=JSONType)
    max_open_assignments: int = Field(default=2)
    # Live count of offered + accepted assignments, changed only by atomic conditional UPDATEs in
    # the dispatch service (never read-modify-write): the capacity guarantee rests on it.
    open_assignments: int = Field(default=0)
    last_assigned_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    #: Offers, reminders and withdrawals by e-mail (the manager may change it).
    notify_by_email: bool = Field(default=True, sa_column_kwargs={"server_default": true()})
    #: Set when an admin erased the (retired) manager's name and contact data.
    erased_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    version: int = Field(default=1)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class ManagerDistrict(SQLModel, table=True):
    """Districts a manager serves besides the home district."""

    __tablename__ = table_name("manager_district")
    # Who serves a district, from the index alone (a district's roster; migration 0011).
    __table_args__ = (Index("ix_manager_district_district_manager", "district_code", "manager_id"),)

    manager_id: uuid.UUID = Field(
        sa_column=Column(SAUuid, ForeignKey("manager.id", ondelete="CASCADE"), primary_key=True)
    )
    district_code: str = Field(
        sa_column=Column(
            String(64),
            ForeignKey("district.code", ondelete="RESTRICT"),
            primary_key=True,
        )
    )


class ManagerCompetence(SQLModel, table=True):
    __tablename__ = table_name("manager_competence")
    __table_args__ = (
        CheckConstraint(
            "expires_on IS NULL OR expires_on >= certified_on", name="expiry_after_certification"
        ),
        # Which certificates are valid on a day, from the index alone (migration 0011).
        Index(
            "ix_manager_competence_validity",
            "manager_id",
            "competence_code",
            "certified_on",
            "expires_on",
        ),
    )

    manager_id: uuid.UUID = Field(
        sa_column=Column(SAUuid, ForeignKey("manager.id", ondelete="CASCADE"), primary_key=True)
    )
    competence_code: str = Field(
        sa_column=Column(
            String(64),
            ForeignKey("competence.code", ondelete="RESTRICT"),
            primary_key=True,
            index=True,
        )
    )
    certified_on: date = Field(sa_column=Column(Date, nullable=False))
    expires_on: date | None = Field(default=None, sa_column=Column(Date, nullable=True))


class Absence(SQLModel, table=True):
    __tablename__ = table_name("absence")
    __table_args__ = (
        CheckConstraint("ends_on >= starts_on", name="ends_after_start"),
        Index("ix_absence_manager_dates", "manager_id", "starts_on", "ends_on"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    manager_id: uuid.UUID = Field(
        sa_column=Column(SAUuid, ForeignKey("manager.id", ondelete="CASCADE"), nullable=False)
    )
    starts_on: date = Field(sa_column=Column(Date, nullable=False))
    ends_on: date = Field(sa_column=Column(Date, nullable=False))
    reason: str | None = Field(default=None, max_length=500, sa_column_kwargs=personal())
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)

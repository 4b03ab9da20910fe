"""Recommendations (*Handlungsempfehlungen*) of the steering group to the city administration.

A recommendation links districts and incidents (its evidence), moves through a lifecycle and keeps
a timeline of events (who, when, what). ``progress`` is 0–100 and 100 exactly when implemented —
guarded by the service and, as a last line, by a CHECK constraint.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import Field as PField
from pydantic import StringConstraints
from sqlalchemy import (
    CheckConstraint,
    Column,
    Date,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy import Uuid as SAUuid
from sqlmodel import Field, SQLModel

from app.models.base import JSONType, UTCDateTime, new_id, table_name, utcnow
from app.models.common import (
    DistrictCode,
    LongText,
    Note,
    NotNull,
    RequestModel,
    ResponseModel,
    ShortText,
    UTCTimestamp,
)
from app.models.privacy import personal


class RecommendationCategory(StrEnum):
    deployment_concept = "deployment_concept"
    competence_building = "competence_building"
    protection_of_civil_society = "protection_of_civil_society"
    networking = "networking"
    prevention = "prevention"
    other = "other"


class RecommendationStatus(StrEnum):
    draft = "draft"
    submitted = "submitted"
    accepted = "accepted"
    rejected = "rejected"
    in_implementation = "in_implementation"
    implemented = "implemented"
    withdrawn = "withdrawn"


RS = RecommendationStatus
#: The lifecycle of DESIGN §1 (any other transition → 409): draft → submitted → accepted | rejected;
#: accepted → in_implementation → implemented; any status but implemented (and withdrawn itself)
#: → withdrawn.
RECOMMENDATION_TRANSITIONS: dict[RecommendationStatus, frozenset[RecommendationStatus]] = {
    RS.draft: frozenset({RS.submitted, RS.withdrawn}),
    RS.submitted: frozenset({RS.accepted, RS.rejected, RS.withdrawn}),
    RS.accepted: frozenset({RS.in_implementation, RS.withdrawn}),
    RS.rejected: frozenset({RS.withdrawn}),
    RS.in_implementation: frozenset({RS.implemented, RS.withdrawn}),
    RS.implemented: frozenset(),
    RS.withdrawn: frozenset(),
}
#: A recommendation in one of these statuses is never overdue.
CLOSED_RECOMMENDATION_STATUSES = frozenset({RS.implemented, RS.rejected, RS.withdrawn})


class Recommendation(SQLModel, table=True):
    __tablename__ = table_name("recommendation")
    __table_args__ = (
        CheckConstraint("progress BETWEEN 0 AND 100", name="progress_range"),
        CheckConstraint(
            "(status = 'implemented' AND progress = 100)"
            " OR (status <> 'implemented' AND progress < 100)",
            name="progress_complete_iff_implemented",
        ),
        Index("ix_recommendation_created_at_id", "created_at", "id"),
        Index("ix_recommendation_status_due_on", "status", "due_on"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    reference: str = Field(max_length=20, unique=True)
    title: str = Field(max_length=200)
    body: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    category: str = Field(max_length=40, index=True)
    issued_by: uuid.UUID = Field(
        sa_column=Column(
            SAUuid, ForeignKey("organisation.id", ondelete="RESTRICT"), nullable=False, index=True
        )
    )
    addressee: uuid.UUID = Field(
        sa_column=Column(
            SAUuid, ForeignKey("organisation.id", ondelete="RESTRICT"), nullable=False, index=True
        )
    )
    status: str = Field(default=RecommendationStatus.draft, max_length=20)
    progress: int = Field(default=0)
    due_on: date | None = Field(default=None, sa_column=Column(Date, nullable=True))
    created_by: uuid.UUID | None = Field(default=None)
    version: int = Field(default=1)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    status_changed_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    implemented_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class RecommendationDistrict(SQLModel, table=True):
    """The districts a recommendation concerns."""

    __tablename__ = table_name("recommendation_district")

    recommendation_id: uuid.UUID = Field(
        sa_column=Column(
            SAUuid, ForeignKey("recommendation.id", ondelete="CASCADE"), primary_key=True
        )
    )
    district_code: str = Field(
        sa_column=Column(
            String(64),
            ForeignKey("district.code", ondelete="RESTRICT"),
            primary_key=True,
            index=True,
        )
    )


class RecommendationIncident(SQLModel, table=True):
    """An incident cited as evidence for a recommendation."""

    __tablename__ = table_name("recommendation_incident")

    recommendation_id: uuid.UUID = Field(
        sa_column=Column(
            SAUuid, ForeignKey("recommendation.id", ondelete="CASCADE"), primary_key=True
        )
    )
    incident_id: uuid.UUID = Field(
        sa_column=Column(
            SAUuid, ForeignKey("incident.id", ondelete="CASCADE"), primary_key=True, index=True
        )
    )


class RecommendationEvent(SQLModel, table=True):
    """One entry of a recommendation's timeline: who did what, when.

    ``seq`` numbers a recommendation's events 1, 2, 3, … (taken while the recommendation row is
    locked), so the timeline keeps its order even when several events share one instant.
    """

    __tablename__ = table_name("recommendation_event")
    __table_args__ = (
        UniqueConstraint("recommendation_id", "seq", name="uq_recommendation_event_seq"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    recommendation_id: uuid.UUID = Field(
        sa_column=Column(
            SAUuid, ForeignKey("recommendation.id", ondelete="CASCADE"), nullable=False
        )
    )
    seq: int = Field()
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    type: str = Field(max_length=40)
    actor_id: uuid.UUID | None = Field(default=None)
    actor_role: str = Field(max_length=32)
    #: ``api_key:<id>``, ``oidc:<sub>`` or ``system`` (NULL on entries older than sign-in)
    actor_subject: str | None = Field(default=None, max_length=300)
    #: the key's name or the person's display name at the time
    actor_name: str | None = Field(default=None, max_length=200, sa_column_kwargs=personal())
    from_status: str | None = Field(default=None, max_length=20)
    to_status: str | None = Field(default=None, max_length=20)
    note: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    data: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType)


# --- API schemas -------------------------------------------------------------------------------

ResetNote = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=5_000)]


class RecommendationCreate(RequestModel):
    title: ShortText
    body: LongText = PField(default="", description="Markdown")
    category: RecommendationCategory
    issued_by: uuid.UUID = PField(description="Organisation id, e.g. the steering group")
    addressee: uuid.UUID = PField(description="Organisation id of the addressed department")
    due_on: date | None = None
    progress: int = PField(
        default=0, ge=0, le=100, description="0–99 (100 only once implemented → else 409)"
    )
    districts: list[DistrictCode] = PField(default_factory=list, max_length=100)
    incident_ids: list[uuid.UUID] = PField(default_factory=list, max_length=500)


class RecommendationStatusChange(RequestModel):
    """``POST …/status``: the target status (a transition the lifecycle does not allow → 409)."""

    status: RecommendationStatus
    note: Note | None = None


class RecommendationUpdate(RequestModel):
    """PATCH: every field optional; ``status`` is read-only here (use ``POST …/status``).

    ``progress`` never decreases, except together with a ``reset_note`` (recorded on the
    timeline). 100 only by the transition to ``implemented``.
    """

    title: Annotated[ShortText | None, NotNull()] = None
    body: LongText | None = None
    category: Annotated[RecommendationCategory | None, NotNull()] = None
    issued_by: Annotated[uuid.UUID | None, NotNull()] = None
    addressee: Annotated[uuid.UUID | None, NotNull()] = None
    due_on: date | None = None
    progress: Annotated[int | None, NotNull()] = PField(default=None, ge=0, le=100)
    reset_note: ResetNote | None = PField(
        default=None, description="Required to lower progress; only allowed when lowering it"
    )
    districts: list[DistrictCode] | None = PField(default=None, max_length=100)
    incident_ids: list[uuid.UUID] | None = PField(default=None, max_length=500)


class EvidencePublic(ResponseModel):
    """An incident cited as evidence: its reference and title only (never reporter data)."""

    incident_id: uuid.UUID
    reference: str
    title: str


class RecommendationPublic(ResponseModel):
    id: uuid.UUID
    reference: str
    title: str
    body: str
    category: RecommendationCategory
    issued_by: uuid.UUID
    addressee: uuid.UUID
    status: RecommendationStatus
    progress: int
    due_on: date | None
    overdue: bool = PField(description="due_on passed and not implemented/rejected/withdrawn")
    districts: list[str]
    incident_ids: list[uuid.UUID]
    evidence: list[EvidencePublic]
    version: int
    created_at: UTCTimestamp
    updated_at: UTCTimestamp
    status_changed_at: UTCTimestamp
    implemented_at: UTCTimestamp | None


class RecommendationEventPublic(ResponseModel):
    id: uuid.UUID
    recommendation_id: uuid.UUID
    seq: int = PField(description="1, 2, 3, … in the order the events happened")
    at: UTCTimestamp
    type: str
    actor_id: uuid.UUID | None = PField(description="The API key's id (null for a person)")
    actor_role: str
    actor_subject: str | None = PField(
        description="api_key:<id>, oidc:<sub> (a signed-in person) or system"
    )
    actor_name: str | None = PField(
        description="The API key's name or the person's display name at the time"
    )
    from_status: str | None
    to_status: str | None
    note: str | None
    data: dict[str, Any]


class ReportItem(ResponseModel):
    id: uuid.UUID
    reference: str
    title: str
    category: RecommendationCategory
    addressee: uuid.UUID
    addressee_name: str
    status: RecommendationStatus
    progress: int
    due_on: date | None
    overdue: bool
    days_overdue: int | None
    evidence_count: int
    districts: list[str]


class AddresseeSummary(ResponseModel):
    addressee: uuid.UUID
    addressee_name: str
    by_status: dict[str, int] = PField(description="Every status, 0 included")
    total: int
    overdue: int
    average_progress: float | None = PField(
        description="Mean progress over the recommendations not rejected or withdrawn"
    )


class RecommendationReport(ResponseModel):
    """The steering group's report (also rendered as Markdown)."""

    generated_on: date
    total: int
    overdue: int
    by_addressee: list[AddresseeSummary]
    overdue_items: list[ReportItem]
    items: list[ReportItem]

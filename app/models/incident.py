"""Incidents (conflicts), their required competences, timeline events and notes."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import Field as PField
from pydantic import StrictBool, StringConstraints, WithJsonSchema, field_validator
from sqlalchemy import CheckConstraint, Column, Float, ForeignKey, Index, String, Text
from sqlalchemy import Uuid as SAUuid
from sqlmodel import Field, SQLModel

from app.models.base import JSONType, UTCDateTime, new_id, new_ordered_id, table_name, utcnow
from app.models.common import (
    DistrictCode,
    LongText,
    Note,
    NotNull,
    RequestModel,
    ResponseModel,
    ShortText,
    Slug,
    UTCTimestamp,
)
from app.models.privacy import personal, personal_info
from app.models.tally import ROW_TRIGGERS


class IncidentCategory(StrEnum):
    right_wing_extremism = "right_wing_extremism"
    racism_discrimination = "racism_discrimination"
    antisemitism = "antisemitism"
    hate_speech = "hate_speech"
    threat_to_civil_society = "threat_to_civil_society"
    neighbourhood_dispute = "neighbourhood_dispute"
    public_space = "public_space"
    youth_conflict = "youth_conflict"
    other = "other"


class IncidentStatus(StrEnum):
    reported = "reported"
    triaged = "triaged"
    dispatched = "dispatched"
    in_progress = "in_progress"
    resolved = "resolved"
    closed = "closed"
    withdrawn = "withdrawn"
    referred = "referred"


class IncidentSource(StrEnum):
    hotline = "hotline"
    web = "web"
    partner = "partner"
    import_ = "import"
    open311 = "open311"


OPEN_INCIDENT_STATUSES = frozenset(
    {
        IncidentStatus.reported,
        IncidentStatus.triaged,
        IncidentStatus.dispatched,
        IncidentStatus.in_progress,
    }
)

S = IncidentStatus
#: Every transition of the lifecycle (DESIGN §1); anything else is a 409.
INCIDENT_TRANSITIONS: dict[IncidentStatus, frozenset[IncidentStatus]] = {
    S.reported: frozenset({S.triaged, S.withdrawn, S.referred}),
    S.triaged: frozenset({S.dispatched, S.withdrawn, S.referred}),
    S.dispatched: frozenset({S.in_progress, S.triaged, S.referred}),
    S.in_progress: frozenset({S.resolved, S.triaged, S.referred}),
    S.resolved: frozenset({S.closed}),
    S.closed: frozenset(),
    S.withdrawn: frozenset(),
    S.referred: frozenset(),
}
#: Transitions only dispatch may make; by hand they are refused with 409.
DISPATCH_ONLY_TRANSITIONS = frozenset({(S.triaged, S.dispatched), (S.dispatched, S.in_progress)})


class Incident(SQLModel, table=True):
    __tablename__ = table_name("incident")
    __table_args__ = (
        CheckConstraint("escalation_level BETWEEN 1 AND 9", name="escalation_range"),
        Index("uq_incident_source_external_id", "source", "external_id", unique=True),
        Index("ix_incident_created_at_id", "created_at", "id"),
        Index("ix_incident_status_district", "status", "district"),
        Index("ix_incident_reported_at", "reported_at"),
        # One per common list filter, ending in the keyset order (migration 0005, bench/README.md)
        Index("ix_incident_district_created_at_id", "district", "created_at", "id"),
        Index("ix_incident_status_created_at_id", "status", "created_at", "id"),
        Index("ix_incident_category_created_at_id", "category", "created_at", "id"),
        # Statistics of one district: its first/last report, its part of a date range (0009)
        Index("ix_incident_district_reported_at", "district", "reported_at"),
        # The incident tally's triggers (0009): on SQLite row triggers (app.repositories.bulk)
        {"info": {ROW_TRIGGERS: True}},
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    reference: str = Field(max_length=20, unique=True)
    title: str = Field(max_length=200, sa_column_kwargs=personal("free_text"))
    description: str = Field(
        default="",
        sa_column=Column(Text, nullable=False, default="", info=personal_info("free_text")),
    )
    district: str = Field(
        sa_column=Column(
            String(64), ForeignKey("district.code", ondelete="RESTRICT"), nullable=False
        )
    )
    lat: float | None = Field(default=None, sa_column=Column(Float, nullable=True))
    lon: float | None = Field(default=None, sa_column=Column(Float, nullable=True))
    category: str = Field(max_length=40)
    escalation_level: int = Field()
    languages: list[str] = Field(default_factory=list, sa_type=JSONType)
    status: str = Field(default=IncidentStatus.reported, max_length=20)
    occurred_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    reported_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    status_changed_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    source: str = Field(default=IncidentSource.web, max_length=16)
    external_id: str | None = Field(default=None, max_length=200)
    organisation_id: uuid.UUID | None = Field(
        default=None,
        sa_column=Column(SAUuid, ForeignKey("organisation.id", ondelete="RESTRICT"), index=True),
    )
    has_reporter: bool = Field(default=False)
    reporter_name: str | None = Field(default=None, max_length=200, sa_column_kwargs=personal())
    reporter_contact: str | None = Field(default=None, max_length=320, sa_column_kwargs=personal())
    reporter_anonymous: bool = Field(default=False)
    #: When the reporter's name and contact were last erased (on request or by retention).
    reporter_erased_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    version: int = Field(default=1)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class IncidentCompetence(SQLModel, table=True):
    __tablename__ = table_name("incident_competence")
    # The district profile's gap counts: one index range per district (migration 0010)
    __table_args__ = (
        Index("ix_incident_competence_district_competence", "district", "competence_code"),
    )

    incident_id: uuid.UUID = Field(
        sa_column=Column(SAUuid, ForeignKey("incident.id", ondelete="CASCADE"), primary_key=True)
    )
    competence_code: str = Field(
        sa_column=Column(
            String(64),
            ForeignKey("competence.code", ondelete="RESTRICT"),
            primary_key=True,
            index=True,
        )
    )
    #: The incident's district, given by every writer; a trigger on ``incident`` moves the
    #: links with their incident (migration 0010)
    district: str = Field(sa_column=Column(String(64), nullable=False))


class IncidentEvent(SQLModel, table=True):
    """One entry of an incident's timeline: every change is one."""

    __tablename__ = table_name("incident_event")
    __table_args__ = (Index("ix_incident_event_incident_at", "incident_id", "at", "id"),)

    # time-ordered: entries of one instant (one request, a pinned clock) keep their order
    id: uuid.UUID = Field(default_factory=new_ordered_id, primary_key=True)
    incident_id: uuid.UUID = Field(
        sa_column=Column(SAUuid, ForeignKey("incident.id", ondelete="CASCADE"), nullable=False)
    )
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
    note: str | None = Field(
        default=None, sa_column=Column(Text, nullable=True, info=personal_info("free_text"))
    )
    data: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType)


class IncidentNote(SQLModel, table=True):
    __tablename__ = table_name("incident_note")
    __table_args__ = (Index("ix_incident_note_incident_created", "incident_id", "created_at"),)

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    incident_id: uuid.UUID = Field(
        sa_column=Column(SAUuid, ForeignKey("incident.id", ondelete="CASCADE"), nullable=False)
    )
    text: str = Field(sa_column=Column(Text, nullable=False, info=personal_info("free_text")))
    author_id: uuid.UUID | None = Field(default=None)
    author_role: str = Field(max_length=32)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


# --- API schemas -------------------------------------------------------------------------------

#: ISO 639-1; the schema names the codes (components.schemas.LanguageCode, app/api/openapi.py).
LanguageCode = Annotated[
    str,
    StringConstraints(min_length=2, max_length=2, pattern=r"^[a-z]{2}$"),
    WithJsonSchema({"$ref": "#/components/schemas/LanguageCode"}),
]


class Location(RequestModel):
    lat: float = PField(ge=-90, le=90)
    lon: float = PField(ge=-180, le=180)


class Reporter(RequestModel):
    name: ShortText | None = None
    contact: Annotated[str, StringConstraints(strip_whitespace=True, max_length=320)] | None = None
    anonymous: StrictBool = False


def _check_languages(value: list[str] | None) -> list[str] | None:
    if value is None:
        return None
    from app.models.languages import validate_language_codes

    return validate_language_codes(value)


class IncidentCreate(RequestModel):
    title: ShortText
    description: LongText = ""
    district: DistrictCode
    location: Location | None = None
    category: IncidentCategory
    escalation_level: int = PField(ge=1, le=9, description="Glasl stage 1–9")
    required_competences: list[Slug] = PField(default_factory=list, max_length=20)
    languages: list[LanguageCode] = PField(default_factory=list, max_length=20)
    occurred_at: UTCTimestamp | None = None
    reported_at: UTCTimestamp | None = None
    source: IncidentSource = IncidentSource.web
    external_id: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    organisation_id: uuid.UUID | None = None
    reporter: Reporter | None = None

    _langs = field_validator("languages")(_check_languages)


class IncidentStatusChange(RequestModel):
    """``POST …/status``: the target status (a transition the lifecycle does not allow → 409)."""

    status: IncidentStatus
    note: Note | None = None


class IncidentUpdate(RequestModel):
    """PATCH: every field optional; ``status`` is read-only here (use ``POST …/status``)."""

    title: Annotated[ShortText | None, NotNull()] = None
    description: LongText | None = None
    district: Annotated[DistrictCode | None, NotNull()] = None
    location: Location | None = None
    category: Annotated[IncidentCategory | None, NotNull()] = None
    escalation_level: Annotated[int | None, NotNull()] = PField(default=None, ge=1, le=9)
    required_competences: list[Slug] | None = PField(default=None, max_length=20)
    languages: list[LanguageCode] | None = PField(default=None, max_length=20)
    occurred_at: UTCTimestamp | None = None
    external_id: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    reporter: Reporter | None = None

    _langs = field_validator("languages")(_check_languages)


class LocationPublic(ResponseModel):
    lat: float
    lon: float


class ReporterPublic(ResponseModel):
    name: str | None
    contact: str | None
    anonymous: bool


class IncidentPublic(ResponseModel):
    id: uuid.UUID
    reference: str
    title: str
    description: str
    district: str
    location: LocationPublic | None
    category: IncidentCategory
    escalation_level: int
    required_competences: list[str]
    languages: list[str]
    status: IncidentStatus
    occurred_at: UTCTimestamp | None
    reported_at: UTCTimestamp
    source: IncidentSource
    external_id: str | None
    organisation_id: uuid.UUID | None
    reporter: ReporterPublic | None = PField(
        description="null when absent or when the caller's role may not see reporter data"
    )
    open_slots: list[Literal["lead", "co"]] = PField(
        default_factory=list,
        description="While dispatched or in progress: the slots no manager holds (offered, "
        'accepted or completed) — e.g. ["co"] for a tandem incident whose co slot found '
        "nobody; empty otherwise",
    )
    version: int
    created_at: UTCTimestamp
    updated_at: UTCTimestamp


class IncidentPublicRedacted(IncidentPublic):
    """The incident as a caller sees it whose role may not see its reporter (redaction,
    :mod:`app.services.visibility`): the same shape as :class:`IncidentPublic` — DESIGN.md: a
    hidden ``reporter`` is ``null`` — with ``reporter`` always ``null``. Webhook payloads carry
    it in the same shape (built without a model pass by
    ``app.services.incident_records.incident_webhook_view``)."""

    # the field keeps the base's type (a field is invariant); the validator keeps it null
    reporter: ReporterPublic | None = PField(
        default=None, description="always null: the caller's role may not see reporter data"
    )

    @field_validator("reporter")
    @classmethod
    def _no_reporter(cls, value: ReporterPublic | None) -> None:
        if value is not None:
            raise ValueError("a redacted incident carries no reporter")
        return None


class IncidentEventPublic(ResponseModel):
    id: uuid.UUID
    incident_id: uuid.UUID
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
    note: str | None = PField(
        description="Free text; null for a manager who has not accepted an assignment on the "
        "incident (notes may name people)"
    )
    data: dict[str, Any]


class NoteCreate(RequestModel):
    text: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=10_000)]


class IncidentNotePublic(ResponseModel):
    id: uuid.UUID
    incident_id: uuid.UUID
    text: str
    author_id: uuid.UUID | None
    author_role: str
    created_at: UTCTimestamp

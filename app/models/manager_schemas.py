"""Request and response schemas of the managers resource (tables: :mod:`app.models.manager`).

Views by role (DESIGN §4, issue 3):

* :class:`ManagerPublic` — every field. Admins and coordinators see everything; a ``manager`` key
  sees its own record in full and other managers with ``email``/``phone`` set to ``null``.
* :class:`ManagerPublicRedacted` — partners and viewers: only ``id``, ``display_name``, ``status``,
  ``home_district``, ``districts``, ``languages`` and ``available_today``; ``email`` and ``phone``
  are always ``null`` (no contact data, no competences, organisation or load).
"""

from __future__ import annotations

import uuid
from datetime import date
from enum import StrEnum
from typing import Annotated

from pydantic import (
    AfterValidator,
    ConfigDict,
    EmailStr,
    StrictBool,
    StringConstraints,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic import Field as PField

from app.models.common import (
    DistrictCode,
    Note,
    NotNull,
    Page,
    RequestModel,
    ResponseModel,
    ShortText,
    Slug,
    UTCTimestamp,
)
from app.models.manager import ManagerStatus

#: ISO 639-1; the schema names the codes (components.schemas.LanguageCode, app/api/openapi.py).
LanguageCode = Annotated[
    str,
    StringConstraints(min_length=2, max_length=2, pattern=r"^[a-z]{2}$"),
    WithJsonSchema({"$ref": "#/components/schemas/LanguageCode"}),
]
Phone = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=3, max_length=50, pattern=r"^\+?[0-9][0-9 ()/.\-]*$"
    ),
]
#: E-mail addresses are stored lower-cased: uniqueness (and import upserts) ignore case.
Email = Annotated[
    EmailStr,
    AfterValidator(lambda value: value.lower()),
    PField(
        description="An e-mail address; special-use domains (e.g. .local, .invalid) are refused"
    ),
]


class InitialManagerStatus(StrEnum):
    """A new manager starts ``in_training`` (the lifecycle's start) or, when already trained,
    ``active``; any other status at creation → 422."""

    in_training = "in_training"
    active = "active"


class CompetenceHoldingIn(RequestModel):
    """``expires_on`` must not be before ``certified_on`` (422)."""

    code: Slug
    certified_on: date
    expires_on: date | None = PField(default=None, description="null: does not expire")

    @model_validator(mode="after")
    def _expiry_after_certification(self) -> CompetenceHoldingIn:
        if self.expires_on is not None and self.expires_on < self.certified_on:
            raise ValueError("expires_on must not be before certified_on")
        return self


class CompetenceHoldingPublic(ResponseModel):
    code: str
    certified_on: date
    expires_on: date | None


class ExpiringCompetence(ResponseModel):
    code: str
    expires_on: date


def _languages(value: list[str] | None) -> list[str] | None:
    if value is None:
        return None
    from app.models.languages import validate_language_codes

    return validate_language_codes(value)


def _distinct(value: list[str] | None) -> list[str] | None:
    return None if value is None else list(dict.fromkeys(value))


def _no_duplicate_competences(
    value: list[CompetenceHoldingIn] | None,
) -> list[CompetenceHoldingIn] | None:
    if value is None:
        return None
    codes = [holding.code for holding in value]
    duplicates = sorted({code for code in codes if codes.count(code) > 1})
    if duplicates:
        raise ValueError(f"competence listed more than once: {', '.join(duplicates)}")
    return value


class ManagerCreate(RequestModel):
    display_name: ShortText
    email: Email
    phone: Phone | None = None
    organisation_id: uuid.UUID | None = None
    status: InitialManagerStatus = InitialManagerStatus.in_training
    home_district: DistrictCode
    districts: list[DistrictCode] = PField(
        default_factory=list, max_length=100, description="Districts served besides home"
    )
    languages: list[LanguageCode] = PField(default_factory=list, max_length=20)
    max_open_assignments: int = PField(default=2, ge=1, le=100)
    competences: list[CompetenceHoldingIn] = PField(
        default_factory=list, max_length=50, description="Each competence at most once (else 422)"
    )
    notify_by_email: StrictBool = PField(
        default=True, description="offers, reminders and withdrawals by e-mail"
    )

    _langs = field_validator("languages")(_languages)
    _districts = field_validator("districts")(_distinct)
    _competences = field_validator("competences")(_no_duplicate_competences)


class ManagerStatusChange(RequestModel):
    """``POST …/status``: the target status (a transition the lifecycle does not allow → 409)."""

    status: ManagerStatus
    note: Note | None = None


class ManagerUpdate(RequestModel):
    """PATCH: every field optional; ``status`` is read-only here (use ``POST …/status``).

    ``districts``, ``languages`` and ``competences`` replace the whole list when given.
    """

    display_name: Annotated[ShortText | None, NotNull()] = None
    email: Annotated[Email | None, NotNull()] = None
    phone: Phone | None = None
    organisation_id: uuid.UUID | None = None
    home_district: Annotated[DistrictCode | None, NotNull()] = None
    districts: Annotated[list[DistrictCode] | None, NotNull()] = PField(
        default=None, max_length=100
    )
    languages: Annotated[list[LanguageCode] | None, NotNull()] = PField(default=None, max_length=20)
    max_open_assignments: Annotated[int | None, NotNull()] = PField(default=None, ge=1, le=100)
    competences: Annotated[list[CompetenceHoldingIn] | None, NotNull()] = PField(
        default=None, max_length=50, description="Each competence at most once (else 422)"
    )
    notify_by_email: Annotated[StrictBool | None, NotNull()] = PField(
        default=None, description="a manager key may change this on its own record"
    )

    _langs = field_validator("languages")(_languages)
    _districts = field_validator("districts")(_distinct)
    _competences = field_validator("competences")(_no_duplicate_competences)


class ManagerPublic(ResponseModel):
    id: uuid.UUID
    display_name: str
    email: str | None = PField(description="null when the caller's role may not see contact data")
    phone: str | None = PField(description="null when absent or hidden from the caller's role")
    organisation_id: uuid.UUID | None
    status: ManagerStatus
    home_district: str
    districts: list[str]
    languages: list[str]
    max_open_assignments: int
    notify_by_email: bool = PField(description="offers, reminders and withdrawals by e-mail")
    competences: list[CompetenceHoldingPublic] = PField(
        description="All held competences; expired ones are listed (for renewal) but count nowhere"
    )
    available_today: bool = PField(description="active and no absence covering today")
    open_assignments: int = PField(description="Offered + accepted assignments (live count)")
    expiring_competences: list[ExpiringCompetence] = PField(
        description="Competences valid today whose expires_on is within the next 60 days"
    )
    version: int
    created_at: UTCTimestamp
    updated_at: UTCTimestamp


class ManagerPublicRedacted(ResponseModel):
    """What partners and viewers see: no contact data, no competences, organisation or load."""

    model_config = ConfigDict(from_attributes=True, extra="forbid")

    id: uuid.UUID
    display_name: str
    email: None = PField(default=None, description="always null for this role")
    phone: None = PField(default=None, description="always null for this role")
    status: ManagerStatus
    home_district: str
    districts: list[str]
    languages: list[str]
    available_today: bool


ManagerView = ManagerPublic | ManagerPublicRedacted


class ManagerPage(Page[ManagerView]):
    """A page of managers: full or redacted items, by the caller's role."""


class AbsenceCreate(RequestModel):
    """``ends_on`` must not be before ``starts_on`` (422)."""

    starts_on: date
    ends_on: date
    reason: Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] | None = None

    @model_validator(mode="after")
    def _ends_after_start(self) -> AbsenceCreate:
        if self.ends_on < self.starts_on:
            raise ValueError("ends_on must not be before starts_on")
        return self


class AbsencePublic(ResponseModel):
    id: uuid.UUID
    starts_on: date
    ends_on: date
    reason: str | None

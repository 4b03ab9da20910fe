"""Responses of the data-protection endpoints (erasure, subject access)."""

from __future__ import annotations

import uuid

from pydantic import Field as PField

from app.models.common import ResponseModel, UTCTimestamp
from app.models.incident import IncidentCategory, IncidentStatus, ReporterPublic
from app.models.manager_schemas import AbsencePublic, ManagerPublic


class SubjectIncident(ResponseModel):
    """An incident whose reporter contact is the requested address."""

    id: uuid.UUID
    reference: str
    status: IncidentStatus
    category: IncidentCategory
    district: str
    organisation_id: uuid.UUID | None
    reported_at: UTCTimestamp
    status_changed_at: UTCTimestamp
    reporter: ReporterPublic
    retention_ends_on: str | None = PField(
        description="The date from which retention erases the reporter data (ISO date); null "
        "while the incident is open or resolved"
    )


class SubjectAssignment(ResponseModel):
    id: uuid.UUID
    incident_id: uuid.UUID
    incident_reference: str
    role: str
    status: str
    offered_at: UTCTimestamp
    responded_at: UTCTimestamp | None
    ended_at: UTCTimestamp | None


class SubjectApiKey(ResponseModel):
    id: uuid.UUID
    name: str
    role: str
    created_at: UTCTimestamp
    revoked_at: UTCTimestamp | None


class SubjectManager(ResponseModel):
    """A manager whose e-mail is the requested address, with what is stored about them."""

    manager: ManagerPublic
    absences: list[AbsencePublic]
    assignments: list[SubjectAssignment]
    api_keys: list[SubjectApiKey]


class DataSubjectReport(ResponseModel):
    """Every record that holds the e-mail address (GDPR Art. 15)."""

    email: str
    generated_at: UTCTimestamp
    incidents: list[SubjectIncident] = PField(
        description="Incidents whose reporter contact equals the address (case-insensitive)"
    )
    managers: list[SubjectManager] = PField(
        description="Managers whose e-mail equals the address (case-insensitive)"
    )
    not_searched: list[str] = PField(
        description="Where the address may also occur but is not searched (free text)"
    )

"""Data protection: erasure of reporters and managers, subject access (PRIVACY.md)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response

from app.api.deps import (
    AllowedDataProtection,
    AllowedReporterErase,
    SessionDep,
    etag,
)
from app.api.openapi import sends
from app.api.problems import problems
from app.api.routing import UnitOfWorkRoute
from app.models.incident import IncidentPublic
from app.models.manager_schemas import ManagerPublic
from app.models.privacy_schemas import DataSubjectReport
from app.services import privacy
from app.services.incidents import IncidentService
from app.services.managers import ManagerService

router = APIRouter(tags=["privacy"], route_class=UnitOfWorkRoute)


@router.post(
    "/incidents/{incident_id}/reporter/erase",
    summary="Erase the reporter's name and contact everywhere (irreversible; idempotent)",
    description="Removes the reporter's name and contact from the incident and from every copy "
    "(stored idempotency responses, webhook outbox payloads, free text of the incident). The "
    "incident, its timeline and statistics stay; the timeline records a `reporter_erased` event "
    "(which fields, by whom — never the values). Repeating the call changes nothing.",
    responses=problems(403, 404),
)
@sends("ETag")
def incidents_reporter_erase(
    session: SessionDep,
    principal: AllowedReporterErase,
    incident_id: uuid.UUID,
    response: Response,
) -> IncidentPublic:
    incident = privacy.erase_reporter_by_id(session, incident_id, principal)
    public = IncidentService(session).public_one(incident, principal)
    response.headers["ETag"] = etag(public.version)
    return public


@router.post(
    "/managers/{manager_id}/erase",
    summary="Erase a retired manager's name and contact (stable pseudonym; idempotent)",
    description="Only for `retired` managers (else 409). `display_name` becomes "
    "`Former manager <hash>`, `email` `erased-<id>@invalid`, `phone` null; absence reasons are "
    "removed and API keys bound to the manager revoked. Assignments and statistics stay.",
    responses=problems(403, 404, 409),
)
@sends("ETag")
def managers_erase(
    session: SessionDep,
    principal: AllowedDataProtection,
    manager_id: uuid.UUID,
    response: Response,
) -> ManagerPublic:
    manager = privacy.erase_manager(session, manager_id, principal)
    view = ManagerService(session).to_views([manager], principal)[0]
    assert isinstance(view, ManagerPublic)  # admins see the full view
    response.headers["ETag"] = etag(view.version)
    return view


@router.get(
    "/data-subject",
    summary="Every record holding an e-mail address (GDPR Art. 15 subject access)",
    description="Incidents whose reporter contact and managers whose e-mail equal the address "
    "(case-insensitive). The access is logged (audit kind `access`, action `subject_access`).",
    responses=problems(403),
)
def data_subject_get(
    session: SessionDep,
    principal: AllowedDataProtection,
    email: Annotated[
        str,
        Query(
            min_length=3,
            max_length=320,
            pattern=r"^\s*[^\s@\x00-\x1f\x7f-\x9f]+@[^\s\x00-\x1f\x7f-\x9f]+\s*$",
            description="E-mail address",
        ),
    ],
) -> DataSubjectReport:
    return privacy.subject_access(session, email, principal)

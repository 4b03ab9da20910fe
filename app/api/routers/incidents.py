"""Incidents: register, list, read, edit, status lifecycle, timeline and notes."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from app.api.deps import (
    AllowedIncidentsCreate,
    AllowedIncidentsNotes,
    AllowedIncidentsRead,
    AllowedIncidentsStatus,
    AllowedIncidentsUpdate,
    IfMatchDep,
    PageDep,
    SessionDep,
    etag,
    in_unit_of_work,
    loop_reads,
)
from app.api.exports import EXPORT_RESPONSES, export_media_type, export_response
from app.api.openapi import sends
from app.api.problems import problems
from app.api.routing import UnitOfWorkRoute
from app.models.common import DistrictFilter, Page, UTCTimestamp
from app.models.incident import (
    IncidentCategory,
    IncidentCreate,
    IncidentEventPublic,
    IncidentNotePublic,
    IncidentPublic,
    IncidentStatus,
    IncidentStatusChange,
    IncidentUpdate,
    NoteCreate,
)
from app.repositories.incidents import IncidentFilter
from app.services import incident_reads
from app.services.incidents import IncidentService

router = APIRouter(prefix="/incidents", tags=["incidents"], route_class=UnitOfWorkRoute)


@dataclass
class IncidentQuery:
    """The list filters of DESIGN §3 (also used by the exports)."""

    district: Annotated[DistrictFilter | None, Query(max_length=64)] = None
    status: Annotated[list[IncidentStatus] | None, Query(description="Repeatable")] = None
    category: IncidentCategory | None = None
    min_escalation: Annotated[int | None, Query(ge=1, le=9)] = None
    reported_after: UTCTimestamp | None = None
    reported_before: UTCTimestamp | None = None
    organisation_id: uuid.UUID | None = None
    q: Annotated[str | None, Query(max_length=200, description="Text in title/description")] = None

    def to_filter(self) -> IncidentFilter:
        return IncidentFilter(
            district=self.district,
            statuses=tuple(self.status or ()),
            category=self.category,
            min_escalation=self.min_escalation,
            reported_after=self.reported_after,
            reported_before=self.reported_before,
            organisation_id=self.organisation_id,
            q=self.q,
        )


async def incident_query(
    district: Annotated[DistrictFilter | None, Query(max_length=64)] = None,
    status: Annotated[list[IncidentStatus] | None, Query(description="Repeatable")] = None,
    category: IncidentCategory | None = None,
    min_escalation: Annotated[int | None, Query(ge=1, le=9)] = None,
    reported_after: UTCTimestamp | None = None,
    reported_before: UTCTimestamp | None = None,
    organisation_id: uuid.UUID | None = None,
    q: Annotated[str | None, Query(max_length=200, description="Text in title/description")] = None,
) -> IncidentQuery:
    """The filters as a dependency FastAPI awaits: given the dataclass itself (``Depends()``),
    it calls the class — a sync callable — on a worker thread, a hop per list request."""
    return IncidentQuery(
        district,
        status,
        category,
        min_escalation,
        reported_after,
        reported_before,
        organisation_id,
        q,
    )


IncidentQueryDep = Annotated[IncidentQuery, Depends(incident_query)]


def _json(
    body: Page[IncidentPublic] | IncidentPublic, headers: dict[str, str] | None = None
) -> Response:
    """The validated model serialised once, by pydantic: returned as the model, FastAPI would
    dump it, validate it again and serialise it again (≈ 0.9 ms for a page of 50; the bytes are
    the same — bench/README.md). The route's ``response_model`` documents the schema."""
    return Response(
        body.model_dump_json(by_alias=True), media_type="application/json", headers=headers
    )


@router.get(
    "",
    summary="List incidents (filters, keyset pagination), or export them (Accept: text/csv, "
    "application/geo+json)",
    response_model=Page[IncidentPublic],
    responses={**EXPORT_RESPONSES, **problems(400, 403)},
)
async def incidents_list(
    request: Request,
    principal: AllowedIncidentsRead,
    page: PageDep,
    query: IncidentQueryDep,
) -> Response:
    # async + one thread hop for the whole unit of work: a hot path (bench/README.md)
    export = export_media_type(request.headers.get("accept"))
    if export is not None:  # streamed export: every matching row, limit/cursor do not apply
        return export_response(export, query.to_filter(), principal)
    flt = query.to_filter()
    reads = loop_reads(request)
    if reads is not None and incident_reads.serves(principal, flt):
        return Response(
            await incident_reads.page(reads, flt, page, principal), media_type="application/json"
        )
    items, cursor = await in_unit_of_work(
        lambda session: IncidentService(session).page(flt, page, principal)
    )
    return _json(Page(items=items, next_cursor=cursor))


@router.post("", status_code=201, summary="Register an incident", responses=problems(403, 409, 413))
@sends("ETag", "Location", status=201)
def incidents_create(
    session: SessionDep,
    principal: AllowedIncidentsCreate,
    body: IncidentCreate,
    response: Response,
) -> IncidentPublic:
    incident = IncidentService(session).create(body, principal)
    response.headers["ETag"] = etag(incident.version)
    response.headers["Location"] = f"/api/v1/incidents/{incident.id}"
    return incident


@router.get(
    "/{incident_id}",
    summary="Get an incident",
    response_model=IncidentPublic,
    responses=problems(403, 404),
)
@sends("ETag")
async def incidents_get(
    request: Request,
    principal: AllowedIncidentsRead,
    incident_id: uuid.UUID,
) -> Response:
    reads = loop_reads(request)
    if reads is not None and incident_reads.serves(principal):  # on the loop: app.core.reads
        body, version = await incident_reads.get(reads, incident_id, principal)
        return Response(body, media_type="application/json", headers={"ETag": etag(version)})
    # async + one thread hop for the whole unit of work (managers: visibility by assignment)
    incident = await in_unit_of_work(
        lambda session: IncidentService(session).read_public(incident_id, principal)
    )
    return _json(incident, {"ETag": etag(incident.version)})


@router.patch(
    "/{incident_id}",
    summary="Edit an incident (status is read-only here)",
    responses=problems(403, 404, 409, 412),
)
@sends("ETag")
def incidents_update(
    session: SessionDep,
    principal: AllowedIncidentsUpdate,
    incident_id: uuid.UUID,
    body: IncidentUpdate,
    if_match: IfMatchDep,
    response: Response,
) -> IncidentPublic:
    incident = IncidentService(session).update(incident_id, body, principal, if_match)
    response.headers["ETag"] = etag(incident.version)
    return incident


@router.post(
    "/{incident_id}/status",
    summary="Change an incident's status (lifecycle; others → 409)",
    responses=problems(403, 404, 409),
)
@sends("ETag")
def incidents_set_status(
    session: SessionDep,
    principal: AllowedIncidentsStatus,
    incident_id: uuid.UUID,
    body: IncidentStatusChange,
    response: Response,
) -> IncidentPublic:
    incident = IncidentService(session).set_status(incident_id, body.status, body.note, principal)
    response.headers["ETag"] = etag(incident.version)
    return incident


@router.get(
    "/{incident_id}/events",
    summary="The incident's timeline",
    responses=problems(400, 403, 404),
)
def incidents_events(
    session: SessionDep,
    principal: AllowedIncidentsRead,
    incident_id: uuid.UUID,
    page: PageDep,
) -> Page[IncidentEventPublic]:
    items, cursor = IncidentService(session).events(incident_id, page, principal)
    return Page(items=items, next_cursor=cursor)


@router.post(
    "/{incident_id}/notes",
    status_code=201,
    summary="Add a note to an incident",
    responses=problems(403, 404),
)
def incidents_add_note(
    session: SessionDep,
    principal: AllowedIncidentsNotes,
    incident_id: uuid.UUID,
    body: NoteCreate,
) -> IncidentNotePublic:
    return IncidentService(session).add_note(incident_id, body, principal)


@router.get(
    "/{incident_id}/notes",
    summary="List an incident's notes",
    responses=problems(400, 403, 404),
)
def incidents_notes(
    session: SessionDep,
    principal: AllowedIncidentsNotes,
    incident_id: uuid.UUID,
    page: PageDep,
) -> Page[IncidentNotePublic]:
    items, cursor = IncidentService(session).notes(incident_id, page, principal)
    return Page(items=items, next_cursor=cursor)

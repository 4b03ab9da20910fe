"""Managers: the roster of conflict managers, their lifecycle and absences."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import StringConstraints

from app.api.deps import (
    AllowedManagersRead,
    AllowedManagersSelf,
    AllowedManagersWrite,
    IfMatchDep,
    PageDep,
    SessionDep,
    etag,
    in_unit_of_work,
    json_response,
    loop_reads,
)
from app.api.openapi import sends
from app.api.problems import problems
from app.api.routing import UnitOfWorkRoute
from app.models.common import DistrictFilter, Page
from app.models.manager import ManagerStatus
from app.models.manager_schemas import (
    AbsenceCreate,
    AbsencePublic,
    LanguageCode,
    ManagerCreate,
    ManagerPage,
    ManagerPublic,
    ManagerStatusChange,
    ManagerUpdate,
    ManagerView,
)
from app.repositories.managers import ManagerFilter
from app.services import manager_reads
from app.services.managers import ManagerService

router = APIRouter(prefix="/managers", tags=["managers"], route_class=UnitOfWorkRoute)


async def manager_query(
    district: Annotated[
        DistrictFilter | None, Query(max_length=64, description="Home or served")
    ] = None,
    competence: Annotated[
        list[Annotated[str, StringConstraints(max_length=64)]] | None,
        Query(max_length=20, description="Held and valid today; repeatable = all of them"),
    ] = None,
    status: Annotated[list[ManagerStatus] | None, Query(description="Repeatable")] = None,
    language: Annotated[LanguageCode | None, Query(description="ISO 639-1")] = None,
    available: Annotated[
        bool | None, Query(description="true: active and not absent today; false: the others")
    ] = None,
) -> ManagerFilter:
    """The list filters of DESIGN §3. ``async``: a class or sync function as a dependency runs
    in the thread pool (a thread hop per request)."""
    return ManagerFilter(
        district=district,
        competences=tuple(competence or ()),
        statuses=tuple(status or ()),
        language=language,
        available=available,
    )


@router.get(
    "",
    summary="List managers (filters, keyset pagination)",
    response_model=ManagerPage,
    responses=problems(400, 403),
)
async def managers_list(
    request: Request,
    principal: AllowedManagersRead,
    page: PageDep,
    flt: Annotated[ManagerFilter, Depends(manager_query)],
) -> Response:
    reads = loop_reads(request)
    if reads is not None:  # on the loop: app.core.reads, one statement
        return Response(
            await manager_reads.page(reads, flt, page, principal), media_type="application/json"
        )
    # async + one thread hop for the whole unit of work (an app without its lifespan)
    items, cursor = await in_unit_of_work(
        lambda session: ManagerService(session).page(flt, page, principal)
    )
    return json_response(ManagerPage(items=items, next_cursor=cursor))


@router.post("", status_code=201, summary="Add a manager", responses=problems(403, 409, 413))
@sends("ETag", "Location", status=201)
def managers_create(
    session: SessionDep,
    principal: AllowedManagersWrite,
    body: ManagerCreate,
    response: Response,
) -> ManagerPublic:
    manager = ManagerService(session).create(body, principal)
    response.headers["Location"] = f"/api/v1/managers/{manager.id}"
    response.headers["ETag"] = etag(manager.version)
    return manager


@router.get(
    "/{manager_id}",
    summary="Get a manager",
    response_model=ManagerView,
    responses=problems(403, 404),
)
@sends("ETag")
async def managers_get(
    request: Request,
    principal: AllowedManagersRead,
    manager_id: uuid.UUID,
) -> Response:
    reads = loop_reads(request)
    if reads is not None:  # on the loop: app.core.reads, one statement
        body, version = await manager_reads.get(reads, manager_id, principal)
        headers = {"ETag": etag(version)} if version is not None else None
        return Response(body, media_type="application/json", headers=headers)
    view = await in_unit_of_work(lambda session: ManagerService(session).get(manager_id, principal))
    # the redacted view (partners, viewers) carries no version and no ETag
    headers = {"ETag": etag(view.version)} if isinstance(view, ManagerPublic) else None
    return json_response(view, headers)


@router.patch(
    "/{manager_id}",
    summary="Edit a manager (status is read-only here; a manager key: own languages only)",
    responses=problems(403, 404, 409, 412),
)
@sends("ETag")
def managers_update(
    session: SessionDep,
    principal: AllowedManagersSelf,
    manager_id: uuid.UUID,
    body: ManagerUpdate,
    if_match: IfMatchDep,
    response: Response,
) -> ManagerPublic:
    manager = ManagerService(session).update(manager_id, body, principal, if_match)
    response.headers["ETag"] = etag(manager.version)
    return manager


@router.post(
    "/{manager_id}/status",
    summary="Change a manager's status (lifecycle; others → 409)",
    responses=problems(403, 404, 409),
)
@sends("ETag")
def managers_set_status(
    session: SessionDep,
    principal: AllowedManagersWrite,
    manager_id: uuid.UUID,
    body: ManagerStatusChange,
    response: Response,
) -> ManagerPublic:
    manager = ManagerService(session).set_status(manager_id, body.status, body.note, principal)
    response.headers["ETag"] = etag(manager.version)
    return manager


@router.post(
    "/{manager_id}/absences",
    status_code=201,
    summary="Record an absence (dates inclusive)",
    responses=problems(403, 404),
)
def managers_add_absence(
    session: SessionDep,
    principal: AllowedManagersSelf,
    manager_id: uuid.UUID,
    body: AbsenceCreate,
) -> AbsencePublic:
    return ManagerService(session).add_absence(manager_id, body, principal)


@router.get(
    "/{manager_id}/absences",
    summary="List a manager's absences",
    response_model=Page[AbsencePublic],
    responses=problems(400, 403, 404),
)
async def managers_absences(
    request: Request,
    principal: AllowedManagersSelf,
    manager_id: uuid.UUID,
    page: PageDep,
) -> Response:
    reads = loop_reads(request)
    if reads is not None:  # on the loop: app.core.reads, one statement
        return Response(
            await manager_reads.absences(reads, manager_id, page, principal),
            media_type="application/json",
        )
    items, cursor = await in_unit_of_work(
        lambda session: ManagerService(session).absences(manager_id, page, principal)
    )
    return json_response(Page[AbsencePublic](items=items, next_cursor=cursor))


@router.delete(
    "/{manager_id}/absences/{absence_id}",
    status_code=204,
    summary="Delete an absence",
    responses=problems(403, 404),
)
def managers_delete_absence(
    session: SessionDep,
    principal: AllowedManagersSelf,
    manager_id: uuid.UUID,
    absence_id: uuid.UUID,
) -> Response:
    ManagerService(session).delete_absence(manager_id, absence_id, principal)
    return Response(status_code=204)

"""Managers: the roster of conflict managers, their lifecycle and absences."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from pydantic import StringConstraints

from app.api.deps import (
    AllowedManagersRead,
    AllowedManagersSelf,
    AllowedManagersWrite,
    IfMatchDep,
    PageDep,
    SessionDep,
    etag,
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
from app.services.managers import ManagerService

router = APIRouter(prefix="/managers", tags=["managers"], route_class=UnitOfWorkRoute)


@dataclass
class ManagerQuery:
    """The list filters of DESIGN §3."""

    district: Annotated[
        DistrictFilter | None, Query(max_length=64, description="Home or served")
    ] = None
    competence: Annotated[
        list[Annotated[str, StringConstraints(max_length=64)]] | None,
        Query(max_length=20, description="Held and valid today; repeatable = all of them"),
    ] = None
    status: Annotated[list[ManagerStatus] | None, Query(description="Repeatable")] = None
    language: Annotated[LanguageCode | None, Query(description="ISO 639-1")] = None
    available: Annotated[
        bool | None, Query(description="true: active and not absent today; false: the others")
    ] = None

    def to_filter(self) -> ManagerFilter:
        return ManagerFilter(
            district=self.district,
            competences=tuple(self.competence or ()),
            statuses=tuple(self.status or ()),
            language=self.language,
            available=self.available,
        )


def _tagged(response: Response, view: ManagerView) -> ManagerView:
    if isinstance(view, ManagerPublic):
        response.headers["ETag"] = etag(view.version)
    return view


@router.get("", summary="List managers (filters, keyset pagination)", responses=problems(400, 403))
def managers_list(
    session: SessionDep,
    principal: AllowedManagersRead,
    page: PageDep,
    query: Annotated[ManagerQuery, Depends()],
) -> ManagerPage:
    items, cursor = ManagerService(session).page(query.to_filter(), page, principal)
    return ManagerPage(items=items, next_cursor=cursor)


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


@router.get("/{manager_id}", summary="Get a manager", responses=problems(403, 404))
@sends("ETag")
def managers_get(
    session: SessionDep,
    principal: AllowedManagersRead,
    manager_id: uuid.UUID,
    response: Response,
) -> ManagerView:
    return _tagged(response, ManagerService(session).get(manager_id, principal))


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
    responses=problems(400, 403, 404),
)
def managers_absences(
    session: SessionDep,
    principal: AllowedManagersSelf,
    manager_id: uuid.UUID,
    page: PageDep,
) -> Page[AbsencePublic]:
    items, cursor = ManagerService(session).absences(manager_id, page, principal)
    return Page(items=items, next_cursor=cursor)


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

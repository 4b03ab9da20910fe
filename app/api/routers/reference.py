"""Reference data: districts, competences, organisations (readable by every role)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response
from sqlmodel import Session

from app.api.deps import (
    Allowed,
    IfMatchDep,
    PageDep,
    SessionDep,
    etag,
    in_unit_of_work,
    json_response,
)
from app.api.problems import problems
from app.api.routing import UnitOfWorkRoute
from app.core.security import Action
from app.models.common import Page
from app.models.reference import (
    CompetenceCreate,
    CompetencePublic,
    CompetenceUpdate,
    DistrictCreate,
    DistrictPublic,
    DistrictUpdate,
    OrganisationCreate,
    OrganisationPublic,
    OrganisationUpdate,
)
from app.services.reference_data import CompetenceService, DistrictService, OrganisationService

router = APIRouter(route_class=UnitOfWorkRoute)
Reader = Allowed(Action.reference_read)
Writer = Allowed(Action.reference_write)


@router.get(
    "/districts", tags=["reference"], summary="List districts", responses=problems(400, 403)
)
async def districts_list(
    _: Reader,
    page: PageDep,
    city: Annotated[str | None, Query(max_length=100)] = None,
) -> Page[DistrictPublic]:
    items, cursor = await in_unit_of_work(lambda s: DistrictService(s).page(page, city))
    return json_response(Page(items=items, next_cursor=cursor))  # type: ignore[return-value]


@router.post(
    "/districts",
    status_code=201,
    tags=["reference"],
    summary="Create a district",
    responses=problems(403, 409),
)
def districts_create(
    session: SessionDep, principal: Writer, body: DistrictCreate, response: Response
) -> DistrictPublic:
    district = DistrictService(session).create(body, principal)
    response.headers["ETag"] = etag(district.version)
    response.headers["Location"] = f"/api/v1/districts/{district.code}"
    return district


@router.get(
    "/districts/{code}", tags=["reference"], summary="Get a district", responses=problems(403, 404)
)
async def districts_get(_: Reader, code: str) -> DistrictPublic:
    def read(session: Session) -> DistrictPublic:
        service = DistrictService(session)
        return service.public(service.get(code))

    district = await in_unit_of_work(read)
    return json_response(district, {"ETag": etag(district.version)})  # type: ignore[return-value]


@router.patch(
    "/districts/{code}",
    tags=["reference"],
    summary="Update a district (neighbours stay symmetric)",
    responses=problems(403, 404, 412),
)
def districts_update(
    session: SessionDep,
    principal: Writer,
    code: str,
    body: DistrictUpdate,
    if_match: IfMatchDep,
    response: Response,
) -> DistrictPublic:
    district = DistrictService(session).update(code, body, principal, if_match)
    response.headers["ETag"] = etag(district.version)
    return district


@router.get(
    "/competences", tags=["reference"], summary="List competences", responses=problems(400, 403)
)
async def competences_list(_: Reader, page: PageDep) -> Page[CompetencePublic]:
    def read(session: Session) -> Page[CompetencePublic]:
        rows, cursor = CompetenceService(session).repo.page(page)
        return Page(items=[CompetencePublic.model_validate(c) for c in rows], next_cursor=cursor)

    return json_response(await in_unit_of_work(read))  # type: ignore[return-value]


@router.post(
    "/competences",
    status_code=201,
    tags=["reference"],
    summary="Create a competence",
    responses=problems(403, 409),
)
def competences_create(
    session: SessionDep, principal: Writer, body: CompetenceCreate, response: Response
) -> CompetencePublic:
    competence = CompetenceService(session).create(body, principal)
    response.headers["ETag"] = etag(competence.version)
    response.headers["Location"] = f"/api/v1/competences/{competence.code}"
    return competence


@router.get(
    "/competences/{code}",
    tags=["reference"],
    summary="Get a competence",
    responses=problems(403, 404),
)
async def competences_get(_: Reader, code: str) -> CompetencePublic:
    competence = await in_unit_of_work(
        lambda s: CompetencePublic.model_validate(CompetenceService(s).get(code))
    )
    return json_response(competence, {"ETag": etag(competence.version)})  # type: ignore[return-value]


@router.patch(
    "/competences/{code}",
    tags=["reference"],
    summary="Update a competence",
    responses=problems(403, 404, 412),
)
def competences_update(
    session: SessionDep,
    principal: Writer,
    code: str,
    body: CompetenceUpdate,
    if_match: IfMatchDep,
    response: Response,
) -> CompetencePublic:
    competence = CompetenceService(session).update(code, body, principal, if_match)
    response.headers["ETag"] = etag(competence.version)
    return competence


@router.get(
    "/organisations",
    tags=["reference"],
    summary="List organisations",
    responses=problems(400, 403),
)
async def organisations_list(_: Reader, page: PageDep) -> Page[OrganisationPublic]:
    def read(session: Session) -> Page[OrganisationPublic]:
        rows, cursor = OrganisationService(session).repo.page(page)
        return Page(items=[OrganisationPublic.model_validate(o) for o in rows],
                    next_cursor=cursor)

    return json_response(await in_unit_of_work(read))  # type: ignore[return-value]


@router.post(
    "/organisations",
    status_code=201,
    tags=["reference"],
    summary="Create an organisation",
    responses=problems(403),
)
def organisations_create(
    session: SessionDep, principal: Writer, body: OrganisationCreate, response: Response
) -> OrganisationPublic:
    organisation = OrganisationService(session).create(body, principal)
    response.headers["ETag"] = etag(organisation.version)
    response.headers["Location"] = f"/api/v1/organisations/{organisation.id}"
    return organisation


@router.get(
    "/organisations/{organisation_id}",
    tags=["reference"],
    summary="Get an organisation",
    responses=problems(403, 404),
)
async def organisations_get(_: Reader, organisation_id: uuid.UUID) -> OrganisationPublic:
    organisation = await in_unit_of_work(
        lambda s: OrganisationPublic.model_validate(OrganisationService(s).get(organisation_id))
    )
    return json_response(organisation, {"ETag": etag(organisation.version)})  # type: ignore[return-value]


@router.patch(
    "/organisations/{organisation_id}",
    tags=["reference"],
    summary="Update an organisation",
    responses=problems(403, 404, 412),
)
def organisations_update(
    session: SessionDep,
    principal: Writer,
    organisation_id: uuid.UUID,
    body: OrganisationUpdate,
    if_match: IfMatchDep,
    response: Response,
) -> OrganisationPublic:
    organisation = OrganisationService(session).update(organisation_id, body, principal, if_match)
    response.headers["ETag"] = etag(organisation.version)
    return organisation

"""Reference data: districts, competences, organisations (readable by every role)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response

from app.api.deps import (
    AllowedReferenceRead,
    AllowedReferenceWrite,
    IfMatchDep,
    PageDep,
    SessionDep,
    etag,
)
from app.api.openapi import sends
from app.api.problems import problems
from app.api.routing import UnitOfWorkRoute
from app.models.common import DistrictFilter, Page
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
Reader = AllowedReferenceRead
Writer = AllowedReferenceWrite


@router.get(
    "/districts", tags=["reference"], summary="List districts", responses=problems(400, 403)
)
def districts_list(
    session: SessionDep,
    _: Reader,
    page: PageDep,
    city: Annotated[str | None, Query(max_length=100)] = None,
) -> Page[DistrictPublic]:
    items, cursor = DistrictService(session).page(page, city)
    return Page(items=items, next_cursor=cursor)


@router.post(
    "/districts",
    status_code=201,
    tags=["reference"],
    summary="Create a district",
    responses=problems(403, 409),
)
@sends("ETag", "Location", status=201)
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
@sends("ETag")
def districts_get(
    session: SessionDep, _: Reader, code: DistrictFilter, response: Response
) -> DistrictPublic:
    service = DistrictService(session)
    district = service.public(service.get(code))
    response.headers["ETag"] = etag(district.version)
    return district


@router.patch(
    "/districts/{code}",
    tags=["reference"],
    summary="Update a district (neighbours stay symmetric)",
    responses=problems(403, 404, 412),
)
@sends("ETag")
def districts_update(
    session: SessionDep,
    principal: Writer,
    code: DistrictFilter,
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
def competences_list(session: SessionDep, _: Reader, page: PageDep) -> Page[CompetencePublic]:
    rows, cursor = CompetenceService(session).repo.page(page)
    return Page(items=[CompetencePublic.model_validate(c) for c in rows], next_cursor=cursor)


@router.post(
    "/competences",
    status_code=201,
    tags=["reference"],
    summary="Create a competence",
    responses=problems(403, 409),
)
@sends("ETag", "Location", status=201)
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
@sends("ETag")
def competences_get(
    session: SessionDep, _: Reader, code: str, response: Response
) -> CompetencePublic:
    competence = CompetencePublic.model_validate(CompetenceService(session).get(code))
    response.headers["ETag"] = etag(competence.version)
    return competence


@router.patch(
    "/competences/{code}",
    tags=["reference"],
    summary="Update a competence",
    responses=problems(403, 404, 412),
)
@sends("ETag")
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
def organisations_list(session: SessionDep, _: Reader, page: PageDep) -> Page[OrganisationPublic]:
    rows, cursor = OrganisationService(session).repo.page(page)
    return Page(items=[OrganisationPublic.model_validate(o) for o in rows], next_cursor=cursor)


@router.post(
    "/organisations",
    status_code=201,
    tags=["reference"],
    summary="Create an organisation",
    responses=problems(403),
)
@sends("ETag", "Location", status=201)
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
@sends("ETag")
def organisations_get(
    session: SessionDep, _: Reader, organisation_id: uuid.UUID, response: Response
) -> OrganisationPublic:
    organisation = OrganisationPublic.model_validate(
        OrganisationService(session).get(organisation_id)
    )
    response.headers["ETag"] = etag(organisation.version)
    return organisation


@router.patch(
    "/organisations/{organisation_id}",
    tags=["reference"],
    summary="Update an organisation",
    responses=problems(403, 404, 412),
)
@sends("ETag")
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

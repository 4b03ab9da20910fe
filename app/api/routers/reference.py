"""Reference data: districts, competences, organisations (readable by every role)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from sqlmodel import Session

from app.api.deps import (
    AllowedReferenceRead,
    AllowedReferenceWrite,
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
from app.services import reference_reads
from app.services.reference_data import CompetenceService, DistrictService, OrganisationService

router = APIRouter(route_class=UnitOfWorkRoute)
Reader = AllowedReferenceRead
Writer = AllowedReferenceWrite

# The reads are ``async def``: on the event-loop read path (app.core.reads) when the app runs with
# its lifespan, else one unit of work in one thread hop — the same answers either way.


def _json(body: bytes, headers: dict[str, str] | None = None) -> Response:
    return Response(body, media_type="application/json", headers=headers)


@router.get(
    "/districts",
    tags=["reference"],
    summary="List districts",
    response_model=Page[DistrictPublic],
    responses=problems(400, 403),
)
async def districts_list(
    request: Request,
    _: Reader,
    page: PageDep,
    city: Annotated[str | None, Query(max_length=100)] = None,
) -> Response:
    reads = loop_reads(request)
    if reads is not None:
        return _json(await reference_reads.districts(reads, page, city))
    items, cursor = await in_unit_of_work(lambda session: DistrictService(session).page(page, city))
    return json_response(Page(items=items, next_cursor=cursor))


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
    "/districts/{code}",
    tags=["reference"],
    summary="Get a district",
    response_model=DistrictPublic,
    responses=problems(403, 404),
)
@sends("ETag")
async def districts_get(request: Request, _: Reader, code: DistrictFilter) -> Response:
    reads = loop_reads(request)
    if reads is not None:
        body, version = await reference_reads.district(reads, code)
        return _json(body, {"ETag": etag(version)})

    def work(session: Session) -> DistrictPublic:
        service = DistrictService(session)
        return service.public(service.get(code))

    district = await in_unit_of_work(work)
    return json_response(district, {"ETag": etag(district.version)})


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
    "/competences",
    tags=["reference"],
    summary="List competences",
    response_model=Page[CompetencePublic],
    responses=problems(400, 403),
)
async def competences_list(request: Request, _: Reader, page: PageDep) -> Response:
    reads = loop_reads(request)
    if reads is not None:
        return _json(await reference_reads.competences(reads, page))

    def work(session: Session) -> Page[CompetencePublic]:
        rows, cursor = CompetenceService(session).repo.page(page)
        return Page(items=[CompetencePublic.model_validate(c) for c in rows], next_cursor=cursor)

    return json_response(await in_unit_of_work(work))


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
    response_model=CompetencePublic,
    responses=problems(403, 404),
)
@sends("ETag")
async def competences_get(request: Request, _: Reader, code: str) -> Response:
    reads = loop_reads(request)
    if reads is not None:
        body, version = await reference_reads.competence(reads, code)
        return _json(body, {"ETag": etag(version)})
    competence = await in_unit_of_work(
        lambda session: CompetencePublic.model_validate(CompetenceService(session).get(code))
    )
    return json_response(competence, {"ETag": etag(competence.version)})


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
    response_model=Page[OrganisationPublic],
    responses=problems(400, 403),
)
async def organisations_list(request: Request, _: Reader, page: PageDep) -> Response:
    reads = loop_reads(request)
    if reads is not None:
        return _json(await reference_reads.organisations(reads, page))

    def work(session: Session) -> Page[OrganisationPublic]:
        rows, cursor = OrganisationService(session).repo.page(page)
        return Page(items=[OrganisationPublic.model_validate(o) for o in rows], next_cursor=cursor)

    return json_response(await in_unit_of_work(work))


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
    response_model=OrganisationPublic,
    responses=problems(403, 404),
)
@sends("ETag")
async def organisations_get(request: Request, _: Reader, organisation_id: uuid.UUID) -> Response:
    reads = loop_reads(request)
    if reads is not None:
        body, version = await reference_reads.organisation(reads, organisation_id)
        return _json(body, {"ETag": etag(version)})
    organisation = await in_unit_of_work(
        lambda session: OrganisationPublic.model_validate(
            OrganisationService(session).get(organisation_id)
        )
    )
    return json_response(organisation, {"ETag": etag(organisation.version)})


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

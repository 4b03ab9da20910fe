"""Recommendations of the steering group: lifecycle, progress, timeline and the printable report."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from sqlmodel import Session

from app.api.deps import (
    AllowedRecommendationsRead,
    AllowedRecommendationsWrite,
    IfMatchDep,
    PageDep,
    SessionDep,
    etag,
    in_unit_of_work,
    json_response,
    loop_reads,
)
from app.api.negotiation import accept_ranges
from app.api.openapi import sends
from app.api.problems import problems
from app.api.routing import UnitOfWorkRoute
from app.core.errors import NotAcceptable
from app.models.common import DistrictFilter, Page
from app.models.recommendation import (
    RecommendationCategory,
    RecommendationCreate,
    RecommendationEventPublic,
    RecommendationPublic,
    RecommendationReport,
    RecommendationStatus,
    RecommendationStatusChange,
    RecommendationUpdate,
)
from app.repositories.recommendations import RecommendationFilter
from app.services import recommendation_reads
from app.services.recommendation_report import render_markdown
from app.services.recommendations import RecommendationService

router = APIRouter(prefix="/recommendations", tags=["recommendations"], route_class=UnitOfWorkRoute)
Reader = AllowedRecommendationsRead
Writer = AllowedRecommendationsWrite

MARKDOWN = "text/markdown"
JSON = "application/json"


def _json(body: bytes, headers: dict[str, str] | None = None) -> Response:
    return Response(body, media_type=JSON, headers=headers)


async def recommendation_filter(
    status: Annotated[list[RecommendationStatus] | None, Query(description="Repeatable")] = None,
    category: RecommendationCategory | None = None,
    addressee: uuid.UUID | None = None,
    district: Annotated[DistrictFilter | None, Query(max_length=64)] = None,
    overdue: Annotated[
        bool | None, Query(description="true: only overdue; false: only not overdue")
    ] = None,
) -> RecommendationFilter:
    """The list filters. ``async``: FastAPI runs a class or a sync function given as a
    dependency in the thread pool — a hop per request."""
    return RecommendationFilter(
        statuses=tuple(status or ()),
        category=category,
        addressee=addressee,
        district=district,
        overdue=overdue,
    )


def negotiate(accept: str | None) -> str:
    """Pick Markdown or JSON from an ``Accept`` header (q-values honoured; ``*/*`` and no header
    → Markdown, the report's primary form); nothing acceptable → 406."""
    offers = (MARKDOWN, JSON)
    if not accept or not accept.strip():
        return MARKDOWN
    best: tuple[float, int, str] | None = None
    for _, media, q in accept_ranges(accept):
        if not q > 0:  # also NaN
            continue
        q = min(q, 1.0)
        for rank, offer in enumerate(offers):
            kind = offer.partition("/")[0]
            if media in (offer, f"{kind}/*", "*/*"):
                # exact matches beat wildcards at equal q; then the server's preference
                specificity = 0 if media == offer else 1
                candidate = (-q, specificity * 10 + rank, offer)
                if best is None or candidate < best:
                    best = candidate
    if best is None:
        raise NotAcceptable(
            f"The report is available as {MARKDOWN} or {JSON}; the Accept header allows neither."
        )
    return best[2]


@router.get(
    "/report",
    summary="Printable report for the steering group (Markdown or JSON by Accept)",
    response_model=RecommendationReport,
    responses={
        200: {
            "description": "The report: `text/markdown` (printable) or `application/json`",
            "content": {MARKDOWN: {"schema": {"type": "string"}}},
        },
        **problems(403, 406),
    },
)
def recommendations_report(
    session: SessionDep,
    _: Reader,
    request: Request,
) -> Response:
    # Accept is read from the request, not declared as a parameter: OpenAPI ignores a header
    # parameter named Accept (the responses' media types say what can be asked for).
    media = negotiate(request.headers.get("accept"))
    report = RecommendationService(session).report()
    if media == MARKDOWN:
        return Response(render_markdown(report), media_type="text/markdown; charset=utf-8")
    return JSONResponse(report.model_dump(mode="json"))


@router.get(
    "",
    summary="List recommendations (filters, keyset pagination)",
    response_model=Page[RecommendationPublic],
    responses=problems(400, 403),
)
async def recommendations_list(
    request: Request,
    _: Reader,
    page: PageDep,
    flt: Annotated[RecommendationFilter, Depends(recommendation_filter)],
) -> Response:
    # async: on the event-loop read path (app.core.reads), else one unit of work in one hop
    reads = loop_reads(request)
    if reads is not None:
        return _json(await recommendation_reads.page(reads, flt, page))
    items, cursor = await in_unit_of_work(
        lambda session: RecommendationService(session).page(flt, page)
    )
    return json_response(Page(items=items, next_cursor=cursor))


@router.post(
    "", status_code=201, summary="Create a recommendation (draft)", responses=problems(403, 409)
)
@sends("ETag", "Location", status=201)
def recommendations_create(
    session: SessionDep, principal: Writer, body: RecommendationCreate, response: Response
) -> RecommendationPublic:
    rec = RecommendationService(session).create(body, principal)
    response.headers["ETag"] = etag(rec.version)
    response.headers["Location"] = f"/api/v1/recommendations/{rec.id}"
    return rec


@router.get(
    "/{recommendation_id}",
    summary="Get a recommendation",
    response_model=RecommendationPublic,
    responses=problems(403, 404),
)
@sends("ETag")
async def recommendations_get(
    request: Request, _: Reader, recommendation_id: uuid.UUID
) -> Response:
    reads = loop_reads(request)
    if reads is not None:
        body, version = await recommendation_reads.get(reads, recommendation_id)
        return _json(body, {"ETag": etag(version)})

    def work(session: Session) -> RecommendationPublic:
        service = RecommendationService(session)
        return service.public_one(service.load(recommendation_id))

    rec = await in_unit_of_work(work)
    return json_response(rec, {"ETag": etag(rec.version)})


@router.patch(
    "/{recommendation_id}",
    summary="Edit a recommendation (status read-only; progress never decreases without reset_note)",
    responses=problems(403, 404, 409, 412),
)
@sends("ETag")
def recommendations_update(
    session: SessionDep,
    principal: Writer,
    recommendation_id: uuid.UUID,
    body: RecommendationUpdate,
    if_match: IfMatchDep,
    response: Response,
) -> RecommendationPublic:
    rec = RecommendationService(session).update(recommendation_id, body, principal, if_match)
    response.headers["ETag"] = etag(rec.version)
    return rec


@router.post(
    "/{recommendation_id}/status",
    summary="Change a recommendation's status (lifecycle; others → 409)",
    responses=problems(403, 404, 409),
)
@sends("ETag")
def recommendations_set_status(
    session: SessionDep,
    principal: Writer,
    recommendation_id: uuid.UUID,
    body: RecommendationStatusChange,
    response: Response,
) -> RecommendationPublic:
    rec = RecommendationService(session).set_status(
        recommendation_id, body.status, body.note, principal
    )
    response.headers["ETag"] = etag(rec.version)
    return rec


@router.get(
    "/{recommendation_id}/events",
    summary="The recommendation's timeline (who, when, what)",
    response_model=Page[RecommendationEventPublic],
    responses=problems(400, 403, 404),
)
async def recommendations_events(
    request: Request, _: Reader, recommendation_id: uuid.UUID, page: PageDep
) -> Response:
    reads = loop_reads(request)
    if reads is not None:
        return _json(await recommendation_reads.events(reads, recommendation_id, page))
    items, cursor = await in_unit_of_work(
        lambda session: RecommendationService(session).events(recommendation_id, page)
    )
    return json_response(Page(items=items, next_cursor=cursor))

"""Statistics (GROUP BY in SQL, suppressed for viewers and partners) and district profiles."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from app.api.deps import (
    AllowedStatsRead,
    SessionDep,
    in_unit_of_work,
    json_response,
    loop_reads,
)
from app.api.problems import problems
from app.api.routing import UnitOfWorkRoute
from app.models.common import DistrictFilter, UTCTimestamp
from app.repositories.stats import IncidentScope
from app.services import stats_reads
from app.services.stats import (
    CoverageStats,
    DispatchStats,
    DistrictProfile,
    IncidentStats,
    StatsService,
)

router = APIRouter(route_class=UnitOfWorkRoute)
Reader = AllowedStatsRead

DistrictQuery = Annotated[
    DistrictFilter | None, Query(max_length=64, description="District code (either case)")
]
AfterQuery = Annotated[UTCTimestamp | None, Query(description="reported_at ≥ this instant")]
BeforeQuery = Annotated[UTCTimestamp | None, Query(description="reported_at < this instant")]


class IncidentGroup(StrEnum):
    district = "district"
    category = "category"
    month = "month"
    escalation_level = "escalation_level"


@router.get(
    "/stats/incidents",
    tags=["stats"],
    summary="Incidents counted by district, category, month (KOKOMA_TIMEZONE) or escalation level",
    responses=problems(403),
    response_model=IncidentStats,
)
async def stats_incidents(
    request: Request,
    principal: Reader,
    group_by: IncidentGroup = IncidentGroup.category,
    district: DistrictQuery = None,
    reported_after: AfterQuery = None,
    reported_before: BeforeQuery = None,
) -> Response:
    scope = IncidentScope(district, reported_after, reported_before)
    reads = loop_reads(request)
    if reads is not None and stats_reads.serves(scope):  # on the loop: the tally
        return json_response(await stats_reads.incidents(reads, group_by.value, scope, principal))
    stats = await in_unit_of_work(
        lambda session: StatsService(session).incidents(group_by.value, scope, principal)
    )
    return json_response(stats)


@router.get(
    "/stats/dispatch",
    tags=["stats"],
    summary="Time to an accepted offer, acceptance/decline rates, decline reasons, open load",
    responses=problems(403),
)
def stats_dispatch(
    session: SessionDep,
    principal: Reader,
    district: DistrictQuery = None,
    reported_after: AfterQuery = None,
    reported_before: BeforeQuery = None,
) -> DispatchStats:
    scope = IncidentScope(district, reported_after, reported_before)
    return StatsService(session).dispatch(scope, principal)


@router.get(
    "/stats/coverage",
    tags=["stats"],
    summary="Available certified managers per district × competence, and the gap analysis",
    responses=problems(403),
)
def stats_coverage(
    session: SessionDep, principal: Reader, district: DistrictQuery = None
) -> CoverageStats:
    return StatsService(session).coverage(district, principal)


@router.get(
    "/districts/{code}/profile",
    tags=["stats"],
    summary="One district's conflict analysis: incidents, coverage, recommendations",
    responses=problems(403, 404),
    response_model=DistrictProfile,
)
async def districts_profile(request: Request, principal: Reader, code: DistrictFilter) -> Response:
    reads = loop_reads(request)
    if reads is not None:  # on the loop: the tally, one district's roster
        return json_response(await stats_reads.district_profile(reads, code, principal))
    profile = await in_unit_of_work(
        lambda session: StatsService(session).district_profile(code, principal)
    )
    return json_response(profile)

"""Statistics and district profiles on the event loop (:mod:`app.core.reads`), for the requests
without a date range: the incident figures from the tally (app/models/tally.py), one district's
roster and recommendations, short statements (:mod:`app.repositories.stats_reads`; a profile's in
one round trip, and one more for its month windows) — no thread hop, no ORM session. The same rules and the same response models as
:class:`app.services.stats.StatsService` (suppression, month buckets in ``KOKOMA_TIMEZONE``);
requests with ``reported_after`` / ``reported_before`` take the unit-of-work path
(:func:`serves`).
"""

from __future__ import annotations

from app.core.clock import get_clock
from app.core.errors import NotFound
from app.core.reads import Reads
from app.core.security import Principal
from app.repositories.stats import IncidentScope
from app.repositories.stats_reads import StatsReads
from app.services.stats import (
    DistrictCoverageCell,
    DistrictGapCell,
    DistrictIncidents,
    DistrictInfo,
    DistrictProfile,
    DistrictRecommendation,
    IncidentStats,
    month_starts,
    suppress_count,
    suppress_linked,
    suppress_table,
    unknown_district,
)


def serves(scope: IncidentScope) -> bool:
    """Whether this path answers (else the unit-of-work path does): no date range."""
    return scope.reported_after is None and scope.reported_before is None


async def _counts(repo: StatsReads, group_by: str, district: str | None) -> list[tuple[str, int]]:
    if group_by == "month":
        low, high = await repo.reported_range(district)
        if low is None or high is None:
            return []
        tz = get_clock().tz
        return await repo.month_counts(district, month_starts(low, high, tz), tz)
    return await repo.incident_counts(group_by, district)


async def incidents(
    reads: Reads, group_by: str, scope: IncidentScope, principal: Principal
) -> IncidentStats:
    repo = StatsReads(reads)
    if scope.district is not None and await repo.district(scope.district) is None:
        raise unknown_district(scope.district)
    counts = await _counts(repo, group_by, scope.district)
    table = suppress_table(counts, restricted=not principal.is_staff)
    return IncidentStats(group_by=group_by, items=table.items, total=table.total)


async def district_profile(reads: Reads, code: str, principal: Principal) -> DistrictProfile:
    repo = StatsReads(reads)
    today = get_clock().today()
    rows = await repo.profile(code, today)  # one round trip
    if rows.district is None:
        raise NotFound(f"No district '{code}'.")
    restricted = not principal.is_staff
    low, high = rows.reported
    by_month: list[tuple[str, int]] = []
    if low is not None and high is not None:  # the month windows: a second round trip
        tz = get_clock().tz
        by_month = await repo.month_counts(code, month_starts(low, high, tz), tz, rows.utc_months)
    tables, shared = suppress_linked({**rows.counts, "month": by_month}, restricted=restricted)
    coverage = []
    for competence in rows.competences:
        cell = suppress_count(rows.roster.get(competence, 0), restricted=restricted)
        coverage.append(
            DistrictCoverageCell(
                competence=competence, count=cell.count, suppressed=cell.suppressed
            )
        )
    gaps = []
    for competence, n in rows.gaps():
        cell = suppress_count(n, restricted=restricted)
        gaps.append(
            DistrictGapCell(competence=competence, incidents=cell.count, suppressed=cell.suppressed)
        )
    district = rows.district
    return DistrictProfile(
        district=DistrictInfo(code=district[0], name=district[1], city=district[2]),
        incidents=DistrictIncidents(
            total=shared,
            open=suppress_count(rows.open, restricted=restricted),
            by_category=tables["category"],
            by_escalation_level=tables["escalation_level"],
            by_month=tables["month"],
        ),
        coverage=coverage,
        gaps=gaps,
        recommendations=[DistrictRecommendation.model_validate(r) for r in rows.recommendations],
    )

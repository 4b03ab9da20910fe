"""Statistics queries: every count is a GROUP BY in the database, portable to SQLite and PostgreSQL.

Two things are dialect-aware:

* **months** are calendar months in ``KOKOMA_TIMEZONE``. Neither a portable SQL function nor SQLite
  knows time zones, so the caller passes the UTC instants at which each local month starts and the
  bucket is a ``CASE reported_at >= <start> …`` expression — exact across DST on both databases, and
  still grouped in SQL (in a subquery, so PostgreSQL sees one expression to group by).
* **durations** in seconds: ``julianday`` differences on SQLite, ``EXTRACT(EPOCH …)`` on PostgreSQL.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    String,
    TextClause,
    and_,
    case,
    exists,
    func,
    literal,
    or_,
    select,
    text,
    union,
    union_all,
)
from sqlmodel import Session, col

from app.core.pagination import AnySelect
from app.models.assignment import Assignment, AssignmentStatus
from app.models.base import table_of
from app.models.incident import OPEN_INCIDENT_STATUSES, Incident, IncidentCompetence
from app.models.manager import Absence, Manager, ManagerCompetence, ManagerDistrict, ManagerStatus
from app.models.tally import CITY_WIDE, IncidentTallyCategory, IncidentTallyLevel

GROUPS = ("district", "category", "month", "escalation_level")
_S = TypeVar("_S", bound=AnySelect)
_OPEN_ASSIGNMENT = (AssignmentStatus.offered.value, AssignmentStatus.accepted.value)


@dataclass(frozen=True, slots=True)
class IncidentScope:
    district: str | None = None
    reported_after: datetime | None = None
    reported_before: datetime | None = None

    def apply(self, stmt: _S) -> _S:
        if self.district:
            stmt = stmt.where(col(Incident.district) == self.district)
        if self.reported_after is not None:
            stmt = stmt.where(col(Incident.reported_at) >= self.reported_after)
        if self.reported_before is not None:
            stmt = stmt.where(col(Incident.reported_at) < self.reported_before)
        return stmt


def month_bucket(column: Any, month_starts: Sequence[tuple[datetime, str]]) -> ColumnElement[str]:
    """``'YYYY-MM'`` of ``column`` given the UTC starts of the local months (ascending)."""
    whens = [(column >= start, literal(label, String())) for start, label in reversed(month_starts)]
    return case(*whens, else_=literal(month_starts[0][1], String()))


def accepted_ever() -> ColumnElement[bool]:
    """The offer was accepted at some point: accepted, completed, or withdrawn after accepting
    (``responded_at`` is set by accept/decline only; declined ones have their own status)."""
    return or_(
        col(Assignment.status).in_(
            [AssignmentStatus.accepted.value, AssignmentStatus.completed.value]
        ),
        and_(
            col(Assignment.status) == AssignmentStatus.withdrawn.value,
            col(Assignment.responded_at).is_not(None),
        ),
    )


def valid_competence(today: date) -> ColumnElement[bool]:
    """Certified by today and not expired (an ``expires_on`` of today is still valid) —
    the same rule as dispatch."""
    return and_(
        col(ManagerCompetence.certified_on) <= today,
        or_(
            col(ManagerCompetence.expires_on).is_(None), col(ManagerCompetence.expires_on) >= today
        ),
    )


class StatsRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    @property
    def dialect(self) -> str:
        return self.session.get_bind().dialect.name

    def _seconds_between(self, start: Any, end: Any) -> ColumnElement[Any]:
        if self.dialect == "postgresql":
            return func.extract("epoch", end - start)
        return (func.julianday(end) - func.julianday(start)) * 86400.0

    # --- incidents -----------------------------------------------------------------------------

    def reported_range(self, scope: IncidentScope) -> tuple[datetime | None, datetime | None]:
        # Two scalar subqueries: each is one index probe (``ix_incident_reported_at``, or
        # ``ix_incident_district_reported_at`` for a district); SQLite reads a whole index for
        # ``min`` and ``max`` in one SELECT.
        first = scope.apply(select(func.min(col(Incident.reported_at)))).scalar_subquery()
        last = scope.apply(select(func.max(col(Incident.reported_at)))).scalar_subquery()
        low, high = self.session.execute(select(first, last)).one()
        return _aware(low), _aware(high)

    def incident_counts(self, group_by: str, scope: IncidentScope) -> list[tuple[str, int]]:
        """``(key, count)`` per district, category or escalation level, ascending: whole UTC
        months from the tally, the rest of a date range from ``incident``."""
        split = TallySplit.of(scope)
        tally: Any
        if group_by in ("district", "category"):
            tally = table_of(IncidentTallyCategory)
        elif group_by == "escalation_level":
            tally = table_of(IncidentTallyLevel)
        else:  # pragma: no cover - the API validates group_by; months: month_counts
            raise ValueError(group_by)
        parts: list[Any] = []
        if split.tally:
            key = tally.c[group_by]
            parts.append(
                select(key.label("k"), func.sum(tally.c.n).label("n"))
                .where(
                    *split.tally_filters(tally, scope.district, by_district=group_by == "district")
                )
                .group_by(key)
            )
        for low, high in split.raw:
            key = table_of(Incident).c[group_by]
            parts.append(
                select(key.label("k"), func.count().label("n"))
                .where(*_raw_filters(scope.district, low, high))
                .group_by(key)
            )
        inner = (union_all(*parts) if len(parts) > 1 else parts[0]).subquery()
        total = func.sum(inner.c.n)
        rows = self.session.execute(
            select(inner.c.k, total).group_by(inner.c.k).having(total > 0).order_by(inner.c.k)
        )
        return [(str(k), int(n)) for k, n in rows]

    def month_counts(
        self, scope: IncidentScope, month_starts: Sequence[tuple[datetime, str]], tz: Any
    ) -> list[tuple[str, int]]:
        """``(YYYY-MM, count)`` per calendar month in ``tz`` (``month_starts``: the UTC instants
        at which they start, from the first report in scope to the last), ascending.

        Whole UTC months come from the tally under their UTC month; the incidents whose local
        month differs from their UTC month lie between a month's UTC start and its local start
        (an hour or two for Europe/Berlin): they are read one by one and moved to their local
        month. The rest of a date range is grouped in SQL (:func:`month_bucket`)."""
        if not month_starts:
            return []
        split = TallySplit.of(scope)
        counts: Counter[str] = Counter()
        reported = col(Incident.reported_at)
        if split.tally:
            tally = table_of(IncidentTallyCategory)
            rows = self.session.execute(
                select(tally.c.month, func.sum(tally.c.n))
                .where(*split.tally_filters(tally, scope.district))
                .group_by(tally.c.month)
            )
            utc = {str(month): int(n) for month, n in rows}
            windows = [  # clipped to the whole months: one index range each
                (max(low, split.first or low), min(high, split.end or high))
                for low, high in local_month_windows(month_starts[0][1], month_starts[-1][1], tz)
            ]
            windows = [(low, high) for low, high in windows if low < high]
            moved: list[datetime] = []
            for chunk in _chunked(windows, 200):
                stmt = select(reported).where(
                    *_raw_filters(scope.district, None, None),
                    or_(*[and_(reported >= low, reported < high) for low, high in chunk]),
                )
                moved.extend(at for at in map(_aware, self.session.scalars(stmt)) if at)
            counts = local_month_counts(utc, moved, month_starts)
        if split.raw:
            bucket = month_bucket(reported, month_starts)
            parts = [
                select(bucket.label("k")).where(*_raw_filters(scope.district, low, high))
                for low, high in split.raw
            ]
            inner = (union_all(*parts) if len(parts) > 1 else parts[0]).subquery()
            rows = self.session.execute(select(inner.c.k, func.count()).group_by(inner.c.k))
            counts.update({str(k): int(n) for k, n in rows})
        return sorted((k, n) for k, n in counts.items() if n > 0)

    def open_incidents(self, scope: IncidentScope) -> int:
        stmt = scope.apply(
            select(func.count())
            .select_from(Incident)
            .where(col(Incident.status).in_([s.value for s in OPEN_INCIDENT_STATUSES]))
        )
        return int(self.session.scalar(stmt) or 0)

    def compact_tally(self) -> int:
        """PostgreSQL: merge each count's rows (one per transaction that changed it) into one
        row and drop counts of zero. Rows of transactions still running are not visible here and
        stay as they are; a concurrent compaction skips the rows this one deleted. Returns how
        many rows were merged away. SQLite keeps one row per count already: 0."""
        if self.dialect != "postgresql":
            return 0
        removed = 0
        for merge in (_COMPACT_CATEGORY, _COMPACT_LEVEL):
            removed += int(self.session.execute(merge).scalar_one())
        return removed

    # --- dispatch ------------------------------------------------------------------------------

    def accept_durations(self, scope: IncidentScope) -> list[float]:
        """Seconds from report to the first accepted offer, one per incident (a single column;
        percentiles are then taken in Python — SQLite has no ``percentile_cont``)."""
        first = (
            select(
                col(Assignment.incident_id).label("incident_id"),
                func.min(col(Assignment.responded_at)).label("first_at"),
            )
            .where(accepted_ever(), col(Assignment.responded_at).is_not(None))
            .group_by(col(Assignment.incident_id))
            .subquery()
        )
        seconds = self._seconds_between(col(Incident.reported_at), first.c.first_at)
        stmt = scope.apply(
            select(seconds.label("s"))
            .select_from(Incident)
            .join(first, first.c.incident_id == col(Incident.id))
        )
        return [float(s) for s in self.session.scalars(stmt)]

    def offer_outcomes(self, scope: IncidentScope) -> list[tuple[str, int]]:
        outcome = case(
            (accepted_ever(), literal("accepted", String())),
            (
                col(Assignment.status) == AssignmentStatus.declined.value,
                literal("declined", String()),
            ),
            (
                col(Assignment.status) == AssignmentStatus.expired.value,
                literal("expired", String()),
            ),
            (
                col(Assignment.status) == AssignmentStatus.withdrawn.value,
                literal("withdrawn", String()),
            ),
            else_=literal("open", String()),
        )
        inner = scope.apply(
            select(outcome.label("k"))
            .select_from(Assignment)
            .join(Incident, col(Incident.id) == col(Assignment.incident_id))
        ).subquery()
        rows = self.session.execute(select(inner.c.k, func.count()).group_by(inner.c.k))
        return [(str(k), int(n)) for k, n in rows]

    def decline_reasons(self, scope: IncidentScope) -> list[tuple[str, int]]:
        reason = func.coalesce(
            func.nullif(func.lower(func.trim(col(Assignment.decline_reason))), ""),
            literal("unspecified", String()),
        )
        inner = scope.apply(
            select(reason.label("k"))
            .select_from(Assignment)
            .join(Incident, col(Incident.id) == col(Assignment.incident_id))
            .where(col(Assignment.status) == AssignmentStatus.declined.value)
        ).subquery()
        rows = self.session.execute(
            select(inner.c.k, func.count()).group_by(inner.c.k).order_by(inner.c.k)
        )
        return [(str(k), int(n)) for k, n in rows]

    def _load_subquery(self) -> Any:
        return (
            select(
                col(Manager.id).label("manager_id"),
                col(Manager.display_name).label("display_name"),
                col(Manager.max_open_assignments).label("max_open"),
                func.count(col(Assignment.id)).label("open_n"),
            )
            .select_from(Manager)
            .outerjoin(
                Assignment,
                and_(
                    col(Assignment.manager_id) == col(Manager.id),
                    col(Assignment.status).in_(_OPEN_ASSIGNMENT),
                ),
            )
            .where(
                col(Manager.status).in_([ManagerStatus.active.value, ManagerStatus.paused.value])
            )
            .group_by(col(Manager.id), col(Manager.display_name), col(Manager.max_open_assignments))
            .subquery()
        )

    def load_per_manager(self) -> list[Any]:
        """Open (offered + accepted) assignments per active or paused manager."""
        load = self._load_subquery()
        return list(
            self.session.execute(
                select(load).order_by(load.c.open_n.desc(), load.c.display_name, load.c.manager_id)
            )
        )

    def load_distribution(self) -> list[tuple[str, int]]:
        """How many active or paused managers hold 0, 1, 2, … open assignments."""
        load = self._load_subquery()
        rows = self.session.execute(
            select(load.c.open_n, func.count()).group_by(load.c.open_n).order_by(load.c.open_n)
        )
        return [(str(k), int(n)) for k, n in rows]

    # --- coverage ------------------------------------------------------------------------------

    def _serving(self, district: str | None = None) -> Any:
        """``(manager_id, district)``: home district and served districts (UNION: distinct),
        only those of ``district`` when one is given (each branch then reads its index)."""
        home = select(
            col(Manager.id).label("manager_id"), col(Manager.home_district).label("district")
        )
        served = select(
            col(ManagerDistrict.manager_id).label("manager_id"),
            col(ManagerDistrict.district_code).label("district"),
        )
        if district is not None:
            home = home.where(col(Manager.home_district) == district)
            served = served.where(col(ManagerDistrict.district_code) == district)
        return union(home, served).subquery()

    def available_coverage(self, today: date, district: str | None = None) -> list[Any]:
        """``(district, competence, managers)``: AVAILABLE managers (active, not absent today)
        serving the district with the competence valid today."""
        serving = self._serving(district)
        absent = exists().where(
            col(Absence.manager_id) == col(Manager.id),
            col(Absence.starts_on) <= today,
            col(Absence.ends_on) >= today,
        )
        stmt = (
            select(
                serving.c.district,
                col(ManagerCompetence.competence_code),
                func.count(func.distinct(col(Manager.id))),
            )
            .select_from(Manager)
            .join(serving, serving.c.manager_id == col(Manager.id))
            .join(ManagerCompetence, col(ManagerCompetence.manager_id) == col(Manager.id))
            .where(
                col(Manager.status) == ManagerStatus.active.value, ~absent, valid_competence(today)
            )
            .group_by(serving.c.district, col(ManagerCompetence.competence_code))
        )
        return list(self.session.execute(stmt))

    def held_competences(self, today: date, district: str | None = None) -> set[tuple[str, str]]:
        """``(district, competence)`` that some active manager serving the district holds validly
        today (absences do not matter)."""
        serving = self._serving(district)
        stmt = (
            select(serving.c.district, col(ManagerCompetence.competence_code))
            .distinct()
            .select_from(Manager)
            .join(serving, serving.c.manager_id == col(Manager.id))
            .join(ManagerCompetence, col(ManagerCompetence.manager_id) == col(Manager.id))
            .where(col(Manager.status) == ManagerStatus.active.value, valid_competence(today))
        )
        return {(str(d), str(c)) for d, c in self.session.execute(stmt)}

    def gaps(
        self,
        today: date,
        scope: IncidentScope,
        districts: Sequence[str],
        competences: Sequence[str],
    ) -> list[tuple[str, str, int]]:
        """``(district, competence, incidents)`` where incidents needed a competence that no
        active manager serving their district holds validly (absences do not matter: the gap is
        in the roster, not in today's availability); ``districts`` and ``competences``: every
        code in scope. The roster is read first: only the pairs it leaves uncovered are counted
        in the incidents (none, usually)."""
        held = self.held_competences(today, scope.district)
        missing = {(d, c) for d in districts for c in competences if (d, c) not in held}
        if not missing:
            return []
        stmt = scope.apply(
            select(
                col(Incident.district),
                col(IncidentCompetence.competence_code),
                func.count(func.distinct(col(Incident.id))),
            )
            .select_from(Incident)
            .join(IncidentCompetence, col(IncidentCompetence.incident_id) == col(Incident.id))
            .where(
                col(Incident.district).in_(sorted({d for d, _ in missing})),
                col(IncidentCompetence.competence_code).in_(sorted({c for _, c in missing})),
            )
            .group_by(col(Incident.district), col(IncidentCompetence.competence_code))
            .order_by(col(Incident.district), col(IncidentCompetence.competence_code))
        )
        return [
            (str(d), str(c), int(n))
            for d, c, n in self.session.execute(stmt)
            if (str(d), str(c)) in missing
        ]


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):  # SQLite aggregate over a TypeDecorator column returns raw text
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _month_start(at: datetime) -> datetime:
    return datetime(at.year, at.month, 1, tzinfo=UTC)


def _next_month(start: datetime) -> datetime:
    return (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )


def _utc_label(at: datetime) -> str:
    return f"{at.year:04d}-{at.month:02d}"


@dataclass(frozen=True, slots=True)
class TallySplit:
    """A scope's reporting period cut into whole UTC months ``[first, end)`` (``None``: open),
    counted from the tally, and the ``raw`` rest (``[low, high)`` ranges), counted from
    ``incident``; ``tally`` is false when the period holds no whole month."""

    tally: bool
    first: datetime | None
    end: datetime | None
    raw: tuple[tuple[datetime, datetime], ...]

    @classmethod
    def of(cls, scope: IncidentScope) -> TallySplit:
        after = None if scope.reported_after is None else scope.reported_after.astimezone(UTC)
        before = None if scope.reported_before is None else scope.reported_before.astimezone(UTC)
        first = None if after is None else _month_start(after)
        if after is not None and first is not None and first != after:
            first = _next_month(first)
        end = None if before is None else _month_start(before)
        both = after is not None and before is not None
        if both and first is not None and end is not None and first >= end:
            assert after is not None and before is not None
            return cls(False, None, None, ((after, before),))
        raw: list[tuple[datetime, datetime]] = []
        if after is not None and first is not None and after < first:
            raw.append((after, first))
        if before is not None and end is not None and end < before:
            raw.append((end, before))
        return cls(True, first, end, tuple(raw))

    def tally_filters(
        self, tally: Any, district: str | None, *, by_district: bool = False
    ) -> list[ColumnElement[bool]]:
        """One district's rows, every district's (``by_district``) or the city-wide ones."""
        filters: list[ColumnElement[bool]] = []
        if district:
            filters.append(tally.c.district == district)
        elif by_district:
            filters.append(tally.c.district != CITY_WIDE)
        else:
            filters.append(tally.c.district == CITY_WIDE)
        if self.first is not None:
            filters.append(tally.c.month >= _utc_label(self.first))
        if self.end is not None:
            filters.append(tally.c.month < _utc_label(self.end))
        return filters


def _raw_filters(
    district: str | None, low: datetime | None, high: datetime | None
) -> list[ColumnElement[bool]]:
    filters: list[ColumnElement[bool]] = []
    if district:
        filters.append(col(Incident.district) == district)
    if low is not None:
        filters.append(col(Incident.reported_at) >= low)
    if high is not None:
        filters.append(col(Incident.reported_at) < high)
    return filters


def local_month_counts(
    utc: Mapping[str, int], moved: Iterable[datetime], month_starts: Sequence[tuple[datetime, str]]
) -> Counter[str]:
    """Counts per local month from counts per UTC month (``utc``) and the incidents in the
    :func:`local_month_windows` (``moved``, their ``reported_at``): each of those leaves its UTC
    month for its local one — as :func:`month_bucket`'s CASE assigns it (the last start at or
    before it) — which is the same month for most of them."""
    instants = [start for start, _ in month_starts]
    labels = [label for _, label in month_starts]
    counts = Counter(utc)
    for at in moved:
        counts[labels[max(bisect_right(instants, at) - 1, 0)]] += 1
        counts[_utc_label(at)] -= 1
    return counts


def local_month_windows(first: str, last: str, tz: Any) -> list[tuple[datetime, datetime]]:
    """Between each month's UTC start and its start in ``tz``, for the months ``first`` to
    ``last`` (``YYYY-MM``) and one on either side: where the local and the UTC month of an
    instant can differ (empty in UTC)."""
    year, month = int(first[:4]), int(first[5:7])
    year, month = (year - 1, 12) if month == 1 else (year, month - 1)
    end_year, end_month = int(last[:4]), int(last[5:7])
    end_year, end_month = (end_year + 1, 1) if end_month == 12 else (end_year, end_month + 1)
    windows: list[tuple[datetime, datetime]] = []
    while (year, month) <= (end_year, end_month):
        utc = datetime(year, month, 1, tzinfo=UTC)
        local = datetime(year, month, 1, tzinfo=tz).astimezone(UTC)
        if local != utc:
            windows.append((min(local, utc), max(local, utc)))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return windows


def _chunked(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


#: One statement per tally (``TABLE``, ``KEY``): delete every row of the counts that have several
#: rows (or sum to zero), insert their sums (slot = this transaction); the result is how many
#: rows fewer there are.
_COMPACT = (
    "WITH gone AS (DELETE FROM TABLE AS t USING ("
    "SELECT district, month, KEY FROM TABLE GROUP BY district, month, KEY "
    "HAVING count(*) > 1 OR sum(n) = 0) AS k "
    "WHERE t.district = k.district AND t.month = k.month AND t.KEY = k.KEY "
    "RETURNING t.district, t.month, t.KEY, t.n), "
    "kept AS (INSERT INTO TABLE (district, month, KEY, slot, n) "
    "SELECT district, month, KEY, txid_current(), sum(n) FROM gone "
    "GROUP BY district, month, KEY HAVING sum(n) <> 0 RETURNING 1) "
    "SELECT (SELECT count(*) FROM gone) - (SELECT count(*) FROM kept)"
)


def _compact(table: str, key: str) -> TextClause:
    return text(_COMPACT.replace("TABLE", table).replace("KEY", key))


_COMPACT_CATEGORY = _compact("incident_tally_category", "category")
_COMPACT_LEVEL = _compact("incident_tally_level", "escalation_level")

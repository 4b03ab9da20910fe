"""Statistics queries: every count is a GROUP BY in the database, portable to SQLite and PostgreSQL.

Two things are dialect-aware:

* **months** are calendar months in ``KOKOMA_TIMEZONE``. Neither a portable SQL function nor SQLite
  knows time zones, so the caller passes the UTC instants at which each local month starts and the
  bucket is a ``CASE reported_at >= <start> …`` expression — exact across DST on both databases, and
  still grouped in SQL (in a subquery, so PostgreSQL sees one expression to group by).
* **durations** in seconds: ``julianday`` differences on SQLite, ``EXTRACT(EPOCH …)`` on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    String,
    and_,
    case,
    exists,
    func,
    literal,
    or_,
    select,
    union,
)
from sqlmodel import Session, col

from app.core.pagination import AnySelect
from app.models.assignment import Assignment, AssignmentStatus
from app.models.incident import OPEN_INCIDENT_STATUSES, Incident, IncidentCompetence
from app.models.manager import Absence, Manager, ManagerCompetence, ManagerDistrict, ManagerStatus

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
        stmt = scope.apply(
            select(func.min(col(Incident.reported_at)), func.max(col(Incident.reported_at)))
        )
        low, high = self.session.execute(stmt).one()
        return _aware(low), _aware(high)

    def incident_counts(
        self,
        group_by: str,
        scope: IncidentScope,
        month_starts: Sequence[tuple[datetime, str]] = (),
    ) -> list[tuple[str, int]]:
        """``(key, count)`` per group, keys as strings, ascending."""
        if group_by == "month":
            if not month_starts:
                return []
            key: Any = month_bucket(col(Incident.reported_at), month_starts)
        elif group_by == "district":
            key = col(Incident.district)
        elif group_by == "category":
            key = col(Incident.category)
        elif group_by == "escalation_level":
            key = col(Incident.escalation_level)
        else:  # pragma: no cover - the API validates group_by
            raise ValueError(group_by)
        inner = scope.apply(select(key.label("k"))).subquery()
        rows = self.session.execute(
            select(inner.c.k, func.count()).group_by(inner.c.k).order_by(inner.c.k)
        )
        return [(str(k), int(n)) for k, n in rows]

    def open_incidents(self, scope: IncidentScope) -> int:
        stmt = scope.apply(
            select(func.count())
            .select_from(Incident)
            .where(col(Incident.status).in_([s.value for s in OPEN_INCIDENT_STATUSES]))
        )
        return int(self.session.scalar(stmt) or 0)

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

    def _serving(self) -> Any:
        """``(manager_id, district)``: home district and served districts (UNION: distinct)."""
        return union(
            select(
                col(Manager.id).label("manager_id"), col(Manager.home_district).label("district")
            ),
            select(
                col(ManagerDistrict.manager_id).label("manager_id"),
                col(ManagerDistrict.district_code).label("district"),
            ),
        ).subquery()

    def available_coverage(self, today: date, district: str | None = None) -> list[Any]:
        """``(district, competence, managers)``: AVAILABLE managers (active, not absent today)
        serving the district with the competence valid today."""
        serving = self._serving()
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
        if district is not None:
            stmt = stmt.where(serving.c.district == district)
        return list(self.session.execute(stmt))

    def gaps(self, today: date, scope: IncidentScope) -> list[Any]:
        """``(district, competence, incidents)`` where incidents needed a competence that no
        active manager serving their district holds validly (absences do not matter: the gap is
        in the roster, not in today's availability)."""
        holder = (
            select(col(Manager.id))
            .join(ManagerCompetence, col(ManagerCompetence.manager_id) == col(Manager.id))
            .where(
                col(Manager.status) == ManagerStatus.active.value,
                col(ManagerCompetence.competence_code) == col(IncidentCompetence.competence_code),
                valid_competence(today),
                or_(
                    col(Manager.home_district) == col(Incident.district),
                    exists()
                    .where(
                        col(ManagerDistrict.manager_id) == col(Manager.id),
                        col(ManagerDistrict.district_code) == col(Incident.district),
                    )
                    .correlate_except(ManagerDistrict),
                ),
            )
            .exists()
        )
        stmt = scope.apply(
            select(
                col(Incident.district),
                col(IncidentCompetence.competence_code),
                func.count(func.distinct(col(Incident.id))),
            )
            .select_from(Incident)
            .join(IncidentCompetence, col(IncidentCompetence.incident_id) == col(Incident.id))
            .where(~holder)
            .group_by(col(Incident.district), col(IncidentCompetence.competence_code))
            .order_by(col(Incident.district), col(IncidentCompetence.competence_code))
        )
        return list(self.session.execute(stmt))


def _aware(value: datetime | None) -> datetime | None:
    from datetime import UTC

    if value is None:
        return None
    if isinstance(value, str):  # SQLite aggregate over a TypeDecorator column returns raw text
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

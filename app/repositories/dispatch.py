"""Dispatch queries: the facts matching needs, set-based, and assignment reads.

The candidates of one incident come from ONE statement,
:meth:`DispatchRepository.screen_with_facts`:

1. it evaluates, in SQL, the district-independent hard constraints (``not_active``, ``absent``,
   ``at_capacity``, ``missing_competence``) and whether a manager serves the incident's district
   or a neighbouring one, for the whole roster: the managers failing one of them come back as
   counts per reason (aggregated in the database);
2. in the same statement, the rest (the *plausible* managers) come back with their facts:
   their row, competences, served districts, involvement on the incident and earlier cases in the
   district (one ``UNION ALL`` branch each, over the plausible ids only).

(:meth:`~DispatchRepository.screen_roster` and :meth:`~DispatchRepository.manager_facts` are the
same two steps as separate calls, for other callers.)

The pure engine then ranks the plausible managers and counts the remaining exclusions
(``wrong_district`` for neighbours when the fallback is not in effect, ``already_involved``,
``language``). Because the engine's fallback decision depends only on managers that pass all hard
constraints, and every such manager is among the plausible ones, the result is exactly the one of
:func:`~app.services.dispatch.matching.rank_candidates` over the whole roster.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import (
    Date,
    Integer,
    String,
    and_,
    bindparam,
    case,
    exists,
    func,
    not_,
    or_,
    select,
    text,
)
from sqlmodel import Session, col

from app.core.pagination import PageParams, keyset, page_slice
from app.models.assignment import Assignment, AssignmentStatus
from app.models.base import table_of
from app.models.incident import Incident
from app.models.manager import Absence, Manager, ManagerCompetence, ManagerDistrict
from app.models.matching_facts import (
    ACTIVE_STATUS,
    AbsencePeriod,
    CompetenceHolding,
    IncidentFacts,
    ManagerFacts,
)
from app.repositories.incidents import IncidentRepository
from app.repositories.reference import DistrictRepository

PLAUSIBLE = "plausible"
OPEN_STATUSES = (AssignmentStatus.offered, AssignmentStatus.accepted)
#: Statuses of an assignment that make it an "earlier case" of the manager (continuity).
CASE_STATUSES = (AssignmentStatus.accepted, AssignmentStatus.completed)


_COMPETENCE_CHECK = """
            WHEN m.id NOT IN (
                SELECT c.manager_id FROM manager_competence c
                WHERE c.competence_code IN :required AND c.certified_on <= :today
                  AND (c.expires_on IS NULL OR c.expires_on >= :today)
                GROUP BY c.manager_id HAVING count(*) = :n_required
            ) THEN 'missing_competence'"""

#: The statement of :meth:`DispatchRepository.screen_with_facts`: the same verdicts, in the same
#: order, as :meth:`DispatchRepository.screen_roster` ('active' is ACTIVE_STATUS, 'accepted' and
#: 'completed' are CASE_STATUSES). The verdict is computed once per manager (MATERIALIZED), the
#: plausible ids once; the first branch fixes the column types for PostgreSQL (hence the casts).
_SCREEN_WITH_FACTS_SQL = """
        WITH screened AS MATERIALIZED (
            SELECT CASE
                WHEN m.status <> 'active' THEN 'not_active'
                WHEN m.id IN (
                    SELECT a.manager_id FROM absence a
                    WHERE a.starts_on <= :today AND a.ends_on >= :today
                ) THEN 'absent'
                WHEN m.open_assignments >= m.max_open_assignments THEN 'at_capacity'
                /* competence check */
                WHEN NOT (
                    m.home_district IN :districts
                    OR m.id IN (
                        SELECT d.manager_id FROM manager_district d
                        WHERE d.district_code IN :districts
                    )
                ) THEN 'wrong_district'
                ELSE 'plausible' END AS verdict,
                m.id AS manager_id
            FROM manager m
        ),
        plausible AS MATERIALIZED (
            SELECT manager_id FROM screened WHERE verdict = 'plausible'
        )
        SELECT 'manager' AS kind, m.id AS manager_id, m.display_name AS text_1,
               m.status AS text_2, m.home_district AS text_3, m.languages AS languages,
               m.max_open_assignments AS number_1, m.open_assignments AS number_2,
               m.last_assigned_at AS last_assigned_at,
               CAST(NULL AS DATE) AS date_1, CAST(NULL AS DATE) AS date_2
        FROM manager m WHERE m.id IN (SELECT manager_id FROM plausible)
        UNION ALL
        SELECT 'excluded', NULL, verdict, NULL, NULL, NULL, count(*), NULL, NULL, NULL, NULL
        FROM screened WHERE verdict <> 'plausible' GROUP BY verdict
        UNION ALL
        SELECT 'competence', c.manager_id, c.competence_code, NULL, NULL, NULL, NULL, NULL, NULL,
               c.certified_on, c.expires_on
        FROM manager_competence c WHERE c.manager_id IN (SELECT manager_id FROM plausible)
        UNION ALL
        SELECT 'district', d.manager_id, d.district_code, NULL, NULL, NULL, NULL, NULL, NULL,
               NULL, NULL
        FROM manager_district d WHERE d.manager_id IN (SELECT manager_id FROM plausible)
        UNION ALL
        SELECT 'status', a.manager_id, a.status, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
        FROM assignment a
        WHERE a.incident_id = :incident AND a.manager_id IN (SELECT manager_id FROM plausible)
        UNION ALL
        SELECT 'earlier', a.manager_id, NULL, NULL, NULL, NULL, count(*), NULL, NULL, NULL, NULL
        FROM assignment a JOIN incident i ON i.id = a.incident_id
        WHERE a.manager_id IN (SELECT manager_id FROM plausible)
          AND a.status IN ('accepted', 'completed')
          AND i.district = :district AND a.incident_id <> :incident
        GROUP BY a.manager_id
"""


def _screen_with_facts(*, competences: bool) -> Any:
    manager = table_of(Manager).c
    params = [
        bindparam("today", type_=Date()),
        bindparam("districts", expanding=True, type_=String()),
        bindparam("incident", type_=table_of(Assignment).c.incident_id.type),
        bindparam("district", type_=String()),
    ]
    if competences:
        params += [
            bindparam("required", expanding=True, type_=String()),
            bindparam("n_required", type_=Integer()),
        ]
    return (
        text(
            _SCREEN_WITH_FACTS_SQL.replace(
                "/* competence check */", _COMPETENCE_CHECK if competences else ""
            )
        )
        .bindparams(*params)
        .columns(
            kind=String(),
            manager_id=manager.id.type,
            text_1=String(),
            text_2=String(),
            text_3=String(),
            languages=manager.languages.type,
            number_1=Integer(),
            number_2=Integer(),
            last_assigned_at=manager.last_assigned_at.type,
            date_1=Date(),
            date_2=Date(),
        )
    )


#: Built once: statement construction costs more than running it on a warm cache.
_SCREEN_WITH_FACTS = {
    True: _screen_with_facts(competences=True),
    False: _screen_with_facts(competences=False),
}


@dataclass(frozen=True, slots=True)
class AssignmentFilter:
    manager_id: uuid.UUID | None = None
    incident_id: uuid.UUID | None = None
    statuses: Sequence[str] = field(default_factory=tuple)
    # Row-level scope of the caller (set by the service):
    scope_manager_id: uuid.UUID | None = None
    scope_organisation_id: uuid.UUID | None = None


class DispatchRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def _rows(self, stmt: Any, params: dict[str, Any] | None = None) -> Any:
        """Rows of a column query on the session's connection (no ORM row processing; pending
        changes are flushed first, as ``Session.execute`` would)."""
        self.session.flush()
        return self.session.connection().execute(stmt, params)

    # --- incident facts ------------------------------------------------------------------------

    def incident_facts(self, incidents: Sequence[Incident]) -> dict[uuid.UUID, IncidentFacts]:
        """Matching facts of incidents: required competences and neighbouring districts."""
        competences = IncidentRepository(self.session).competences_of(i.id for i in incidents)
        neighbours = DistrictRepository(self.session).neighbours_of(i.district for i in incidents)
        return {
            i.id: IncidentFacts(
                id=i.id,
                district=i.district,
                required_competences=frozenset(competences.get(i.id, ())),
                languages=frozenset(i.languages or ()),
                neighbours=frozenset(neighbours.get(i.district, ())),
            )
            for i in incidents
        }

    # --- roster screening (one statement) ------------------------------------------------------

    def screen_roster(
        self, incident: IncidentFacts, today: date, *, neighbours: bool
    ) -> tuple[dict[str, int], list[uuid.UUID]]:
        """Counts of managers failing a district-independent constraint or every district, by
        reason, and the ids of the others (plausible), from one consistent statement."""
        districts = {incident.district} | (set(incident.neighbours) if neighbours else set())
        # Uncorrelated IN subqueries, each computed once (SQLite builds an ephemeral index,
        # PostgreSQL a hashed subplan), instead of one lookup per manager and constraint.
        absent = col(Manager.id).in_(
            select(col(Absence.manager_id)).where(
                col(Absence.starts_on) <= today, col(Absence.ends_on) >= today
            )
        )
        serves = or_(
            col(Manager.home_district).in_(districts),
            col(Manager.id).in_(
                select(col(ManagerDistrict.manager_id)).where(
                    col(ManagerDistrict.district_code).in_(districts)
                )
            ),
        )
        whens: list[tuple[Any, str]] = [
            (Manager.status != ACTIVE_STATUS, "not_active"),
            (absent, "absent"),
            (Manager.open_assignments >= Manager.max_open_assignments, "at_capacity"),
        ]
        required = sorted(incident.required_competences)
        if required:
            competent = (
                select(col(ManagerCompetence.manager_id))
                .where(
                    col(ManagerCompetence.competence_code).in_(required),
                    col(ManagerCompetence.certified_on) <= today,
                    or_(
                        col(ManagerCompetence.expires_on).is_(None),
                        col(ManagerCompetence.expires_on) >= today,
                    ),
                )
                .group_by(col(ManagerCompetence.manager_id))
                .having(func.count() == len(required))
            )
            whens.append((col(Manager.id).not_in(competent), "missing_competence"))
        whens.append((not_(serves), "wrong_district"))
        # MATERIALIZED: the verdict is computed once per manager, not once per reference to it.
        screened = (
            select(
                case(*whens, else_=PLAUSIBLE).label("verdict"), col(Manager.id).label("manager_id")
            )
            .cte("screened")
            .prefix_with("MATERIALIZED")
        )
        plausible_id = case((screened.c.verdict == PLAUSIBLE, screened.c.manager_id))
        rows = self._rows(
            select(screened.c.verdict, plausible_id, func.count()).group_by(
                screened.c.verdict, plausible_id
            )
        )
        counts: dict[str, int] = {}
        plausible: list[uuid.UUID] = []
        for verdict, manager_id, count in rows:
            if verdict == PLAUSIBLE:
                plausible.append(manager_id)
            else:
                counts[verdict] = count
        return counts, plausible

    def screen_with_facts(
        self, incident: IncidentFacts, today: date, *, neighbours: bool
    ) -> tuple[dict[str, int], list[ManagerFacts]]:
        """:meth:`screen_roster` and :meth:`manager_facts` (``screened=True``) of the plausible
        managers in ONE statement: the counts per excluding reason and the plausible managers'
        facts relative to ``incident``."""
        districts = sorted(
            {incident.district} | (set(incident.neighbours) if neighbours else set())
        )
        required = sorted(incident.required_competences)
        params: dict[str, Any] = {
            "today": today,
            "districts": districts,
            "incident": incident.id,
            "district": incident.district,
        }
        if required:
            params["required"] = required
            params["n_required"] = len(required)
        counts: dict[str, int] = {}
        rows: list[Any] = []
        competences: dict[uuid.UUID, list[CompetenceHolding]] = defaultdict(list)
        served: dict[uuid.UUID, set[str]] = defaultdict(set)
        statuses: dict[uuid.UUID, set[str]] = defaultdict(set)
        earlier: dict[uuid.UUID, int] = {}
        for kind, manager_id, text_1, *rest in self._rows(
            _SCREEN_WITH_FACTS[bool(required)], params
        ):
            if kind == "manager":
                rows.append((manager_id, text_1, *rest))
            elif kind == "competence":
                competences[manager_id].append(CompetenceHolding(text_1, rest[6], rest[7]))
            elif kind == "district":
                served[manager_id].add(text_1)
            elif kind == "status":
                statuses[manager_id].add(text_1)
            elif kind == "earlier":
                earlier[manager_id] = rest[3]
            else:  # excluded
                counts[text_1] = rest[3]
        managers = [
            ManagerFacts(
                id=manager_id,
                display_name=display_name,
                status=status,
                home_district=home_district,
                districts=frozenset(served.get(manager_id, ())),
                languages=frozenset(languages or ()),
                max_open_assignments=max_open,
                competences=tuple(competences.get(manager_id, ())),
                open_assignments=open_now,
                last_assigned_at=last_assigned_at,
                statuses_on_incident=frozenset(statuses.get(manager_id, ())),
                earlier_cases_in_district=earlier.get(manager_id, 0),
            )
            for (
                manager_id,
                display_name,
                status,
                home_district,
                languages,
                max_open,
                open_now,
                last_assigned_at,
                _,
                _,
            ) in rows
        ]
        return counts, managers

    # --- manager facts -------------------------------------------------------------------------

    def manager_facts(
        self,
        manager_ids: Collection[uuid.UUID],
        today: date,
        *,
        incident_id: uuid.UUID | None,
        district: str | None,
        screened: bool = False,
    ) -> list[ManagerFacts]:
        """Full matching facts of the given managers relative to one incident (or none).

        ``screened``: the managers passed :meth:`screen_roster`, so none is absent today and
        their absences need not be loaded.
        """
        ids = list(manager_ids)
        if not ids:
            return []
        managers = self._rows(
            select(
                col(Manager.id),
                col(Manager.display_name),
                col(Manager.status),
                col(Manager.home_district),
                col(Manager.languages),
                col(Manager.max_open_assignments),
                col(Manager.open_assignments),
                col(Manager.last_assigned_at),
            ).where(col(Manager.id).in_(ids))
        ).all()
        competences = self.competences_of(ids)
        served = self.served_districts(ids)
        absences = {} if screened else self.absences_today(ids, today)
        statuses: dict[uuid.UUID, set[str]] = defaultdict(set)
        if incident_id is not None:
            for manager_id, status in self._rows(
                select(col(Assignment.manager_id), col(Assignment.status)).where(
                    col(Assignment.incident_id) == incident_id, col(Assignment.manager_id).in_(ids)
                )
            ):
                statuses[manager_id].add(status)
        earlier: dict[uuid.UUID, int] = {}
        if district is not None:
            earlier = self.earlier_cases(ids, district, exclude_incident_id=incident_id)
        return [
            ManagerFacts(
                id=m.id,
                display_name=m.display_name,
                status=m.status,
                home_district=m.home_district,
                districts=frozenset(served.get(m.id, ())),
                languages=frozenset(m.languages or ()),
                max_open_assignments=m.max_open_assignments,
                competences=tuple(competences.get(m.id, ())),
                absences=absences.get(m.id, ()),
                open_assignments=m.open_assignments,
                last_assigned_at=m.last_assigned_at,
                statuses_on_incident=frozenset(statuses.get(m.id, ())),
                earlier_cases_in_district=earlier.get(m.id, 0),
            )
            for m in managers
        ]

    def competences_of(
        self, manager_ids: Iterable[uuid.UUID] | None, *, valid_on: date | None = None
    ) -> dict[uuid.UUID, list[CompetenceHolding]]:
        stmt = select(
            col(ManagerCompetence.manager_id),
            col(ManagerCompetence.competence_code),
            col(ManagerCompetence.certified_on),
            col(ManagerCompetence.expires_on),
        )
        if manager_ids is not None:
            stmt = stmt.where(col(ManagerCompetence.manager_id).in_(list(manager_ids)))
        if valid_on is not None:
            stmt = stmt.where(
                col(ManagerCompetence.certified_on) <= valid_on,
                or_(
                    col(ManagerCompetence.expires_on).is_(None),
                    col(ManagerCompetence.expires_on) >= valid_on,
                ),
            )
        result: dict[uuid.UUID, list[CompetenceHolding]] = defaultdict(list)
        for manager_id, code, certified_on, expires_on in self._rows(stmt):
            result[manager_id].append(CompetenceHolding(code, certified_on, expires_on))
        return result

    def served_districts(
        self, manager_ids: Iterable[uuid.UUID] | None
    ) -> dict[uuid.UUID, set[str]]:
        stmt = select(col(ManagerDistrict.manager_id), col(ManagerDistrict.district_code))
        if manager_ids is not None:
            stmt = stmt.where(col(ManagerDistrict.manager_id).in_(list(manager_ids)))
        result: dict[uuid.UUID, set[str]] = defaultdict(set)
        for manager_id, code in self._rows(stmt):
            result[manager_id].add(code)
        return result

    def absences_today(
        self, manager_ids: Iterable[uuid.UUID], today: date
    ) -> dict[uuid.UUID, tuple[AbsencePeriod, ...]]:
        result: dict[uuid.UUID, tuple[AbsencePeriod, ...]] = {}
        for manager_id, starts_on, ends_on in self._rows(
            select(col(Absence.manager_id), col(Absence.starts_on), col(Absence.ends_on)).where(
                col(Absence.manager_id).in_(list(manager_ids)),
                col(Absence.starts_on) <= today,
                col(Absence.ends_on) >= today,
            )
        ):
            result[manager_id] = (*result.get(manager_id, ()), AbsencePeriod(starts_on, ends_on))
        return result

    def earlier_cases(
        self,
        manager_ids: Iterable[uuid.UUID],
        district: str,
        *,
        exclude_incident_id: uuid.UUID | None,
    ) -> dict[uuid.UUID, int]:
        """Per manager: accepted or completed assignments on other incidents in ``district``."""
        stmt = (
            select(col(Assignment.manager_id), func.count())
            .join(Incident, col(Incident.id) == col(Assignment.incident_id))
            .where(
                col(Assignment.manager_id).in_(list(manager_ids)),
                col(Assignment.status).in_(CASE_STATUSES),
                col(Incident.district) == district,
            )
            .group_by(col(Assignment.manager_id))
        )
        if exclude_incident_id is not None:
            stmt = stmt.where(col(Assignment.incident_id) != exclude_incident_id)
        return {manager_id: count for manager_id, count in self._rows(stmt)}

    # --- batch roster --------------------------------------------------------------------------

    def available_roster(self, today: date) -> list[Any]:
        """Managers that may take an offer today at all: active, not absent, a free slot."""
        absent = exists().where(
            col(Absence.manager_id) == col(Manager.id),
            col(Absence.starts_on) <= today,
            col(Absence.ends_on) >= today,
        )
        return list(
            self._rows(
                select(
                    col(Manager.id),
                    col(Manager.display_name),
                    col(Manager.status),
                    col(Manager.home_district),
                    col(Manager.languages),
                    col(Manager.max_open_assignments),
                    col(Manager.open_assignments),
                    col(Manager.last_assigned_at),
                ).where(
                    col(Manager.status) == ACTIVE_STATUS,
                    col(Manager.open_assignments) < col(Manager.max_open_assignments),
                    not_(absent),
                )
            ).all()
        )

    def involvement(
        self, incident_ids: Collection[uuid.UUID]
    ) -> list[tuple[uuid.UUID, uuid.UUID, str]]:
        """(incident_id, manager_id, status) of every assignment on the given incidents."""
        if not incident_ids:
            return []
        rows = self._rows(
            select(
                col(Assignment.incident_id), col(Assignment.manager_id), col(Assignment.status)
            ).where(col(Assignment.incident_id).in_(list(incident_ids)))
        )
        return [(i, m, s) for i, m, s in rows]

    def cases_by_district(self) -> dict[str, dict[uuid.UUID, int]]:
        """district → manager → accepted or completed assignments there."""
        result: dict[str, dict[uuid.UUID, int]] = defaultdict(dict)
        for district, manager_id, count in self._rows(
            select(col(Incident.district), col(Assignment.manager_id), func.count())
            .join(Incident, col(Incident.id) == col(Assignment.incident_id))
            .where(col(Assignment.status).in_(CASE_STATUSES))
            .group_by(col(Incident.district), col(Assignment.manager_id))
        ):
            result[district][manager_id] = count
        return result

    def triaged_incidents(self, *, for_update: bool) -> list[Incident]:
        """Every triaged incident, oldest report first (locked in id order when asked)."""
        stmt = select(Incident).where(col(Incident.status) == "triaged").order_by(col(Incident.id))
        if for_update:
            stmt = stmt.with_for_update().execution_options(populate_existing=True)
        return sorted(self.session.scalars(stmt), key=lambda i: (i.reported_at, i.id))

    def incidents(self, ids: Collection[uuid.UUID], *, for_update: bool) -> list[Incident]:
        if not ids:
            return []
        stmt = select(Incident).where(col(Incident.id).in_(list(ids))).order_by(col(Incident.id))
        if for_update:
            stmt = stmt.with_for_update().execution_options(populate_existing=True)
        return list(self.session.scalars(stmt))

    # --- assignments ---------------------------------------------------------------------------

    def open_slots(self, incident_id: uuid.UUID) -> list[Assignment]:
        return list(
            self.session.scalars(
                select(Assignment)
                .where(
                    col(Assignment.incident_id) == incident_id,
                    col(Assignment.status).in_(OPEN_STATUSES),
                )
                .order_by(col(Assignment.created_at), col(Assignment.id))
            )
        )

    def has_completed_lead(self, incident_id: uuid.UUID) -> bool:
        return (
            self.session.scalar(
                select(
                    exists().where(
                        col(Assignment.incident_id) == incident_id,
                        col(Assignment.role) == "lead",
                        col(Assignment.status) == AssignmentStatus.completed,
                    )
                )
            )
            is True
        )

    def due_offer_incidents(self, now: Any, limit: int) -> list[uuid.UUID]:
        """Incidents holding an offer past its ``expires_at`` (oldest first)."""
        rows = self.session.execute(
            select(col(Assignment.incident_id), func.min(col(Assignment.expires_at)).label("due"))
            .where(
                col(Assignment.status) == AssignmentStatus.offered,
                col(Assignment.expires_at) <= now,
            )
            .group_by(col(Assignment.incident_id))
            .order_by("due", col(Assignment.incident_id))
            .limit(limit)
        )
        return [incident_id for incident_id, _ in rows]

    def lock_incident_skip_locked(self, incident_id: uuid.UUID) -> Incident | None:
        """The incident row locked for this transaction, or ``None`` if another holds it."""
        return self.session.scalars(
            select(Incident)
            .where(col(Incident.id) == incident_id)
            .with_for_update(skip_locked=True)
            .execution_options(populate_existing=True)
        ).first()

    def due_offers(self, incident_id: uuid.UUID, now: Any) -> list[Assignment]:
        return list(
            self.session.scalars(
                select(Assignment)
                .where(
                    col(Assignment.incident_id) == incident_id,
                    col(Assignment.status) == AssignmentStatus.offered,
                    Assignment.expires_at <= now,
                )
                .order_by(col(Assignment.expires_at), col(Assignment.id))
                .execution_options(populate_existing=True)
            )
        )

    def display_names(self, manager_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, str]:
        ids = list(set(manager_ids))
        if not ids:
            return {}
        return dict(
            self.session.execute(
                select(col(Manager.id), col(Manager.display_name)).where(col(Manager.id).in_(ids))
            ).all()  # type: ignore[arg-type]
        )

    def manager_exists(self, manager_id: uuid.UUID) -> bool:
        return self.session.get(Manager, manager_id) is not None

    def page(
        self, flt: AssignmentFilter, params: PageParams
    ) -> tuple[list[tuple[Assignment, str]], str | None]:
        stmt = select(Assignment, col(Manager.display_name)).join(
            Manager, col(Manager.id) == col(Assignment.manager_id)
        )
        conditions = []
        if flt.scope_manager_id is not None:
            conditions.append(Assignment.manager_id == flt.scope_manager_id)
        if flt.scope_organisation_id is not None:
            stmt = stmt.join(Incident, col(Incident.id) == col(Assignment.incident_id))
            conditions.append(Incident.organisation_id == flt.scope_organisation_id)
        if flt.manager_id is not None:
            conditions.append(Assignment.manager_id == flt.manager_id)
        if flt.incident_id is not None:
            conditions.append(Assignment.incident_id == flt.incident_id)
        if flt.statuses:
            conditions.append(col(Assignment.status).in_(list(flt.statuses)))
        if conditions:
            stmt = stmt.where(and_(*conditions))
        stmt = keyset(
            stmt, [col(Assignment.created_at), col(Assignment.id)], params, descending=True
        )
        rows = [(a, name) for a, name in self.session.execute(stmt)]
        return page_slice(rows, params.limit, lambda r: [r[0].created_at, r[0].id])

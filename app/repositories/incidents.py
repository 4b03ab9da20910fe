"""Incident queries: scoped lists with filters, competences, timeline, notes."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import cast

from sqlalchemy import Connection, Exists, Select, bindparam, delete, exists, or_, select
from sqlmodel import col

from app.core.pagination import PageParams, keyset, page_slice
from app.models.assignment import Assignment, AssignmentRole, AssignmentStatus
from app.models.base import table_of
from app.models.incident import Incident, IncidentCompetence, IncidentEvent, IncidentNote
from app.repositories.base import Repository

_OPEN = (AssignmentStatus.offered, AssignmentStatus.accepted)
_INCIDENT_TABLE = table_of(Incident)
_COMPETENCE_TABLE = table_of(IncidentCompetence)
#: Built once (statement construction costs more than running them on a warm cache).
_ROW_BY_ID = select(*_INCIDENT_TABLE.columns).where(_INCIDENT_TABLE.c.id == bindparam("id"))
_COMPETENCES_OF = (
    select(_COMPETENCE_TABLE.c.incident_id, _COMPETENCE_TABLE.c.competence_code)
    .where(_COMPETENCE_TABLE.c.incident_id.in_(bindparam("ids", expanding=True)))
    .order_by(_COMPETENCE_TABLE.c.competence_code)
)

_ASSIGNMENT_TABLE = table_of(Assignment)
_HELD_ROLES = (
    select(_ASSIGNMENT_TABLE.c.incident_id, _ASSIGNMENT_TABLE.c.role)
    .where(_ASSIGNMENT_TABLE.c.incident_id.in_(bindparam("ids", expanding=True)))
    .where(
        _ASSIGNMENT_TABLE.c.status.in_(
            [AssignmentStatus.offered, AssignmentStatus.accepted, AssignmentStatus.completed]
        )
    )
    .distinct()
)


@dataclass(frozen=True, slots=True)
class IncidentFilter:
    district: str | None = None
    statuses: Sequence[str] = field(default_factory=tuple)
    category: str | None = None
    min_escalation: int | None = None
    reported_after: datetime | None = None
    reported_before: datetime | None = None
    organisation_id: uuid.UUID | None = None
    q: str | None = None
    # Row-level scope of the caller (set by the service, never by the client):
    scope_organisation_id: uuid.UUID | None = None
    scope_manager_id: uuid.UUID | None = None


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class IncidentRepository(Repository[Incident]):
    model = Incident

    def filtered(self, flt: IncidentFilter) -> Select[Incident]:
        stmt = select(Incident)
        if flt.scope_organisation_id is not None:
            stmt = stmt.where(col(Incident.organisation_id) == flt.scope_organisation_id)
        if flt.scope_manager_id is not None:
            stmt = stmt.where(self.assigned_clause(flt.scope_manager_id))
        if flt.district:
            stmt = stmt.where(col(Incident.district) == flt.district)
        if flt.statuses:
            stmt = stmt.where(col(Incident.status).in_(list(flt.statuses)))
        if flt.category:
            stmt = stmt.where(col(Incident.category) == flt.category)
        if flt.min_escalation is not None:
            stmt = stmt.where(col(Incident.escalation_level) >= flt.min_escalation)
        if flt.reported_after is not None:
            stmt = stmt.where(col(Incident.reported_at) >= flt.reported_after)
        if flt.reported_before is not None:
            stmt = stmt.where(col(Incident.reported_at) < flt.reported_before)
        if flt.organisation_id is not None:
            stmt = stmt.where(col(Incident.organisation_id) == flt.organisation_id)
        if flt.q:
            pattern = f"%{_escape_like(flt.q)}%"
            stmt = stmt.where(
                or_(
                    col(Incident.title).ilike(pattern, escape="\\"),
                    col(Incident.description).ilike(pattern, escape="\\"),
                )
            )
        return stmt

    @staticmethod
    def assigned_clause(manager_id: uuid.UUID) -> Exists:
        return exists().where(
            col(Assignment.incident_id) == col(Incident.id),
            col(Assignment.manager_id) == manager_id,
            col(Assignment.status).in_(_OPEN),
        )

    def page(self, flt: IncidentFilter, params: PageParams) -> tuple[list[Incident], str | None]:
        """Plain rows (SQLAlchemy Core, attribute access like the model): a read path needs no
        identity map or change tracking, which cost more than the query (bench/README.md)."""
        stmt = keyset(
            self.filtered(flt),
            [col(Incident.created_at), col(Incident.id)],
            params,
            descending=True,
        ).with_only_columns(*_INCIDENT_TABLE.columns)
        rows = self._core().execute(stmt).all()
        return page_slice(rows, params.limit, lambda i: [i.created_at, i.id])

    def _core(self) -> Connection:
        """The session's connection, for Core reads: ``Session.execute`` adds ORM bookkeeping
        that costs ~10× the query itself (bench/README.md). Pending changes are flushed first,
        as autoflush would."""
        self.session.flush()
        return self.session.connection()

    def row(self, incident_id: uuid.UUID) -> Incident | None:
        """One incident as a plain row (read-only; see :meth:`page`): its columns read like the
        model's attributes, which is all the read path uses."""
        row = self._core().execute(_ROW_BY_ID, {"id": incident_id}).first()
        return cast("Incident | None", row)

    def competences_of(self, incident_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, list[str]]:
        ids = list(incident_ids)
        result: dict[uuid.UUID, list[str]] = defaultdict(list)
        if not ids:
            return result
        rows = self._core().execute(_COMPETENCES_OF, {"ids": ids})
        for incident_id, code in rows:
            result[incident_id].append(code)
        return result

    def held_roles(self, incident_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, set[str]]:
        """The slots (``lead``/``co``) each incident has filled: an open or completed
        assignment holds its role."""
        ids = list(incident_ids)
        result: dict[uuid.UUID, set[str]] = defaultdict(set)
        if not ids:
            return result
        rows = self._core().execute(_HELD_ROLES, {"ids": ids})
        for incident_id, role in rows:
            result[incident_id].add(str(role))
        return result

    def set_competences(self, incident: Incident, codes: Iterable[str]) -> None:
        """``incident``'s required competences are ``codes`` (each link holds its district)."""
        self.session.execute(
            delete(IncidentCompetence).where(col(IncidentCompetence.incident_id) == incident.id)
        )
        for code in sorted(set(codes)):
            self.session.add(
                IncidentCompetence(
                    incident_id=incident.id, competence_code=code, district=incident.district
                )
            )

    def by_external_id(self, source: str, external_id: str) -> Incident | None:
        return self.session.scalars(
            select(Incident).where(
                col(Incident.source) == source, col(Incident.external_id) == external_id
            )
        ).first()

    def is_assigned(self, incident_id: uuid.UUID, manager_id: uuid.UUID) -> bool:
        return (
            self.session.scalar(
                select(
                    exists().where(
                        col(Assignment.incident_id) == incident_id,
                        col(Assignment.manager_id) == manager_id,
                        col(Assignment.status).in_(_OPEN),
                    )
                )
            )
            is True
        )

    def accepted_incidents(
        self,
        manager_id: uuid.UUID,
        incident_ids: Iterable[uuid.UUID],
        *,
        roles: Iterable[AssignmentRole] = (AssignmentRole.lead, AssignmentRole.co),
    ) -> set[uuid.UUID]:
        """Incidents among ``incident_ids`` where the manager holds an accepted assignment in one
        of ``roles`` (lead or co by default)."""
        ids = list(incident_ids)
        wanted = [r.value for r in roles]
        if not ids or not wanted:
            return set()
        return set(
            self.session.scalars(
                select(col(Assignment.incident_id)).where(
                    col(Assignment.incident_id).in_(ids),
                    col(Assignment.manager_id) == manager_id,
                    col(Assignment.role).in_(wanted),
                    col(Assignment.status) == AssignmentStatus.accepted,
                )
            )
        )

    def open_assignments(self, incident_id: uuid.UUID) -> list[Assignment]:
        return list(
            self.session.scalars(
                select(Assignment)
                .where(
                    col(Assignment.incident_id) == incident_id, col(Assignment.status).in_(_OPEN)
                )
                .order_by(col(Assignment.created_at))
            )
        )

    def events_page(
        self, incident_id: uuid.UUID, params: PageParams
    ) -> tuple[list[IncidentEvent], str | None]:
        stmt = keyset(
            select(IncidentEvent).where(col(IncidentEvent.incident_id) == incident_id),
            [col(IncidentEvent.at), col(IncidentEvent.id)],
            params,
        )
        return page_slice(self.session.scalars(stmt).all(), params.limit, lambda e: [e.at, e.id])

    def notes_page(
        self, incident_id: uuid.UUID, params: PageParams
    ) -> tuple[list[IncidentNote], str | None]:
        stmt = keyset(
            select(IncidentNote).where(col(IncidentNote.incident_id) == incident_id),
            [col(IncidentNote.created_at), col(IncidentNote.id)],
            params,
        )
        rows = self.session.scalars(stmt).all()
        return page_slice(rows, params.limit, lambda n: [n.created_at, n.id])

"""Manager queries: filtered keyset pages (all filters in SQL), batched competences/districts,
absences. *today* is always passed in by the service; nothing here reads the clock."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    delete,
    exists,
    func,
    literal,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import col

from app.core.errors import BadRequest
from app.core.pagination import PageParams, decode_cursor, keyset, page_slice
from app.core.problems import ProblemType
from app.models.manager import Absence, Manager, ManagerCompetence, ManagerDistrict, ManagerStatus
from app.repositories.base import Repository


@dataclass(frozen=True, slots=True)
class ManagerFilter:
    district: str | None = None
    competences: Sequence[str] = field(default_factory=tuple)
    statuses: Sequence[str] = field(default_factory=tuple)
    language: str | None = None
    available: bool | None = None


def absent_clause(today: date) -> ColumnElement[bool]:
    """An absence of the (outer) manager covers ``today`` (both bounds inclusive)."""
    return exists().where(
        col(Absence.manager_id) == col(Manager.id),
        col(Absence.starts_on) <= today,
        col(Absence.ends_on) >= today,
    )


def available_clause(today: date) -> ColumnElement[bool]:
    return and_(col(Manager.status) == ManagerStatus.active, ~absent_clause(today))


def valid_competence_clause(code: str, today: date) -> ColumnElement[bool]:
    """The manager holds ``code`` validly today: certified by today, not expired before today."""
    return exists().where(
        col(ManagerCompetence.manager_id) == col(Manager.id),
        col(ManagerCompetence.competence_code) == code,
        col(ManagerCompetence.certified_on) <= today,
        or_(
            col(ManagerCompetence.expires_on).is_(None), col(ManagerCompetence.expires_on) >= today
        ),
    )


def serves_clause(district: str) -> ColumnElement[bool]:
    return or_(
        col(Manager.home_district) == district,
        exists().where(
            col(ManagerDistrict.manager_id) == col(Manager.id),
            col(ManagerDistrict.district_code) == district,
        ),
    )


def absence_cursor(cursor: str) -> tuple[date, uuid.UUID]:
    """An absence list cursor, ``[starts_on ISO, id]``, decoded (400 when it is not one)."""
    starts_on, last_id = decode_cursor(cursor, 2)
    try:
        if not isinstance(last_id, uuid.UUID):
            raise ValueError("id")
        return date.fromisoformat(starts_on), last_id
    except (TypeError, ValueError):
        raise BadRequest(
            "The cursor is not valid; start again without it.",
            type_=ProblemType.INVALID_CURSOR,
        ) from None


class ManagerRepository(Repository[Manager]):
    model = Manager

    # --- filters ---------------------------------------------------------------------------------

    def _speaks_clause(self, language: str) -> ColumnElement[bool]:
        if self.session.get_bind().dialect.name == "postgresql":
            return type_coerce(col(Manager.languages), JSONB).contains([language])
        spoken = func.json_each(col(Manager.languages)).table_valued("value").alias("spoken")
        return exists(select(literal(1)).select_from(spoken).where(spoken.c.value == language))

    def filtered(self, flt: ManagerFilter, today: date) -> Select[Manager, bool]:
        absent = absent_clause(today)
        stmt = select(Manager, absent.label("absent_today"))
        if flt.district:
            stmt = stmt.where(serves_clause(flt.district))
        for code in dict.fromkeys(flt.competences):
            stmt = stmt.where(valid_competence_clause(code, today))
        if flt.statuses:
            stmt = stmt.where(col(Manager.status).in_(list(flt.statuses)))
        if flt.language:
            stmt = stmt.where(self._speaks_clause(flt.language))
        if flt.available is True:
            stmt = stmt.where(available_clause(today))
        elif flt.available is False:
            stmt = stmt.where(~available_clause(today))
        return stmt

    def page(
        self, flt: ManagerFilter, params: PageParams, today: date
    ) -> tuple[list[tuple[Manager, bool]], str | None]:
        """One page of ``(manager, absent_today)`` in (created_at, id) order: one query."""
        stmt = keyset(self.filtered(flt, today), [col(Manager.created_at), col(Manager.id)], params)
        rows = [(row[0], bool(row[1])) for row in self.session.execute(stmt)]
        return page_slice(rows, params.limit, lambda r: [r[0].created_at, r[0].id])

    def absent_ids(self, manager_ids: Iterable[uuid.UUID], today: date) -> set[uuid.UUID]:
        ids = list(manager_ids)
        if not ids:
            return set()
        return set(
            self.session.scalars(
                select(col(Absence.manager_id)).where(
                    col(Absence.manager_id).in_(ids),
                    col(Absence.starts_on) <= today,
                    col(Absence.ends_on) >= today,
                )
            )
        )

    # --- competences and districts (one query per page each) ------------------------------------

    def competences_of(
        self, manager_ids: Iterable[uuid.UUID]
    ) -> dict[uuid.UUID, list[ManagerCompetence]]:
        ids = list(manager_ids)
        result: dict[uuid.UUID, list[ManagerCompetence]] = defaultdict(list)
        if not ids:
            return result
        rows = self.session.scalars(
            select(ManagerCompetence)
            .where(col(ManagerCompetence.manager_id).in_(ids))
            .order_by(col(ManagerCompetence.competence_code))
        )
        for holding in rows:
            result[holding.manager_id].append(holding)
        return result

    def districts_of(self, manager_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, list[str]]:
        ids = list(manager_ids)
        result: dict[uuid.UUID, list[str]] = defaultdict(list)
        if not ids:
            return result
        rows = self.session.execute(
            select(col(ManagerDistrict.manager_id), col(ManagerDistrict.district_code))
            .where(col(ManagerDistrict.manager_id).in_(ids))
            .order_by(col(ManagerDistrict.district_code))
        )
        for manager_id, code in rows:
            result[manager_id].append(code)
        return result

    def set_districts(self, manager_id: uuid.UUID, codes: Iterable[str]) -> None:
        self.session.execute(
            delete(ManagerDistrict).where(col(ManagerDistrict.manager_id) == manager_id)
        )
        for code in sorted(set(codes)):
            self.session.add(ManagerDistrict(manager_id=manager_id, district_code=code))

    def set_competences(
        self, manager_id: uuid.UUID, holdings: Iterable[tuple[str, date, date | None]]
    ) -> None:
        self.session.execute(
            delete(ManagerCompetence).where(col(ManagerCompetence.manager_id) == manager_id)
        )
        for code, certified_on, expires_on in holdings:
            self.session.add(
                ManagerCompetence(
                    manager_id=manager_id,
                    competence_code=code,
                    certified_on=certified_on,
                    expires_on=expires_on,
                )
            )

    def by_email(self, email: str) -> Manager | None:
        return self.session.scalars(select(Manager).where(col(Manager.email) == email)).first()

    # --- absences ------------------------------------------------------------------------------

    def absence(self, manager_id: uuid.UUID, absence_id: uuid.UUID) -> Absence | None:
        return self.session.scalars(
            select(Absence).where(
                col(Absence.id) == absence_id, col(Absence.manager_id) == manager_id
            )
        ).first()

    def absences_page(
        self, manager_id: uuid.UUID, params: PageParams
    ) -> tuple[list[Absence], str | None]:
        """Absences by (starts_on, id); the cursor carries the date as an ISO string."""
        stmt = select(Absence).where(col(Absence.manager_id) == manager_id)
        if params.cursor:
            starts_on, last_id = absence_cursor(params.cursor)
            stmt = stmt.where(
                or_(
                    col(Absence.starts_on) > starts_on,
                    and_(col(Absence.starts_on) == starts_on, col(Absence.id) > last_id),
                )
            )
        stmt = keyset(
            stmt, [col(Absence.starts_on), col(Absence.id)], PageParams(params.limit, None)
        )
        rows = self.session.scalars(stmt).all()
        return page_slice(rows, params.limit, lambda a: [a.starts_on.isoformat(), a.id])

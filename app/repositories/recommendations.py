"""Recommendation queries: filtered lists (``overdue`` in SQL), links, evidence, timeline, report."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, case, delete, exists, func, or_, select
from sqlmodel import col

from app.core.pagination import PageParams, keyset, page_slice
from app.models.incident import Incident
from app.models.recommendation import (
    CLOSED_RECOMMENDATION_STATUSES,
    Recommendation,
    RecommendationDistrict,
    RecommendationEvent,
    RecommendationIncident,
)
from app.models.reference import Organisation
from app.repositories.base import Repository

_CLOSED = sorted(CLOSED_RECOMMENDATION_STATUSES)


def overdue_clause(today: date) -> ColumnElement[bool]:
    """``due_on`` passed and not implemented, rejected or withdrawn — as SQL."""
    return and_(
        col(Recommendation.due_on).is_not(None),
        col(Recommendation.due_on) < today,
        col(Recommendation.status).not_in(_CLOSED),
    )


def not_overdue_clause(today: date) -> ColumnElement[bool]:
    """The exact complement of :func:`overdue_clause` (NULL-safe)."""
    return or_(
        col(Recommendation.due_on).is_(None),
        col(Recommendation.due_on) >= today,
        col(Recommendation.status).in_(_CLOSED),
    )


@dataclass(frozen=True, slots=True)
class RecommendationFilter:
    statuses: Sequence[str] = field(default_factory=tuple)
    category: str | None = None
    addressee: uuid.UUID | None = None
    district: str | None = None
    overdue: bool | None = None


class RecommendationRepository(Repository[Recommendation]):
    model = Recommendation

    def filtered(self, flt: RecommendationFilter, today: date) -> Select[Recommendation]:
        stmt = select(Recommendation)
        if flt.statuses:
            stmt = stmt.where(col(Recommendation.status).in_(list(flt.statuses)))
        if flt.category:
            stmt = stmt.where(col(Recommendation.category) == flt.category)
        if flt.addressee is not None:
            stmt = stmt.where(col(Recommendation.addressee) == flt.addressee)
        if flt.district:
            stmt = stmt.where(
                exists().where(
                    col(RecommendationDistrict.recommendation_id) == col(Recommendation.id),
                    col(RecommendationDistrict.district_code) == flt.district,
                )
            )
        if flt.overdue is True:
            stmt = stmt.where(overdue_clause(today))
        elif flt.overdue is False:
            stmt = stmt.where(not_overdue_clause(today))
        return stmt

    def page(
        self, flt: RecommendationFilter, params: PageParams, today: date
    ) -> tuple[list[Recommendation], str | None]:
        stmt = keyset(
            self.filtered(flt, today),
            [col(Recommendation.created_at), col(Recommendation.id)],
            params,
            descending=True,
        )
        rows = self.session.scalars(stmt).all()
        return page_slice(rows, params.limit, lambda r: [r.created_at, r.id])

    # --- links ---------------------------------------------------------------------------------

    def districts_of(self, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, list[str]]:
        wanted = list(ids)
        result: dict[uuid.UUID, list[str]] = defaultdict(list)
        if not wanted:
            return result
        rows = self.session.execute(
            select(
                col(RecommendationDistrict.recommendation_id),
                col(RecommendationDistrict.district_code),
            )
            .where(col(RecommendationDistrict.recommendation_id).in_(wanted))
            .order_by(col(RecommendationDistrict.district_code))
        )
        for rec_id, code in rows:
            result[rec_id].append(code)
        return result

    def evidence_of(self, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, list[dict[str, Any]]]:
        """Evidence per recommendation: incident id, reference and title — nothing else."""
        wanted = list(ids)
        result: dict[uuid.UUID, list[dict[str, Any]]] = defaultdict(list)
        if not wanted:
            return result
        rows = self.session.execute(
            select(
                col(RecommendationIncident.recommendation_id),
                col(Incident.id),
                col(Incident.reference),
                col(Incident.title),
            )
            .join(Incident, col(Incident.id) == col(RecommendationIncident.incident_id))
            .where(col(RecommendationIncident.recommendation_id).in_(wanted))
            .order_by(col(Incident.reference))
        )
        for rec_id, incident_id, reference, title in rows:
            result[rec_id].append(
                {"incident_id": incident_id, "reference": reference, "title": title}
            )
        return result

    def set_districts(self, rec_id: uuid.UUID, codes: Iterable[str]) -> None:
        self.session.execute(
            delete(RecommendationDistrict).where(
                col(RecommendationDistrict.recommendation_id) == rec_id
            )
        )
        for code in sorted(set(codes)):
            self.session.add(RecommendationDistrict(recommendation_id=rec_id, district_code=code))

    def set_incidents(self, rec_id: uuid.UUID, incident_ids: Iterable[uuid.UUID]) -> None:
        self.session.execute(
            delete(RecommendationIncident).where(
                col(RecommendationIncident.recommendation_id) == rec_id
            )
        )
        for incident_id in sorted(set(incident_ids)):
            self.session.add(
                RecommendationIncident(recommendation_id=rec_id, incident_id=incident_id)
            )

    def existing_incident_ids(self, ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
        wanted = list(set(ids))
        if not wanted:
            return set()
        return set(
            self.session.scalars(select(col(Incident.id)).where(col(Incident.id).in_(wanted)))
        )

    def by_title(self, title: str) -> Recommendation | None:
        return self.session.scalars(
            select(Recommendation).where(col(Recommendation.title) == title)
        ).first()

    # --- timeline ------------------------------------------------------------------------------

    def events_page(
        self, rec_id: uuid.UUID, params: PageParams
    ) -> tuple[list[RecommendationEvent], str | None]:
        stmt = keyset(
            select(RecommendationEvent).where(col(RecommendationEvent.recommendation_id) == rec_id),
            [col(RecommendationEvent.seq)],
            params,
        )
        return page_slice(self.session.scalars(stmt).all(), params.limit, lambda e: [e.seq])

    def next_event_seq(self, rec_id: uuid.UUID) -> int:
        """The next timeline number (autoflush makes events added in this unit of work count)."""
        current = self.session.scalar(
            select(func.max(col(RecommendationEvent.seq))).where(
                col(RecommendationEvent.recommendation_id) == rec_id
            )
        )
        return int(current or 0) + 1

    # --- report --------------------------------------------------------------------------------

    def report_rows(self, today: date) -> list[Any]:
        """Every recommendation with its addressee's name, overdue flag and evidence count."""
        evidence = (
            select(
                col(RecommendationIncident.recommendation_id).label("rec_id"),
                func.count().label("n"),
            )
            .group_by(col(RecommendationIncident.recommendation_id))
            .subquery()
        )
        overdue = overdue_clause(today)
        stmt = (
            select(
                col(Recommendation.id),
                col(Recommendation.reference),
                col(Recommendation.title),
                col(Recommendation.category),
                col(Recommendation.addressee),
                col(Organisation.name).label("addressee_name"),
                col(Recommendation.status),
                col(Recommendation.progress),
                col(Recommendation.due_on),
                overdue.label("overdue"),
                func.coalesce(evidence.c.n, 0).label("evidence_count"),
            )
            .join(Organisation, col(Organisation.id) == col(Recommendation.addressee))
            .outerjoin(evidence, evidence.c.rec_id == col(Recommendation.id))
            .order_by(col(Recommendation.reference))
        )
        return list(self.session.execute(stmt))

    def status_by_addressee(self, today: date) -> list[Any]:
        """``(addressee, name, status, count, overdue, progress_sum)`` rows — GROUP BY in SQL."""
        overdue_int = func.sum(case((overdue_clause(today), 1), else_=0))
        stmt = (
            select(
                col(Recommendation.addressee),
                col(Organisation.name),
                col(Recommendation.status),
                func.count().label("n"),
                overdue_int.label("overdue"),
                func.sum(col(Recommendation.progress)).label("progress_sum"),
            )
            .join(Organisation, col(Organisation.id) == col(Recommendation.addressee))
            .group_by(
                col(Recommendation.addressee), col(Organisation.name), col(Recommendation.status)
            )
            .order_by(col(Organisation.name), col(Recommendation.addressee))
        )
        return list(self.session.execute(stmt))

    def for_district(self, code: str, today: date) -> list[Any]:
        """The recommendations concerning one district (reference, title, status, overdue)."""
        stmt = (
            select(
                col(Recommendation.id),
                col(Recommendation.reference),
                col(Recommendation.title),
                col(Recommendation.status),
                col(Recommendation.progress),
                col(Recommendation.due_on),
                overdue_clause(today).label("overdue"),
            )
            .join(
                RecommendationDistrict,
                col(RecommendationDistrict.recommendation_id) == col(Recommendation.id),
            )
            .where(col(RecommendationDistrict.district_code) == code)
            .order_by(col(Recommendation.reference))
        )
        return list(self.session.execute(stmt))

"""Recommendation queries: filtered lists (``overdue`` in SQL), links, evidence, timeline, report."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, case, delete, exists, func, or_, select

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
        Recommendation.due_on.is_not(None),
        Recommendation.due_on < today,
        Recommendation.status.not_in(_CLOSED),
    )


def not_overdue_clause(today: date) -> ColumnElement[bool]:
    """The exact complement of :func:`overdue_clause` (NULL-safe)."""
    return or_(
        Recommendation.due_on.is_(None),
        Recommendation.due_on >= today,
        Recommendation.status.in_(_CLOSED),
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

    def filtered(self, flt: RecommendationFilter, today: date) -> Select[tuple[Recommendation]]:
        stmt = select(Recommendation)
        if flt.statuses:
            stmt = stmt.where(Recommendation.status.in_(list(flt.statuses)))
        if flt.category:
            stmt = stmt.where(Recommendation.category == flt.category)
        if flt.addressee is not None:
            stmt = stmt.where(Recommendation.addressee == flt.addressee)
        if flt.district:
            stmt = stmt.where(
                exists().where(
                    RecommendationDistrict.recommendation_id == Recommendation.id,
                    RecommendationDistrict.district_code == flt.district,
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
            [Recommendation.created_at, Recommendation.id],
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
            select(RecommendationDistrict.recommendation_id, RecommendationDistrict.district_code)
            .where(RecommendationDistrict.recommendation_id.in_(wanted))
            .order_by(RecommendationDistrict.district_code)
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
                RecommendationIncident.recommendation_id,
                Incident.id,
                Incident.reference,
                Incident.title,
            )
            .join(Incident, Incident.id == RecommendationIncident.incident_id)
            .where(RecommendationIncident.recommendation_id.in_(wanted))
            .order_by(Incident.reference)
        )
        for rec_id, incident_id, reference, title in rows:
            result[rec_id].append(
                {"incident_id": incident_id, "reference": reference, "title": title}
            )
        return result

    def set_districts(self, rec_id: uuid.UUID, codes: Iterable[str]) -> None:
        self.session.execute(
            delete(RecommendationDistrict).where(
                RecommendationDistrict.recommendation_id == rec_id
            )
        )
        for code in sorted(set(codes)):
            self.session.add(RecommendationDistrict(recommendation_id=rec_id, district_code=code))

    def set_incidents(self, rec_id: uuid.UUID, incident_ids: Iterable[uuid.UUID]) -> None:
        self.session.execute(
            delete(RecommendationIncident).where(
                RecommendationIncident.recommendation_id == rec_id
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
        return set(self.session.scalars(select(Incident.id).where(Incident.id.in_(wanted))))

    def by_title(self, title: str) -> Recommendation | None:
        return self.session.scalars(
            select(Recommendation).where(Recommendation.title == title)
        ).first()

    # --- timeline ------------------------------------------------------------------------------

    def events_page(
        self, rec_id: uuid.UUID, params: PageParams
    ) -> tuple[list[RecommendationEvent], str | None]:
        stmt = keyset(
            select(RecommendationEvent).where(RecommendationEvent.recommendation_id == rec_id),
            [RecommendationEvent.seq],
            params,
        )
        return page_slice(self.session.scalars(stmt).all(), params.limit, lambda e: [e.seq])

    def next_event_seq(self, rec_id: uuid.UUID) -> int:
        """The next timeline number (autoflush makes events added in this unit of work count)."""
        current = self.session.scalar(
            select(func.max(RecommendationEvent.seq)).where(
                RecommendationEvent.recommendation_id == rec_id
            )
        )
        return int(current or 0) + 1

    # --- report --------------------------------------------------------------------------------

    def report_rows(self, today: date) -> list[Any]:
        """Every recommendation with its addressee's name, overdue flag and evidence count."""
        evidence = (
            select(
                RecommendationIncident.recommendation_id.label("rec_id"),
                func.count().label("n"),
            )
            .group_by(RecommendationIncident.recommendation_id)
            .subquery()
        )
        overdue = overdue_clause(today)
        stmt = (
            select(
                Recommendation.id,
                Recommendation.reference,
                Recommendation.title,
                Recommendation.category,
                Recommendation.addressee,
                Organisation.name.label("addressee_name"),
                Recommendation.status,
                Recommendation.progress,
                Recommendation.due_on,
                overdue.label("overdue"),
                func.coalesce(evidence.c.n, 0).label("evidence_count"),
            )
            .join(Organisation, Organisation.id == Recommendation.addressee)
            .outerjoin(evidence, evidence.c.rec_id == Recommendation.id)
            .order_by(Recommendation.reference)
        )
        return list(self.session.execute(stmt))

    def status_by_addressee(self, today: date) -> list[Any]:
        """``(addressee, name, status, count, overdue, progress_sum)`` rows — GROUP BY in SQL."""
        overdue_int = func.sum(case((overdue_clause(today), 1), else_=0))
        stmt = (
            select(
                Recommendation.addressee,
                Organisation.name,
                Recommendation.status,
                func.count().label("n"),
                overdue_int.label("overdue"),
                func.sum(Recommendation.progress).label("progress_sum"),
            )
            .join(Organisation, Organisation.id == Recommendation.addressee)
            .group_by(Recommendation.addressee, Organisation.name, Recommendation.status)
            .order_by(Organisation.name, Recommendation.addressee)
        )
        return list(self.session.execute(stmt))

    def for_district(self, code: str, today: date) -> list[Any]:
        """The recommendations concerning one district (reference, title, status, overdue)."""
        stmt = (
            select(
                Recommendation.id,
                Recommendation.reference,
                Recommendation.title,
                Recommendation.status,
                Recommendation.progress,
                Recommendation.due_on,
                overdue_clause(today).label("overdue"),
            )
            .join(
                RecommendationDistrict,
                RecommendationDistrict.recommendation_id == Recommendation.id,
            )
            .where(RecommendationDistrict.district_code == code)
            .order_by(Recommendation.reference)
        )
        return list(self.session.execute(stmt))


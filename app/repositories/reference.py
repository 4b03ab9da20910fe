"""Queries for districts, competences and organisations."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable

from sqlalchemy import delete, or_, select
from sqlmodel import col

from app.core.pagination import PageParams, keyset, page_slice
from app.models.reference import Competence, District, DistrictNeighbour, Organisation
from app.repositories.base import Repository


class DistrictRepository(Repository[District]):
    model = District

    def page(
        self, params: PageParams, city: str | None = None
    ) -> tuple[list[District], str | None]:
        stmt = select(District)
        if city:
            stmt = stmt.where(col(District.city) == city)
        rows = self.session.scalars(keyset(stmt, [col(District.code)], params)).all()
        return page_slice(rows, params.limit, lambda d: [d.code])

    def existing_codes(self, codes: Iterable[str]) -> set[str]:
        wanted = set(codes)
        if not wanted:
            return set()
        return set(
            self.session.scalars(select(col(District.code)).where(col(District.code).in_(wanted)))
        )

    def neighbours_of(self, codes: Iterable[str]) -> dict[str, list[str]]:
        wanted = list(set(codes))
        result: dict[str, list[str]] = defaultdict(list)
        if not wanted:
            return result
        rows = self.session.execute(
            select(col(DistrictNeighbour.district_code), col(DistrictNeighbour.neighbour_code))
            .where(col(DistrictNeighbour.district_code).in_(wanted))
            .order_by(col(DistrictNeighbour.neighbour_code))
        )
        for code, neighbour in rows:
            result[code].append(neighbour)
        return result

    def set_neighbours(self, code: str, neighbours: Iterable[str]) -> None:
        """Replace ``code``'s neighbours, keeping the relation symmetric."""
        self.session.execute(
            delete(DistrictNeighbour).where(
                or_(
                    col(DistrictNeighbour.district_code) == code,
                    col(DistrictNeighbour.neighbour_code) == code,
                )
            )
        )
        for other in sorted(set(neighbours) - {code}):
            self.session.add(DistrictNeighbour(district_code=code, neighbour_code=other))
            self.session.add(DistrictNeighbour(district_code=other, neighbour_code=code))
        self.session.flush()


class CompetenceRepository(Repository[Competence]):
    model = Competence

    def page(self, params: PageParams) -> tuple[list[Competence], str | None]:
        rows = self.session.scalars(
            keyset(select(Competence), [col(Competence.code)], params)
        ).all()
        return page_slice(rows, params.limit, lambda c: [c.code])

    def existing_codes(self, codes: Iterable[str]) -> set[str]:
        wanted = set(codes)
        if not wanted:
            return set()
        return set(
            self.session.scalars(
                select(col(Competence.code)).where(col(Competence.code).in_(wanted))
            )
        )


class OrganisationRepository(Repository[Organisation]):
    model = Organisation

    def page(self, params: PageParams) -> tuple[list[Organisation], str | None]:
        stmt = keyset(
            select(Organisation), [col(Organisation.created_at), col(Organisation.id)], params
        )
        rows = self.session.scalars(stmt).all()
        return page_slice(rows, params.limit, lambda o: [o.created_at, o.id])

    def exists(self, organisation_id: uuid.UUID) -> bool:
        return self.session.get(Organisation, organisation_id) is not None

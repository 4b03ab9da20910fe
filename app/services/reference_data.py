"""Reference data rules: districts with symmetric neighbours, competences, organisations."""

from __future__ import annotations

import uuid

from sqlmodel import Session

from app.core.errors import Conflict, NotFound, Unprocessable
from app.core.pagination import PageParams
from app.core.problems import ProblemType
from app.core.security import Principal
from app.models.reference import (
    Competence,
    CompetenceCreate,
    CompetencePublic,
    CompetenceUpdate,
    District,
    DistrictCreate,
    DistrictPublic,
    DistrictUpdate,
    Organisation,
    OrganisationCreate,
    OrganisationPublic,
    OrganisationUpdate,
)
from app.repositories.reference import (
    CompetenceRepository,
    DistrictRepository,
    OrganisationRepository,
)
from app.services import audit
from app.services.versioning import apply_changes, bump, check_if_match


def _unknown(field: str, codes: set[str], what: str) -> Unprocessable:
    return Unprocessable(
        f"Unknown {what}: {', '.join(sorted(codes))}.",
        errors=[{"loc": ["body", field], "msg": f"unknown {what}", "type": "unknown_reference"}],
    )


class DistrictService:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.repo = DistrictRepository(session)

    def public(self, district: District, neighbours: list[str] | None = None) -> DistrictPublic:
        if neighbours is None:
            neighbours = self.repo.neighbours_of([district.code]).get(district.code, [])
        return DistrictPublic.model_validate({**district.model_dump(), "neighbours": neighbours})

    def page(self, params: PageParams, city: str | None) -> tuple[list[DistrictPublic], str | None]:
        rows, cursor = self.repo.page(params, city)
        neighbours = self.repo.neighbours_of(d.code for d in rows)
        return [self.public(d, neighbours.get(d.code, [])) for d in rows], cursor

    def get(self, code: str) -> District:
        district = self.repo.get(code)
        if district is None:
            raise NotFound(f"No district '{code}'.")
        return district

    def _check_neighbours(self, code: str, neighbours: list[str]) -> None:
        wanted = set(neighbours) - {code}
        missing = wanted - self.repo.existing_codes(wanted)
        if missing:
            raise _unknown("neighbours", missing, "district(s)")

    def create(self, body: DistrictCreate, principal: Principal) -> DistrictPublic:
        if self.repo.get(body.code) is not None:
            raise Conflict(f"District '{body.code}' exists already.", type_=ProblemType.DUPLICATE)
        self._check_neighbours(body.code, body.neighbours)
        district = District(
            code=body.code,
            name=body.name,
            city=body.city,
            area=body.area,
            boundary=body.boundary.model_dump() if body.boundary else None,
        )
        self.repo.add(district)
        self.session.flush()
        self.repo.set_neighbours(body.code, body.neighbours)
        audit.record(
            self.session, principal, "create", "district", body.code, body.model_fields_set
        )
        return self.public(district)

    def update(
        self, code: str, body: DistrictUpdate, principal: Principal, if_match: int | None
    ) -> DistrictPublic:
        district = self.get(code)
        check_if_match(district, if_match)
        for name in ("name", "city"):
            if name in body.model_fields_set and getattr(body, name) is None:
                raise Unprocessable(
                    f"{name} cannot be null.",
                    errors=[{"loc": ["body", name], "msg": "may not be null", "type": "none"}],
                )
        changes = body.model_dump(exclude_unset=True, exclude={"neighbours", "boundary"})
        changed = apply_changes(district, changes)
        if "boundary" in body.model_fields_set:
            value = body.boundary.model_dump() if body.boundary else None
            changed += apply_changes(district, {"boundary": value})
        if body.neighbours is not None:
            self._check_neighbours(code, body.neighbours)
            current = self.repo.neighbours_of([code]).get(code, [])
            if set(current) != set(body.neighbours) - {code}:
                self.repo.set_neighbours(code, body.neighbours)
                changed.append("neighbours")
        if changed:
            bump(self.session, district)
            audit.record(self.session, principal, "update", "district", code, changed)
        self.session.flush()
        return self.public(district)


class CompetenceService:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.repo = CompetenceRepository(session)

    def get(self, code: str) -> Competence:
        competence = self.repo.get(code)
        if competence is None:
            raise NotFound(f"No competence '{code}'.")
        return competence

    def create(self, body: CompetenceCreate, principal: Principal) -> CompetencePublic:
        if self.repo.get(body.code) is not None:
            raise Conflict(f"Competence '{body.code}' exists already.", type_=ProblemType.DUPLICATE)
        competence = self.repo.add(Competence(**body.model_dump()))
        self.session.flush()
        audit.record(
            self.session, principal, "create", "competence", body.code, body.model_fields_set
        )
        return CompetencePublic.model_validate(competence)

    def update(
        self, code: str, body: CompetenceUpdate, principal: Principal, if_match: int | None
    ) -> CompetencePublic:
        competence = self.get(code)
        check_if_match(competence, if_match)
        changes = body.model_dump(exclude_unset=True)
        if "description" in changes and changes["description"] is None:
            changes["description"] = ""
        changed = apply_changes(competence, changes)
        if changed:
            bump(self.session, competence)
            audit.record(self.session, principal, "update", "competence", code, changed)
        self.session.flush()
        return CompetencePublic.model_validate(competence)


class OrganisationService:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.repo = OrganisationRepository(session)

    def get(self, organisation_id: uuid.UUID) -> Organisation:
        organisation = self.repo.get(organisation_id)
        if organisation is None:
            raise NotFound(f"No organisation {organisation_id}.")
        return organisation

    def create(self, body: OrganisationCreate, principal: Principal) -> OrganisationPublic:
        organisation = self.repo.add(Organisation(name=body.name, kind=body.kind))
        self.session.flush()
        audit.record(
            self.session,
            principal,
            "create",
            "organisation",
            organisation.id,
            body.model_fields_set,
        )
        return OrganisationPublic.model_validate(organisation)

    def update(
        self,
        organisation_id: uuid.UUID,
        body: OrganisationUpdate,
        principal: Principal,
        if_match: int | None,
    ) -> OrganisationPublic:
        organisation = self.get(organisation_id)
        check_if_match(organisation, if_match)
        changed = apply_changes(organisation, body.model_dump(exclude_unset=True))
        if changed:
            bump(self.session, organisation)
            audit.record(
                self.session, principal, "update", "organisation", organisation_id, changed
            )
        self.session.flush()
        return OrganisationPublic.model_validate(organisation)

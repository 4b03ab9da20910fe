"""Helpers that create records directly (services, real commits), with overrides."""

from __future__ import annotations

import uuid
from typing import Any

from app.core.db import session_scope
from app.core.security import SYSTEM_PRINCIPAL
from app.models.incident import IncidentCreate, IncidentPublic
from app.models.reference import (
    Competence,
    District,
    Organisation,
)
from app.models.system import ApiKeyCreate, Role
from app.repositories.reference import DistrictRepository
from app.services.api_keys import ApiKeyService
from app.services.incidents import IncidentService

#: A small map: a — b — c in a row, d on its own.
DISTRICTS = {"alpha": ["beta"], "beta": ["alpha", "gamma"], "gamma": ["beta"], "delta": []}
COMPETENCES = ["mediation", "anti_discrimination", "youth_work", "right_wing_extremism"]


def seed_reference() -> None:
    with session_scope() as session:
        for code in DISTRICTS:
            session.add(District(code=code, name=code.title(), city="Teststadt"))
        for code in COMPETENCES:
            session.add(Competence(code=code, name=code.replace("_", " ").title()))
        session.flush()
        repo = DistrictRepository(session)
        for code, neighbours in DISTRICTS.items():
            repo.set_neighbours(code, neighbours)


def make_organisation(name: str = "NGO", kind: str = "ngo") -> uuid.UUID:
    with session_scope() as session:
        organisation = Organisation(name=name, kind=kind)
        session.add(organisation)
        session.flush()
        return organisation.id


def make_key(
    role: Role | str,
    *,
    organisation_id: uuid.UUID | None = None,
    manager_id: uuid.UUID | None = None,
) -> dict[str, str]:
    """Create an API key and return the ``Authorization`` header for it."""
    with session_scope() as session:
        created = ApiKeyService(session).create(
            ApiKeyCreate(
                name=f"test {role}",
                role=Role(role),
                organisation_id=organisation_id,
                manager_id=manager_id,
            ),
            SYSTEM_PRINCIPAL,
        )
    return {"Authorization": f"Bearer {created.key}"}


def incident_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "title": "Stickers at the youth club",
        "description": "Far-right stickers and a threat written on the door.",
        "district": "alpha",
        "category": "right_wing_extremism",
        "escalation_level": 3,
        "required_competences": ["mediation"],
        "languages": ["de"],
        "reporter": {"name": "Erika Muster", "contact": "erika@example.org", "anonymous": False},
    }
    body.update(overrides)
    return body


def make_incident(**overrides: Any) -> IncidentPublic:
    with session_scope() as session:
        return IncidentService(session).create(
            IncidentCreate(**incident_body(**overrides)), SYSTEM_PRINCIPAL
        )


def make_manager(**overrides: Any) -> uuid.UUID:
    """An active manager in ``alpha`` (written directly; capacity counter starts at 0)."""
    from app.models.manager import Manager, ManagerStatus

    fields: dict[str, Any] = {
        "display_name": "Test Manager",
        "email": f"manager-{uuid.uuid4().hex[:8]}@example.org",
        "phone": "+49 361 000000",
        "status": ManagerStatus.active,
        "home_district": "alpha",
        "languages": ["de"],
        "max_open_assignments": 2,
    }
    fields.update(overrides)
    with session_scope() as session:
        manager = Manager(**fields)
        session.add(manager)
        session.flush()
        return manager.id


def make_assignment(
    incident_id: uuid.UUID,
    manager_id: uuid.UUID,
    *,
    role: str = "lead",
    status: str = "offered",
) -> uuid.UUID:
    """An assignment row; an open one (offered/accepted) takes a slot via ``reserve_slot``."""
    from datetime import timedelta

    from app.core.clock import get_clock
    from app.models.assignment import OPEN_ASSIGNMENT_STATUSES, Assignment, AssignmentStatus
    from app.services.dispatch.slots import reserve_slot

    now = get_clock().now()
    with session_scope() as session:
        if AssignmentStatus(status) in OPEN_ASSIGNMENT_STATUSES and not reserve_slot(
            session, manager_id, now
        ):
            raise AssertionError(f"manager {manager_id} is at capacity")
        assignment = Assignment(
            incident_id=incident_id,
            manager_id=manager_id,
            role=role,
            status=status,
            offered_at=now,
            responded_at=now if status != AssignmentStatus.offered else None,
            expires_at=now + timedelta(hours=48),
        )
        session.add(assignment)
        session.flush()
        return assignment.id


def manager_body(**overrides: Any) -> dict[str, Any]:
    """A valid ``POST /managers`` body (unique e-mail), with overrides."""
    body: dict[str, Any] = {
        "display_name": "Mara Beispiel",
        "email": f"mara-{uuid.uuid4().hex[:8]}@example.org",
        "phone": "+49 361 555 0101",
        "home_district": "alpha",
        "districts": ["beta"],
        "languages": ["de", "en"],
        "competences": [{"code": "mediation", "certified_on": "2025-01-01", "expires_on": None}],
    }
    body.update(overrides)
    return body


def make_roster_manager(**overrides: Any) -> Any:
    """A manager created through the managers service (validation, districts, competences);
    returns its ``ManagerPublic``."""
    from app.models.manager_schemas import ManagerCreate
    from app.services.managers import ManagerService

    with session_scope() as session:
        return ManagerService(session).create(
            ManagerCreate(**manager_body(**overrides)), SYSTEM_PRINCIPAL
        )


def make_absence(
    manager_id: uuid.UUID, starts_on: Any, ends_on: Any, reason: str | None = None
) -> uuid.UUID:
    from app.models.manager_schemas import AbsenceCreate
    from app.services.managers import ManagerService

    with session_scope() as session:
        return (
            ManagerService(session)
            .add_absence(
                manager_id,
                AbsenceCreate(starts_on=starts_on, ends_on=ends_on, reason=reason),
                SYSTEM_PRINCIPAL,
            )
            .id
        )


def table_counts() -> dict[str, int]:
    """Rows per table — compare before/after to show a refused request changed nothing."""
    from sqlalchemy import func, select

    from app.models.base import metadata

    with session_scope(write=False) as session:
        return {
            table.name: session.scalar(select(func.count()).select_from(table)) or 0
            for table in metadata.sorted_tables
        }


def make_dispatch_manager(
    *,
    competences: Any = ("mediation",),
    districts: Any = (),
    absences: Any = (),
    **fields: Any,
) -> uuid.UUID:
    """A manager written directly with competences (codes, or ``(code, certified_on,
    expires_on)``), served districts and absences (``(starts_on, ends_on)``) — for dispatch."""
    from datetime import date

    from app.models.manager import Absence, ManagerCompetence, ManagerDistrict

    manager_id = make_manager(**fields)
    with session_scope() as session:
        for entry in competences:
            code, certified_on, expires_on = (
                (entry, date(2025, 1, 1), None) if isinstance(entry, str) else entry
            )
            session.add(
                ManagerCompetence(
                    manager_id=manager_id,
                    competence_code=code,
                    certified_on=certified_on,
                    expires_on=expires_on,
                )
            )
        for code in districts:
            session.add(ManagerDistrict(manager_id=manager_id, district_code=code))
        for starts_on, ends_on in absences:
            session.add(Absence(manager_id=manager_id, starts_on=starts_on, ends_on=ends_on))
    return manager_id


def make_triaged_incident(**overrides: Any) -> uuid.UUID:
    """An incident moved to ``triaged`` (ready for dispatch)."""
    from app.models.incident import IncidentStatus

    incident = make_incident(**overrides)
    with session_scope() as session:
        IncidentService(session).set_status(
            incident.id, IncidentStatus.triaged, None, SYSTEM_PRINCIPAL
        )
    return incident.id


def recommendation_body(
    issued_by: uuid.UUID, addressee: uuid.UUID, /, **overrides: Any
) -> dict[str, Any]:
    """A valid ``POST /recommendations`` body (as JSON), with overrides."""
    body: dict[str, Any] = {
        "title": "Deployment concept for the conflict managers",
        "body": "## Why\nThe managers need a *written* deployment concept.",
        "category": "deployment_concept",
        "issued_by": str(issued_by),
        "addressee": str(addressee),
        "due_on": "2026-09-30",
        "districts": ["alpha"],
        "incident_ids": [],
    }
    body.update(overrides)
    return body


def make_recommendation(
    issued_by: uuid.UUID, addressee: uuid.UUID, /, *, statuses: Any = (), **overrides: Any
) -> uuid.UUID:
    """A recommendation created through the service and moved through ``statuses`` in order."""
    from app.models.recommendation import RecommendationCreate
    from app.services.recommendations import RecommendationService

    with session_scope() as session:
        service = RecommendationService(session)
        rec = service.create(
            RecommendationCreate(**recommendation_body(issued_by, addressee, **overrides)),
            SYSTEM_PRINCIPAL,
        )
        for status in statuses:
            service.set_status(rec.id, status, None, SYSTEM_PRINCIPAL)
        return rec.id

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

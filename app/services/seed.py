"""Demo data for Erfurt's model project (districts Südost and Ilversgehofen). Idempotent.

All 53 districts with their checked neighbour relations come from ``app/data/erfurt-districts.json``
(the project's reference data); everything else is invented for demonstration.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from app.core.clock import get_clock
from app.core.db import session_scope
from app.core.security import SYSTEM_PRINCIPAL
from app.models.incident import IncidentCreate, IncidentSource, Reporter
from app.models.reference import Competence, District, Organisation, OrganisationKind
from app.repositories.incidents import IncidentRepository
from app.repositories.reference import DistrictRepository
from app.services.incidents import IncidentService

DATA = Path(__file__).resolve().parents[1] / "data" / "erfurt-districts.json"

COMPETENCES = [
    ("mediation", "Mediation", "Structured mediation between parties in conflict."),
    ("anti_discrimination", "Anti-discrimination", "Counselling and intervention on discrimination."),
    ("right_wing_extremism", "Right-wing extremism", "Recognising and countering far-right activity."),
    ("youth_work", "Youth work", "Working with young people in conflicts in public space."),
    ("conflict_analysis", "Conflict analysis", "Glasl-based analysis of escalation and actors."),
    ("victim_support", "Victim support", "Accompanying people affected by threats or violence."),
]

ORGANISATIONS = [
    ("Lenkungsgruppe Kommunales Konfliktmanagement", OrganisationKind.steering_group),
    ("Stadtverwaltung Erfurt – Amt für Soziales", OrganisationKind.city_department),
    ("Demokratie-Netzwerk Erfurt e.V.", OrganisationKind.ngo),
    ("Nachbarschaftshilfe Südost e.V.", OrganisationKind.ngo),
]

INCIDENTS: list[dict[str, Any]] = [
    {
        "external_id": "demo-001",
        "title": "Far-right stickers and threats at the Herrenberg youth club",
        "district": "herrenberg",
        "category": "right_wing_extremism",
        "escalation_level": 4,
        "required_competences": ["right_wing_extremism", "youth_work"],
        "languages": ["de"],
        "location": {"lat": 50.9431, "lon": 11.0602},
        "reporter": {"name": "Demo Reporter", "contact": "reporter@example.org"},
        "days_ago": 3,
    },
    {
        "external_id": "demo-002",
        "title": "Noise and rubbish dispute between neighbours in Wiesenhügel",
        "district": "wiesenhuegel",
        "category": "neighbourhood_dispute",
        "escalation_level": 2,
        "required_competences": ["mediation"],
        "languages": ["de", "ru"],
        "days_ago": 10,
    },
    {
        "external_id": "demo-003",
        "title": "Racist insults against a family at the Ilversgehofen tram stop",
        "district": "ilversgehofen",
        "category": "racism_discrimination",
        "escalation_level": 5,
        "required_competences": ["anti_discrimination"],
        "languages": ["de", "ar"],
        "reporter": {"anonymous": True},
        "days_ago": 1,
    },
    {
        "external_id": "demo-004",
        "title": "Youth groups clash over the Melchendorf skate park",
        "district": "melchendorf",
        "category": "youth_conflict",
        "escalation_level": 3,
        "required_competences": ["youth_work"],
        "languages": ["de"],
        "days_ago": 20,
    },
    {
        "external_id": "demo-005",
        "title": "Hate posts targeting a local welcome initiative",
        "district": "ilversgehofen",
        "category": "threat_to_civil_society",
        "escalation_level": 6,
        "required_competences": ["victim_support", "right_wing_extremism"],
        "languages": ["de"],
        "days_ago": 5,
    },
]


def seed_demo_data() -> dict[str, int]:
    with session_scope() as session:
        summary = {
            "districts": _seed_districts(session),
            "competences": _seed_competences(session),
            "organisations": _seed_organisations(session),
        }
        session.flush()
        summary["incidents"] = _seed_incidents(session)
    return summary


def _seed_districts(session: Session) -> int:
    rows = json.loads(DATA.read_text(encoding="utf-8"))
    repo = DistrictRepository(session)
    created = 0
    for row in rows:
        if session.get(District, row["code"]) is None:
            session.add(
                District(code=row["code"], name=row["name"], city=row["city"], area=row["area"])
            )
            created += 1
    session.flush()
    for row in rows:
        current = repo.neighbours_of([row["code"]]).get(row["code"], [])
        if set(current) != set(row["neighbours"]):
            repo.set_neighbours(row["code"], row["neighbours"])
    return created


def _seed_competences(session: Session) -> int:
    created = 0
    for code, name, description in COMPETENCES:
        if session.get(Competence, code) is None:
            session.add(Competence(code=code, name=name, description=description))
            created += 1
    return created


def demo_organisations(session: Session) -> dict[str, Organisation]:
    names = [name for name, _ in ORGANISATIONS]
    rows = session.scalars(select(Organisation).where(Organisation.name.in_(names))).all()
    return {o.name: o for o in rows}


def _seed_organisations(session: Session) -> int:
    existing = demo_organisations(session)
    created = 0
    for name, kind in ORGANISATIONS:
        if name not in existing:
            session.add(Organisation(name=name, kind=kind))
            created += 1
    return created


def _seed_incidents(session: Session) -> int:
    repo = IncidentRepository(session)
    service = IncidentService(session)
    ngo = demo_organisations(session)["Demokratie-Netzwerk Erfurt e.V."]
    now = get_clock().now()
    created = 0
    for spec in INCIDENTS:
        if repo.by_external_id(IncidentSource.import_, spec["external_id"]) is not None:
            continue
        fields = {k: v for k, v in spec.items() if k not in ("days_ago", "reporter")}
        body = IncidentCreate(
            **fields,
            source=IncidentSource.import_,
            organisation_id=ngo.id if spec["category"] != "neighbourhood_dispute" else None,
            reported_at=now - timedelta(days=spec["days_ago"]),
            reporter=Reporter(**spec["reporter"]) if "reporter" in spec else None,
        )
        service.create(body, SYSTEM_PRINCIPAL)
        created += 1
    return created

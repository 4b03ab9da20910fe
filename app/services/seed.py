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
from sqlmodel import Session, col

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
    (
        "anti_discrimination",
        "Anti-discrimination",
        "Counselling and intervention on discrimination.",
    ),
    (
        "right_wing_extremism",
        "Right-wing extremism",
        "Recognising and countering far-right activity.",
    ),
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
        summary["recommendations"] = _seed_recommendations(session)
        summary["managers"] = _seed_managers(session)
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
    rows = session.scalars(select(Organisation).where(col(Organisation.name).in_(names))).all()
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


#: The demo roster (invented people). Dates are relative to today so the demo always shows
#: expiring competences (``expires_in`` days; negative = already expired) and current absences
#: (``absent`` = (first, last) day offsets from today).
MANAGERS: list[dict[str, Any]] = [
    {
        "display_name": "Anja Reinhold",
        "email": "anja.reinhold@demo.kokoma.example",
        "home_district": "herrenberg",
        "districts": ["melchendorf", "wiesenhuegel"],
        "languages": ["de", "en"],
        "status": "active",
        "organisation": "Nachbarschaftshilfe Südost e.V.",
        "competences": [
            ("mediation", 900, None),
            ("youth_work", 700, 20),
            ("conflict_analysis", 400, 500),
        ],
        "max_open_assignments": 3,
    },
    {
        "display_name": "Yusuf Demir",
        "email": "yusuf.demir@demo.kokoma.example",
        "home_district": "melchendorf",
        "districts": ["herrenberg"],
        "languages": ["de", "tr", "en"],
        "status": "active",
        "competences": [("mediation", 600, 45), ("anti_discrimination", 300, None)],
    },
    {
        "display_name": "Olena Kovalenko",
        "email": "olena.kovalenko@demo.kokoma.example",
        "home_district": "wiesenhuegel",
        "districts": ["melchendorf"],
        "languages": ["uk", "ru", "de"],
        "status": "active",
        "competences": [("mediation", 200, 800), ("victim_support", 150, None)],
        "absent": (-3, 4),
    },
    {
        "display_name": "Thomas Brückner",
        "email": "thomas.brueckner@demo.kokoma.example",
        "home_district": "herrenberg",
        "districts": [],
        "languages": ["de"],
        "status": "active",
        "competences": [
            ("right_wing_extremism", 1000, 10),
            ("conflict_analysis", 1000, None),
            ("youth_work", 800, -5),
        ],
    },
    {
        "display_name": "Samira Haddad",
        "email": "samira.haddad@demo.kokoma.example",
        "home_district": "ilversgehofen",
        "districts": ["johannesplatz", "rieth"],
        "languages": ["ar", "de", "en"],
        "status": "active",
        "organisation": "Demokratie-Netzwerk Erfurt e.V.",
        "competences": [
            ("anti_discrimination", 500, None),
            ("mediation", 450, 30),
            ("victim_support", 100, 700),
        ],
        "max_open_assignments": 3,
    },
    {
        "display_name": "Jonas Wendt",
        "email": "jonas.wendt@demo.kokoma.example",
        "home_district": "ilversgehofen",
        "districts": ["gispersleben"],
        "languages": ["de", "en"],
        "status": "active",
        "competences": [("youth_work", 300, None), ("mediation", 300, None)],
        "absent": (0, 0),
    },
    {
        "display_name": "Irina Sokolova",
        "email": "irina.sokolova@demo.kokoma.example",
        "home_district": "rieth",
        "districts": ["ilversgehofen", "johannesplatz"],
        "languages": ["ru", "de"],
        "status": "active",
        "competences": [("mediation", 1200, 400), ("conflict_analysis", 60, None)],
    },
    {
        "display_name": "Karim Nasser",
        "email": "karim.nasser@demo.kokoma.example",
        "home_district": "johannesplatz",
        "districts": ["ilversgehofen"],
        "languages": ["ar", "de"],
        "status": "in_training",
        "competences": [("anti_discrimination", 20, None)],
    },
    {
        "display_name": "Petra Lindner",
        "email": "petra.lindner@demo.kokoma.example",
        "home_district": "melchendorf",
        "districts": ["wiesenhuegel", "herrenberg"],
        "languages": ["de"],
        "status": "paused",
        "competences": [("victim_support", 900, 55), ("mediation", 900, None)],
    },
    {
        "display_name": "Lukas Hoffmann",
        "email": "lukas.hoffmann@demo.kokoma.example",
        "home_district": "andreasvorstadt",
        "districts": ["ilversgehofen"],
        "languages": ["de", "en", "fr"],
        "status": "active",
        "competences": [("right_wing_extremism", 350, None), ("youth_work", 350, 15)],
        "absent": (5, 12),
    },
    {
        "display_name": "Mariam Ahmadi",
        "email": "mariam.ahmadi@demo.kokoma.example",
        "home_district": "wiesenhuegel",
        "districts": [],
        "languages": ["fa", "de", "en"],
        "status": "in_training",
        "competences": [],
    },
    {
        "display_name": "Günter Albrecht",
        "email": "guenter.albrecht@demo.kokoma.example",
        "home_district": "herrenberg",
        "districts": ["melchendorf"],
        "languages": ["de"],
        "status": "retired",
        "competences": [("mediation", 3000, -200)],
    },
]


def _seed_managers(session: Session) -> int:
    """About a dozen managers across the pilot districts; idempotent by e-mail."""
    from app.models.manager_schemas import (
        AbsenceCreate,
        CompetenceHoldingIn,
        InitialManagerStatus,
        ManagerCreate,
    )
    from app.repositories.managers import ManagerRepository
    from app.services.managers import ManagerService

    repo = ManagerRepository(session)
    service = ManagerService(session)
    organisations = demo_organisations(session)
    today = get_clock().today()
    created = 0
    for spec in MANAGERS:
        if repo.by_email(spec["email"]) is not None:
            continue
        organisation = organisations.get(spec.get("organisation", ""))
        body = ManagerCreate(
            display_name=spec["display_name"],
            email=spec["email"],
            home_district=spec["home_district"],
            districts=spec["districts"],
            languages=spec["languages"],
            status=InitialManagerStatus.in_training
            if spec["status"] == "in_training"
            else InitialManagerStatus.active,
            organisation_id=organisation.id if organisation else None,
            max_open_assignments=spec.get("max_open_assignments", 2),
            competences=[
                CompetenceHoldingIn(
                    code=code,
                    certified_on=today - timedelta(days=certified_ago),
                    expires_on=today + timedelta(days=expires_in)
                    if expires_in is not None
                    else None,
                )
                for code, certified_ago, expires_in in spec["competences"]
            ],
        )
        manager = service.create(body, SYSTEM_PRINCIPAL)
        if spec["status"] in ("paused", "retired"):
            service.set_status(manager.id, spec["status"], None, SYSTEM_PRINCIPAL)
        if "absent" in spec:
            first, last = spec["absent"]
            service.add_absence(
                manager.id,
                AbsenceCreate(
                    starts_on=today + timedelta(days=first),
                    ends_on=today + timedelta(days=last),
                    reason="Urlaub",
                ),
                SYSTEM_PRINCIPAL,
            )
        created += 1
    return created


#: The steering group's three demo recommendations to the city department: ``days_due`` relative to
#: today (negative = overdue), evidence by the demo incidents' ``external_id``, and the statuses
#: they are moved through.
RECOMMENDATIONS: list[dict[str, Any]] = [
    {
        "title": "Deployment concept (Einsatzkonzept) for the conflict managers",
        "category": "deployment_concept",
        "body": (
            "## Recommendation\n"
            "The city adopts a written deployment concept for the volunteer conflict managers: "
            "who is called when, tandem work from Glasl stage 4, hand-over to professionals "
            "above stage 6, and a coordinator on call.\n\n"
            "## Evidence\nThe pilot districts in Südost saw conflicts that waited for a manager."
        ),
        "districts": ["herrenberg", "wiesenhuegel", "melchendorf"],
        "evidence": ["demo-001", "demo-002", "demo-004"],
        "statuses": ["submitted", "accepted", "in_implementation"],
        "progress": 40,
        "days_due": -14,
    },
    {
        "title": "Competence building: anti-discrimination and prevention training",
        "category": "competence_building",
        "body": (
            "## Recommendation\n"
            "Fund certified anti-discrimination and prevention training for every active "
            "manager, with refreshers before certificates expire.\n\n"
            "## Evidence\nRacist incidents in Ilversgehofen needed competences few managers hold."
        ),
        "districts": ["ilversgehofen", "herrenberg"],
        "evidence": ["demo-003", "demo-001"],
        "statuses": ["submitted", "accepted"],
        "progress": 10,
        "days_due": 120,
    },
    {
        "title": "Protection of civil-society actors against threats and hate campaigns",
        "category": "protection_of_civil_society",
        "body": (
            "## Recommendation\n"
            "Set up a fast protection and counselling path for initiatives and volunteers "
            "targeted by threats or hate campaigns, with a contact person in the administration."
            "\n\n## Evidence\nHate posts against a welcome initiative in Ilversgehofen."
        ),
        "districts": ["ilversgehofen"],
        "evidence": ["demo-005", "demo-003"],
        "statuses": ["submitted"],
        "progress": 0,
        "days_due": 60,
    },
]


def _seed_recommendations(session: Session) -> int:
    """The steering group's three recommendations to the city department; idempotent by title."""
    from app.models.recommendation import RecommendationCreate
    from app.repositories.recommendations import RecommendationRepository
    from app.services.recommendations import RecommendationService

    organisations = demo_organisations(session)
    steering = organisations["Lenkungsgruppe Kommunales Konfliktmanagement"]
    city = organisations["Stadtverwaltung Erfurt – Amt für Soziales"]
    incidents = IncidentRepository(session)
    repo = RecommendationRepository(session)
    service = RecommendationService(session)
    today = get_clock().today()
    created = 0
    for spec in RECOMMENDATIONS:
        if repo.by_title(spec["title"]) is not None:
            continue
        evidence = [
            incident.id
            for external_id in spec["evidence"]
            if (incident := incidents.by_external_id(IncidentSource.import_, external_id))
        ]
        rec = service.create(
            RecommendationCreate(
                title=spec["title"],
                body=spec["body"],
                category=spec["category"],
                issued_by=steering.id,
                addressee=city.id,
                due_on=today + timedelta(days=spec["days_due"]),
                progress=spec["progress"],
                districts=spec["districts"],
                incident_ids=evidence,
            ),
            SYSTEM_PRINCIPAL,
        )
        for status in spec["statuses"]:
            service.set_status(rec.id, status, None, SYSTEM_PRINCIPAL)
        created += 1
    return created

"""Subject access (GDPR Art. 15): every record holding an e-mail address."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlmodel import Session, col

from app.core.clock import get_clock
from app.core.errors import Unprocessable
from app.core.security import Principal
from app.models.assignment import Assignment
from app.models.incident import Incident, IncidentCategory, IncidentStatus, ReporterPublic
from app.models.manager import Absence, Manager
from app.models.manager_schemas import AbsencePublic, ManagerPublic
from app.models.privacy_schemas import (
    DataSubjectReport,
    SubjectApiKey,
    SubjectAssignment,
    SubjectIncident,
    SubjectManager,
)
from app.models.system import ApiKey
from app.services.privacy.access_log import (
    log_access,
    log_reporter_access,
    manager_contact_fields,
)
from app.services.privacy.retention import RETENTION_STATUSES, retention_ends_on

#: Places a subject-access search does not look into (stated in its response).
NOT_SEARCHED = [
    "incident.title",
    "incident.description",
    "incident_note.text",
    "incident_event.note",
    "assignment.decline_reason",
    "assignment.withdraw_reason",
    "assignment.outcome",
]


def _normalise_email(email: str) -> str:
    value = email.strip()
    if "@" not in value or len(value) > 320 or any(c.isspace() for c in value):
        raise Unprocessable(
            "email must be an e-mail address.",
            errors=[
                {"loc": ["query", "email"], "msg": "not an e-mail address", "type": "value_error"}
            ],
        )
    return value


def subject_access(session: Session, email: str, principal: Principal) -> DataSubjectReport:
    """Every record holding ``email`` (reporter contact or manager e-mail, case-insensitive).

    The answer is itself personal data: each returned record is logged as an ``access`` entry
    (action ``subject_access``).
    """
    from app.services.managers import ManagerService

    address = _normalise_email(email)
    wanted = address.lower()
    incidents = session.scalars(
        select(Incident)
        .where(func.lower(Incident.reporter_contact) == wanted)
        .order_by(Incident.reference)
    ).all()
    managers = session.scalars(
        select(Manager).where(func.lower(col(Manager.email)) == wanted).order_by(col(Manager.id))
    ).all()

    subject_incidents = [
        SubjectIncident(
            id=i.id,
            reference=i.reference,
            status=IncidentStatus(i.status),
            category=IncidentCategory(i.category),
            district=i.district,
            organisation_id=i.organisation_id,
            reported_at=i.reported_at,
            status_changed_at=i.status_changed_at,
            reporter=ReporterPublic(
                name=i.reporter_name, contact=i.reporter_contact, anonymous=i.reporter_anonymous
            ),
            retention_ends_on=(
                retention_ends_on(i.status_changed_at).isoformat()
                if i.status in RETENTION_STATUSES
                else None
            ),
        )
        for i in incidents
    ]
    subject_managers = []
    views = ManagerService(session).to_views(list(managers), principal) if managers else []
    for manager, view in zip(managers, views, strict=True):
        absences = session.scalars(
            select(Absence)
            .where(col(Absence.manager_id) == manager.id)
            .order_by(col(Absence.starts_on))
        ).all()
        assignments = session.execute(
            select(Assignment, col(Incident.reference))
            .join(Incident, col(Incident.id) == col(Assignment.incident_id))
            .where(col(Assignment.manager_id) == manager.id)
            .order_by(col(Assignment.offered_at), col(Assignment.id))
        ).all()
        keys = session.scalars(
            select(ApiKey)
            .where(col(ApiKey.manager_id) == manager.id)
            .order_by(col(ApiKey.created_at))
        ).all()
        if not isinstance(view, ManagerPublic):  # only administrators ask; they see every field
            raise TypeError("a subject access report needs the manager's full view")
        subject_managers.append(
            SubjectManager(
                manager=view,
                absences=[
                    AbsencePublic(
                        id=a.id, starts_on=a.starts_on, ends_on=a.ends_on, reason=a.reason
                    )
                    for a in absences
                ],
                assignments=[
                    SubjectAssignment(
                        id=a.id,
                        incident_id=a.incident_id,
                        incident_reference=reference,
                        role=a.role,
                        status=a.status,
                        offered_at=a.offered_at,
                        responded_at=a.responded_at,
                        ended_at=a.ended_at,
                    )
                    for a, reference in assignments
                ],
                api_keys=[
                    SubjectApiKey(
                        id=k.id,
                        name=k.name,
                        role=k.role,
                        created_at=k.created_at,
                        revoked_at=k.revoked_at,
                    )
                    for k in keys
                ],
            )
        )
    log_reporter_access(
        session,
        principal,
        [(i.id, i.reporter_name, i.reporter_contact) for i in incidents],
        action="subject_access",
    )
    log_access(
        session,
        principal,
        "manager",
        [(m.id, ["display_name", *manager_contact_fields(m.email, m.phone)]) for m in managers],
        action="subject_access",
    )
    return DataSubjectReport(
        email=address,
        generated_at=get_clock().now(),
        incidents=subject_incidents,
        managers=subject_managers,
        not_searched=NOT_SEARCHED,
    )

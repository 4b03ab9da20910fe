"""Incident rules: creation, scoped reads, edits, the status lifecycle and the timeline."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from functools import partial
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from app.core.clock import get_clock
from app.core.config import get_settings
from app.core.db_errors import is_unique_violation
from app.core.errors import Conflict, Forbidden, NotFound, Unprocessable
from app.core.pagination import PageParams
from app.core.problems import ProblemType
from app.core.security import Principal
from app.models.assignment import AssignmentStatus
from app.models.base import new_id
from app.models.incident import (
    DISPATCH_ONLY_TRANSITIONS,
    INCIDENT_TRANSITIONS,
    Incident,
    IncidentCreate,
    IncidentEvent,
    IncidentEventPublic,
    IncidentNote,
    IncidentNotePublic,
    IncidentPublic,
    IncidentSource,
    IncidentStatus,
    IncidentUpdate,
    NoteCreate,
)
from app.models.system import Role
from app.repositories.incidents import IncidentFilter, IncidentRepository
from app.repositories.reference import (
    CompetenceRepository,
    DistrictRepository,
    OrganisationRepository,
)
from app.services import audit, outbox, visibility
from app.services.dispatch.slots import end_assignment
from app.services.incident_records import (
    created_event_columns,
    new_incident,
    public_incident_fields,
)
from app.services.references import incident_reference
from app.services.timeline import entry_fields
from app.services.versioning import apply_changes, bump, check_if_match

REPORTER_FIELDS = ("reporter_name", "reporter_contact", "reporter_anonymous", "has_reporter")


def record_event(
    session: Session,
    incident: Incident,
    type_: str,
    principal: Principal,
    *,
    from_status: str | None = None,
    to_status: str | None = None,
    note: str | None = None,
    data: dict[str, Any] | None = None,
) -> IncidentEvent:
    """Append one entry to the incident's timeline (every change is one)."""
    event = IncidentEvent(
        incident_id=incident.id,
        **entry_fields(
            type_, principal, from_status=from_status, to_status=to_status, note=note, data=data
        ),
    )
    session.add(event)
    return event


def change_status(
    session: Session,
    incident: Incident,
    to_status: IncidentStatus,
    principal: Principal,
    *,
    note: str | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    """Set a new status (already checked by the caller), stamp it and put it on the timeline."""
    from_status = incident.status
    incident.status = to_status
    incident.status_changed_at = get_clock().now()
    bump(session, incident)
    record_event(
        session,
        incident,
        "status_changed",
        principal,
        from_status=from_status,
        to_status=to_status,
        note=note,
        data=data,
    )
    audit.record(session, principal, "status", "incident", incident.id, ["status"])
    emit_incident_event(
        session,
        incident,
        "incident.status_changed",
        {"from_status": from_status, "to_status": to_status},
    )


#: Statuses in which an incident holds (or waits for) managers in its slots.
_STAFFED = frozenset({IncidentStatus.dispatched, IncidentStatus.in_progress})


def open_slots_of(
    repo: IncidentRepository, incidents: Sequence[Incident]
) -> dict[uuid.UUID, list[str]]:
    """Per dispatched or in-progress incident, the slots it needs that nobody holds: the lead,
    and the co for a tandem incident (escalation ≥ KOKOMA_TANDEM_FROM_LEVEL). One query."""
    staffed = [i for i in incidents if i.status in _STAFFED]
    if not staffed:
        return {}
    held = repo.held_roles(i.id for i in staffed)
    tandem_from = get_settings().tandem_from_level
    result: dict[uuid.UUID, list[str]] = {}
    for incident in staffed:
        needed = ["lead", "co"] if incident.escalation_level >= tandem_from else ["lead"]
        result[incident.id] = [role for role in needed if role not in held.get(incident.id, ())]
    return result


def webhook_view(session: Session, incident: Incident) -> dict[str, Any]:
    """The incident as webhooks carry it: the redacted view, never reporter data
    (app.services.visibility; the import builds the same)."""
    repo = IncidentRepository(session)
    competences = repo.competences_of([incident.id]).get(incident.id, [])
    slots = open_slots_of(repo, [incident]).get(incident.id, [])
    return visibility.webhook_incident_view(partial(getattr, incident), competences, slots)


def emit_incident_event(
    session: Session, incident: Incident, event_type: str, extra: dict[str, Any] | None = None
) -> None:
    session.flush()
    outbox.emit(
        session,
        event_type,
        {"incident": webhook_view(session, incident), **(extra or {})},
        organisation_id=incident.organisation_id,
    )


class IncidentService:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.repo = IncidentRepository(session)

    # --- visibility (the rules: app.services.visibility) --------------------------------------

    def load(
        self, incident_id: uuid.UUID, principal: Principal, *, for_update: bool = False
    ) -> Incident:
        """The incident if the caller may see it; otherwise 404 (existence is not leaked)."""
        incident = self.repo.get(incident_id, for_update=for_update)
        if incident is None or not visibility.may_see_incident(self.session, incident, principal):
            raise NotFound(f"No incident {incident_id}.")
        return incident

    def read_public(self, incident_id: uuid.UUID, principal: Principal) -> IncidentPublic:
        """GET by id: a plain row (no ORM object), the same visibility, 404 and access log."""
        incident = self.repo.row(incident_id)
        if incident is None or not visibility.may_see_incident(self.session, incident, principal):
            raise NotFound(f"No incident {incident_id}.")
        return self.public_one(incident, principal, log_access=True)

    def to_public(
        self, incidents: Sequence[Incident], principal: Principal, *, log_access: bool = False
    ) -> list[IncidentPublic]:
        """Public views in one pass: competences batched, the reporter redacted where the role
        may not see it (:func:`app.services.visibility.reporter_visible`).

        ``log_access`` (reads): one ``access`` audit entry per returned incident whose reporter
        name or contact the caller sees (app.services.privacy.access_log), inserted in one
        statement.
        """
        ids = [i.id for i in incidents]
        competences = self.repo.competences_of(ids)
        seen = visibility.reporter_visible(self.session, incidents, principal)
        if log_access:
            from app.services.privacy.access_log import log_reporter_access

            log_reporter_access(
                self.session,
                principal,
                [
                    (i.id, i.reporter_name, i.reporter_contact)
                    for i in incidents
                    if i.id in seen and i.has_reporter
                ],
            )
        slots = open_slots_of(self.repo, incidents)
        return [
            visibility.incident_view(
                i,
                competences.get(i.id, []),
                sees_reporter=i.id in seen,
                open_slots=slots.get(i.id, ()),
            )
            for i in incidents
        ]

    @staticmethod
    def _public(
        incident: Incident,
        competences: list[str],
        with_reporter: bool,
        open_slots: Sequence[str] = (),
    ) -> IncidentPublic:
        """:func:`app.services.visibility.incident_view` under its former name (the batch
        dispatch builds its webhook payloads with it)."""
        return visibility.incident_view(
            incident, competences, sees_reporter=with_reporter, open_slots=open_slots
        )

    def public_one(
        self, incident: Incident, principal: Principal, *, log_access: bool = False
    ) -> IncidentPublic:
        return self.to_public([incident], principal, log_access=log_access)[0]

    # --- reads ---------------------------------------------------------------------------------

    def scoped_filter(self, flt: IncidentFilter, principal: Principal) -> IncidentFilter:
        return visibility.incident_scope(flt, principal)

    def page(
        self, flt: IncidentFilter, params: PageParams, principal: Principal
    ) -> tuple[list[IncidentPublic], str | None]:
        rows, cursor = self.repo.page(self.scoped_filter(flt, principal), params)
        return self.to_public(rows, principal, log_access=True), cursor

    # --- writes --------------------------------------------------------------------------------

    def _check_references(
        self,
        *,
        district: str | None = None,
        competences: Iterable[str] = (),
        organisation_id: uuid.UUID | None = None,
    ) -> None:
        if district is not None and not DistrictRepository(self.session).existing_codes([district]):
            raise Unprocessable.for_field("district", f"Unknown district '{district}'.")
        wanted = set(competences)
        missing = wanted - CompetenceRepository(self.session).existing_codes(wanted)
        if missing:
            raise Unprocessable.for_field(
                "required_competences", f"Unknown competence(s): {', '.join(sorted(missing))}."
            )
        if organisation_id is not None and not OrganisationRepository(self.session).exists(
            organisation_id
        ):
            raise Unprocessable.for_field(
                "organisation_id", f"Unknown organisation {organisation_id}."
            )

    def create(self, body: IncidentCreate, principal: Principal) -> IncidentPublic:
        organisation_id = body.organisation_id
        source = body.source
        if principal.role == Role.partner:
            if organisation_id is not None and organisation_id != principal.organisation_id:
                raise Forbidden("A partner key creates incidents for its own organisation only.")
            organisation_id = principal.organisation_id
            source = IncidentSource.partner
        self._check_references(
            district=body.district,
            competences=body.required_competences,
            organisation_id=organisation_id,
        )
        if body.external_id is not None and self.repo.by_external_id(source, body.external_id):
            raise Conflict(
                f"An incident with source '{source}' and external_id exists already.",
                type_=ProblemType.DUPLICATE,
            )
        clock = get_clock()
        now = clock.now()
        reporter = body.reporter
        fields = {
            "title": body.title,
            "description": body.description,
            "district": body.district,
            "lat": body.location.lat if body.location else None,
            "lon": body.location.lon if body.location else None,
            "category": body.category,
            "escalation_level": body.escalation_level,
            "languages": body.languages,
            "status": None,  # reported
            "occurred_at": body.occurred_at,
            "reported_at": body.reported_at,
            "source": source,
            "external_id": body.external_id,
            "organisation_id": organisation_id,
            "has_reporter": reporter is not None,
            "reporter_name": reporter.name if reporter else None,
            "reporter_contact": reporter.contact if reporter else None,
            "reporter_anonymous": reporter.anonymous if reporter else False,
        }
        reference = incident_reference(self.session, now.astimezone(clock.tz).year)
        incident = new_incident(new_id(), reference, fields, now)
        self.session.add(incident)
        try:
            with self.session.begin_nested():
                self.session.flush()
        except IntegrityError as exc:
            if not is_unique_violation(exc):
                raise  # another constraint or a trigger: the generic 409 (app.core.db_errors)
            raise Conflict(
                "An incident with this source and external_id exists already.",
                type_=ProblemType.DUPLICATE,
            ) from None
        self.repo.set_competences(incident, body.required_competences)
        self.session.add(
            IncidentEvent(
                incident_id=incident.id,
                to_status=incident.status,
                **created_event_columns(principal, now),
            )
        )
        audit.record(
            self.session,
            principal,
            "create",
            "incident",
            incident.id,
            public_incident_fields(body.model_fields_set),
        )
        emit_incident_event(self.session, incident, "incident.created")
        return self.public_one(incident, principal)

    def update(
        self,
        incident_id: uuid.UUID,
        body: IncidentUpdate,
        principal: Principal,
        if_match: int | None,
    ) -> IncidentPublic:
        incident = self.load(incident_id, principal, for_update=True)
        check_if_match(incident, if_match)
        fields = body.model_fields_set
        for name in ("title", "district", "category", "escalation_level"):
            if name in fields and getattr(body, name) is None:
                raise Unprocessable(
                    f"{name} cannot be null.",
                    errors=[{"loc": ["body", name], "msg": "may not be null", "type": "none"}],
                )
        self._check_references(
            district=body.district if "district" in fields else None,
            competences=body.required_competences or (),
        )
        changes: dict[str, Any] = body.model_dump(
            include=fields
            & {
                "title",
                "description",
                "district",
                "category",
                "escalation_level",
                "occurred_at",
                "external_id",
            }
        )
        if "description" in changes and changes["description"] is None:
            changes["description"] = ""
        if "languages" in fields:
            changes["languages"] = body.languages or []
        if "location" in fields:
            changes["lat"] = body.location.lat if body.location else None
            changes["lon"] = body.location.lon if body.location else None
        if "reporter" in fields:
            reporter = body.reporter
            changes.update(
                has_reporter=reporter is not None,
                reporter_name=reporter.name if reporter else None,
                reporter_contact=reporter.contact if reporter else None,
                reporter_anonymous=reporter.anonymous if reporter else False,
            )
        if "external_id" in changes and changes["external_id"] is not None:
            other = self.repo.by_external_id(incident.source, changes["external_id"])
            if other is not None and other.id != incident.id:
                raise Conflict(
                    "Another incident has this external_id.", type_=ProblemType.DUPLICATE
                )
        changed = apply_changes(incident, changes)
        if "required_competences" in fields:
            current = self.repo.competences_of([incident.id]).get(incident.id, [])
            wanted = sorted(set(body.required_competences or []))
            if current != wanted:
                self.repo.set_competences(incident, wanted)
                changed.append("required_competences")
        if changed:
            public_names = sorted(
                {"reporter" if n in REPORTER_FIELDS else n for n in changed} - {"lat", "lon"}
                | ({"location"} if {"lat", "lon"} & set(changed) else set())
            )
            bump(self.session, incident)
            record_event(
                self.session, incident, "updated", principal, data={"fields": public_names}
            )
            audit.record(self.session, principal, "update", "incident", incident.id, public_names)
        self.session.flush()
        return self.public_one(incident, principal)

    def set_status(
        self,
        incident_id: uuid.UUID,
        to_status: str,
        note: str | None,
        principal: Principal,
    ) -> IncidentPublic:
        try:
            target = IncidentStatus(to_status)
        except ValueError:
            raise Unprocessable(
                f"Unknown status '{to_status}'.",
                errors=[{"loc": ["body", "status"], "msg": "unknown status", "type": "enum"}],
            ) from None
        incident = self.load(incident_id, principal, for_update=True)
        current = IncidentStatus(incident.status)
        if principal.role == Role.partner and target != IncidentStatus.withdrawn:
            raise Forbidden("A partner may only withdraw its own incidents.")
        if target not in INCIDENT_TRANSITIONS[current]:
            raise Conflict(
                f"An incident cannot go from '{current}' to '{target}'.",
                type_=ProblemType.INVALID_TRANSITION,
            )
        if (current, target) in DISPATCH_ONLY_TRANSITIONS:
            raise Conflict(
                f"'{target}' is set by dispatch (offering and accepting assignments), not by hand.",
                type_=ProblemType.INVALID_TRANSITION,
            )
        open_assignments = self.repo.open_assignments(incident.id)
        now = get_clock().now()
        back_to_queue = target == IncidentStatus.triaged and current in (
            IncidentStatus.dispatched,
            IncidentStatus.in_progress,
        )
        if back_to_queue and open_assignments:
            raise Conflict(
                "The incident still has open assignments; withdraw them first.",
                type_=ProblemType.OPEN_ASSIGNMENTS,
            )
        ended: list[uuid.UUID] = []
        if target == IncidentStatus.resolved:
            to_end = [a for a in open_assignments if a.status == AssignmentStatus.offered]
        elif target in (IncidentStatus.referred, IncidentStatus.withdrawn):
            to_end = open_assignments
        else:
            to_end = []
        for assignment in to_end:
            if end_assignment(
                self.session,
                assignment,
                AssignmentStatus.withdrawn,
                now,
                reason=f"incident {target}",
            ):
                ended.append(assignment.id)
        change_status(
            self.session,
            incident,
            target,
            principal,
            note=note,
            data={"withdrawn_assignments": [str(i) for i in ended]} if ended else None,
        )
        self.session.flush()
        return self.public_one(incident, principal)

    # --- timeline and notes --------------------------------------------------------------------

    def events(
        self, incident_id: uuid.UUID, params: PageParams, principal: Principal
    ) -> tuple[list[IncidentEventPublic], str | None]:
        incident = self.load(incident_id, principal)
        rows, cursor = self.repo.events_page(incident.id, params)
        notes = visibility.sees_notes(self.session, incident, principal)
        return [visibility.timeline_view(e, sees_notes=notes) for e in rows], cursor

    def add_note(
        self, incident_id: uuid.UUID, body: NoteCreate, principal: Principal
    ) -> IncidentNotePublic:
        incident = self.load(incident_id, principal)
        note = IncidentNote(
            incident_id=incident.id,
            text=body.text,
            author_id=principal.key_id,
            author_role=principal.role,
            created_at=get_clock().now(),
        )
        self.session.add(note)
        self.session.flush()
        record_event(
            self.session, incident, "note_added", principal, data={"note_id": str(note.id)}
        )
        audit.record(self.session, principal, "create", "incident_note", note.id, ["text"])
        self.session.flush()
        return IncidentNotePublic.model_validate(note)

    def notes(
        self, incident_id: uuid.UUID, params: PageParams, principal: Principal
    ) -> tuple[list[IncidentNotePublic], str | None]:
        incident = self.load(incident_id, principal)
        if not visibility.sees_notes(self.session, incident, principal):
            raise Forbidden(
                "The incident's notes become visible once you accept an assignment on it."
            )
        rows, cursor = self.repo.notes_page(incident.id, params)
        return [IncidentNotePublic.model_validate(n) for n in rows], cursor

"""Who sees what: every role-based visibility rule (redaction) in one place.

Two words, used this way throughout the code and the docs:

* **redaction** — role-based hiding: the data is there, this caller may not see it. A hidden
  ``reporter`` is ``null`` (:class:`~app.models.incident.IncidentPublicRedacted`), hidden manager
  ``email``/``phone`` are ``null``, partners and viewers get
  :class:`~app.models.manager_schemas.ManagerPublicRedacted`. This module.
* **erasure** — the GDPR removal of the data itself (right to erasure, retention):
  :mod:`app.services.privacy`.

The rules (DESIGN.md §4, and §1 "Notes"); "staff" is admin and coordinator:

* **an incident** (otherwise 404, existence not leaked) — staff: all; a partner: its
  organisation's; a manager: while they hold an offered or accepted assignment on it; a viewer:
  none. :func:`incident_scope` (lists, exports), :func:`may_see_incident` (one incident).
* **its reporter name and contact** — staff; the incident's partner; the manager who accepted the
  *lead*. Everyone else gets ``reporter: null``. :func:`reporter_visible`, :func:`incident_view`.
* **its notes and the ``note`` of its timeline entries** — staff; the incident's partner; a
  manager once they *accepted* an assignment on it, lead or co. :func:`sees_notes`.
* **a manager's e-mail and phone** — staff; the manager on their own record; partners and viewers
  get the redacted manager view. :func:`sees_manager_contact`, :func:`manager_view_redacted`.

Not yet here: which assignments a caller sees, and that a partner sees them without the decline
and withdraw reasons, are still decided in :mod:`app.services.dispatch.views`.

Webhook payloads (and mails) never carry reporter data, notes or manager contact data: an
incident in a payload is the redacted view (:func:`webhook_incident_view`).

A manager who is only *offered* an incident sees the incident (to decide on the offer) but not
its reporter, nor its notes: notes are free text and may name the reporter. ``GET …/notes``
answers 403 until they accept; the ``note`` of its timeline entries is ``null`` meanwhile.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any, Protocol

from sqlmodel import Session

from app.core.security import Principal
from app.models.assignment import AssignmentRole
from app.models.incident import IncidentEventPublic, IncidentPublic, IncidentPublicRedacted
from app.models.system import Role
from app.repositories.incidents import IncidentFilter, IncidentRepository
from app.services.incident_records import incident_webhook_view

#: Where no caller matches (an unbound manager or partner key): a scope that matches nothing.
_NOBODY = uuid.UUID(int=0)

#: The incident columns every view carries (the reporter is added by :func:`incident_view`).
_PUBLIC_COLUMNS = (
    "id",
    "reference",
    "title",
    "description",
    "district",
    "category",
    "escalation_level",
    "languages",
    "status",
    "occurred_at",
    "reported_at",
    "source",
    "external_id",
    "organisation_id",
    "version",
    "created_at",
    "updated_at",
)


class IncidentFacts(Protocol):
    """What the rules read of an incident: an ORM object or a plain row both have it."""

    @property
    def id(self) -> uuid.UUID: ...

    @property
    def organisation_id(self) -> uuid.UUID | None: ...


# --- which incidents ---------------------------------------------------------------------------


def incident_scope(flt: IncidentFilter, principal: Principal) -> IncidentFilter:
    """The list filter narrowed to the incidents the caller may see (lists, exports, stats)."""
    if principal.role == Role.partner:
        return replace(flt, scope_organisation_id=principal.organisation_id or _NOBODY)
    if principal.role == Role.manager:
        return replace(flt, scope_manager_id=principal.manager_id or _NOBODY)
    if principal.is_staff:
        return flt
    return replace(flt, scope_organisation_id=_NOBODY)


def may_see_incident(session: Session, incident: IncidentFacts, principal: Principal) -> bool:
    """One incident: staff all, a partner its organisation's, a manager while they hold an open
    (offered or accepted) assignment on it. Callers answer 404 otherwise (existence is not
    leaked)."""
    if principal.is_staff:
        return True
    if principal.role == Role.partner:
        return _own_organisation(incident, principal)
    if principal.role == Role.manager and principal.manager_id is not None:
        return IncidentRepository(session).is_assigned(incident.id, principal.manager_id)
    return False


def _own_organisation(incident: IncidentFacts, principal: Principal) -> bool:
    return (
        incident.organisation_id is not None
        and incident.organisation_id == principal.organisation_id
    )


# --- the reporter and notes of incidents the caller sees ----------------------------------------


def _accepted(
    session: Session,
    incidents: Sequence[IncidentFacts],
    principal: Principal,
    roles: Iterable[AssignmentRole],
) -> set[uuid.UUID]:
    """Ids among ``incidents`` visible to the caller in full: staff all, a partner its
    organisation's, a manager those they accepted in one of ``roles``; one query at most."""
    if principal.is_staff:
        return {i.id for i in incidents}
    if principal.role == Role.partner:
        return {i.id for i in incidents if _own_organisation(i, principal)}
    if principal.role == Role.manager and principal.manager_id is not None and incidents:
        return IncidentRepository(session).accepted_incidents(
            principal.manager_id, [i.id for i in incidents], roles=roles
        )
    return set()


def reporter_visible(
    session: Session, incidents: Sequence[IncidentFacts], principal: Principal
) -> set[uuid.UUID]:
    """Ids among ``incidents`` (already within the caller's scope) whose reporter name and
    contact the caller sees: staff, the incident's partner, the manager who accepted the lead."""
    return _accepted(session, incidents, principal, (AssignmentRole.lead,))


def sees_reporter(session: Session, incident: IncidentFacts, principal: Principal) -> bool:
    return incident.id in reporter_visible(session, [incident], principal)


def sees_notes(session: Session, incident: IncidentFacts, principal: Principal) -> bool:
    """Whether the caller reads the incident's notes (and the ``note`` of its timeline entries):
    staff, the incident's partner, a manager once they accepted an assignment on it (lead or co)
    — not while it is only offered to them."""
    return incident.id in _accepted(
        session, [incident], principal, (AssignmentRole.lead, AssignmentRole.co)
    )


# --- views with the hidden fields redacted -----------------------------------------------------


def incident_view(
    incident: Any,
    competences: list[str],
    *,
    sees_reporter: bool,
    open_slots: Sequence[str] = (),
) -> IncidentPublic:
    """The incident as the caller sees it: :class:`IncidentPublic` with its reporter, or the
    redacted view :class:`IncidentPublicRedacted` (``reporter`` null). ``incident`` is an ORM
    object or a row with the incident's columns."""
    location = None
    if incident.lat is not None and incident.lon is not None:
        location = {"lat": incident.lat, "lon": incident.lon}
    fields: dict[str, Any] = {
        **{k: getattr(incident, k) for k in _PUBLIC_COLUMNS},
        "location": location,
        "required_competences": competences,
        "open_slots": list(open_slots),
    }
    if not sees_reporter:
        return IncidentPublicRedacted.model_validate(fields)
    reporter = None
    if incident.has_reporter:
        reporter = {
            "name": incident.reporter_name,
            "contact": incident.reporter_contact,
            "anonymous": incident.reporter_anonymous,
        }
    return IncidentPublic.model_validate({**fields, "reporter": reporter})


def webhook_incident_view(
    get: Callable[[str], Any], competences: list[str], open_slots: Sequence[str] = ()
) -> dict[str, Any]:
    """The incident as webhook payloads carry it — the redacted view (``reporter`` null), as
    JSON; ``get(column)`` reads the incident's columns (see
    :func:`app.services.incident_records.incident_webhook_view`, the one builder the API and the
    import share)."""
    return incident_webhook_view(get, competences, open_slots)


def timeline_view(event: Any, *, sees_notes: bool) -> IncidentEventPublic:
    """A timeline entry; its free-text ``note`` only for callers who see the incident's notes."""
    view = IncidentEventPublic.model_validate(event)
    if not sees_notes and view.note is not None:
        view = view.model_copy(update={"note": None})
    return view


# --- managers ------------------------------------------------------------------------------------


def manager_view_redacted(principal: Principal) -> bool:
    """Partners and viewers get the redacted manager view (no contact data, competences or
    expiry facts: :class:`~app.models.manager_schemas.ManagerPublicRedacted`)."""
    return principal.role in (Role.partner, Role.viewer)


def sees_manager_contact(principal: Principal, manager_id: uuid.UUID) -> bool:
    """A manager's ``email`` and ``phone``: staff, and the manager on their own record."""
    return principal.is_staff or (
        principal.manager_id is not None and principal.manager_id == manager_id
    )

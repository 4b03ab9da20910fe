"""What happens to a slot that a decline, withdrawal or expiry frees: it is offered to the next
candidate; with nobody left the coordinators hear of it, and an incident without a lead goes back
to the dispatch queue (its co offers withdrawn). Offer expiry lives here too (the incident is
locked by the caller, :mod:`app.services.dispatch.expiry`)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from app.core.security import Principal, PrincipalKind
from app.models.assignment import AssignmentRole, AssignmentStatus
from app.models.incident import Incident, IncidentStatus
from app.models.notification import NotificationKind
from app.models.system import Role
from app.services import audit, notifications
from app.services.dispatch.slots import end_assignment
from app.services.incidents import change_status, record_event

if TYPE_CHECKING:
    from app.services.dispatch.service import DispatchService

#: Who acts when dispatch itself offers a freed slot, expires offers or sends an incident back.
DISPATCH_PRINCIPAL = Principal(
    key_id=None, role=Role.admin, name="dispatch", kind=PrincipalKind.system
)

S = IncidentStatus
A = AssignmentStatus
LEAD, CO = AssignmentRole.lead, AssignmentRole.co


def refill(
    service: DispatchService,
    incident: Incident,
    role: AssignmentRole,
    now: datetime,
    *,
    cause: AssignmentStatus,
) -> None:
    """Offer a freed slot to the next candidate; with none, maybe back to the queue (and the
    coordinators hear of the slot nobody could take)."""
    if incident.status not in (S.dispatched, S.in_progress):
        return
    if role == CO and not service.is_tandem(incident):
        pass  # the incident needs no co (any more): nothing to offer
    elif service.above_volunteer_level(incident):
        record_event(
            service.session,
            incident,
            "coordinator_pick_required",
            DISPATCH_PRINCIPAL,
            note=f"Escalation level {incident.escalation_level} is above the volunteer "
            f"level: a coordinator must pick the {role}.",
            data={"role": role},
        )
        notifications.tell_coordinators(
            service.session, NotificationKind.coordinator_pick_required, incident, role=role
        )
    else:
        for candidate in service.rank(incident).candidates:
            if service._offer(incident, candidate, role, DISPATCH_PRINCIPAL, now=now, auto=True):
                return
        if role == CO and has_lead(service, incident):
            # The incident keeps its status with its lead: say that the co slot is open.
            record_event(
                service.session,
                incident,
                "no_candidate",
                DISPATCH_PRINCIPAL,
                note="No manager left to offer the co slot: it stays open (open_slots) "
                "while the lead carries on; a coordinator may offer it by hand.",
                data={"role": role, "slot_open": True},
            )
        else:
            record_event(
                service.session,
                incident,
                "no_candidate",
                DISPATCH_PRINCIPAL,
                note=f"No manager left to offer the {role} slot.",
                data={"role": role},
            )
        tell_unfilled(service, incident, role, cause)
    open_slots = service.repo.open_slots(incident.id)
    if any(a.role == LEAD for a in open_slots) or service.repo.has_completed_lead(incident.id):
        return
    withdrawn = []
    for co in (a for a in open_slots if a.role == CO):
        if end_assignment(
            service.session, co, A.withdrawn, now, reason="no lead", freed=service.freed
        ):
            withdrawn.append(str(co.id))
            record_event(
                service.session,
                incident,
                "assignment_withdrawn",
                DISPATCH_PRINCIPAL,
                note="no lead",
                data=service._event_data(co),
            )
            audit.record(
                service.session,
                DISPATCH_PRINCIPAL,
                "withdraw",
                "assignment",
                co.id,
                ["status", "withdraw_reason"],
            )
    change_status(
        service.session,
        incident,
        S.triaged,
        DISPATCH_PRINCIPAL,
        note="no candidate left: back to the dispatch queue",
        data={"withdrawn_assignments": withdrawn} if withdrawn else None,
    )


def has_lead(service: DispatchService, incident: Incident) -> bool:
    """An open or completed lead: the incident carries on without a co."""
    return any(
        a.role == LEAD for a in service.repo.open_slots(incident.id)
    ) or service.repo.has_completed_lead(incident.id)


def tell_unfilled(
    service: DispatchService, incident: Incident, role: AssignmentRole, cause: AssignmentStatus
) -> None:
    """Which coordinator mail a slot nobody could take is: a co slot next to a lead that
    stays is an open tandem slot; otherwise an expired offer with nobody next, or no
    candidate (after a decline or withdrawal)."""
    if role == CO and has_lead(service, incident):
        kind = NotificationKind.tandem_slot_open
    elif cause == A.expired:
        kind = NotificationKind.offer_expired_unfilled
    else:
        kind = NotificationKind.no_candidate
    notifications.tell_coordinators(service.session, kind, incident, role=role)


# --- expiry --------------------------------------------------------------------------------


def expire_offers(service: DispatchService, incident: Incident, now: datetime) -> int:
    """Expire the incident's offers due at ``now`` (incident locked by the caller)."""
    due = service.repo.due_offers(incident.id, now)
    for assignment in due:
        end_assignment(service.session, assignment, A.expired, now, freed=service.freed)
        record_event(
            service.session,
            incident,
            "assignment_expired",
            DISPATCH_PRINCIPAL,
            data=service._event_data(assignment),
        )
        audit.record(
            service.session, DISPATCH_PRINCIPAL, "expire", "assignment", assignment.id, ["status"]
        )
        service._emit("assignment.expired", assignment, incident)
    for assignment in sorted(due, key=lambda a: a.role != LEAD):
        refill(service, incident, AssignmentRole(assignment.role), now, cause=A.expired)
    service.freed.release()
    service.session.flush()
    return len(due)

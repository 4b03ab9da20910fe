"""Dispatch rules: the offer lifecycle (offer, accept, decline, complete, withdraw). Where the
other rules live:

* refilling a freed slot and offer expiry — :mod:`app.services.dispatch.refill`;
* batch auto-dispatch — :mod:`app.services.dispatch.auto`;
* candidates of one incident — :mod:`app.services.dispatch.candidates` (engine:
  :mod:`~app.services.dispatch.matching`);
* what an offer writes (row, timeline, audit, payload) — :mod:`app.services.dispatch.offers`;
* a manager is never overbooked — :mod:`app.services.dispatch.slots`;
* batch planning and its bulk writer — :mod:`~app.services.dispatch.batch_planner`,
  :mod:`~app.services.dispatch.batch` (the optimal plan; its solver in
  :mod:`~app.services.dispatch.batch_solver`), :mod:`~app.services.dispatch.batch_writer`;
* assignment reads and visibility — :mod:`app.services.dispatch.views`.

Locking (both databases): every change to an incident's assignments happens while the incident row
is locked (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite serialises write transactions with
``BEGIN IMMEDIATE``). The lock is always taken on the incident first, then manager rows are touched
by the atomic conditional UPDATEs of :mod:`app.services.dispatch.slots`. So an incident's slots
are decided by one transaction at a time, a manager's open count can never pass its maximum, and
the partial unique indexes on ``assignment`` are the backstop for both.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from app.core.clock import get_clock
from app.core.config import Settings, get_settings
from app.core.errors import Conflict, Unprocessable
from app.core.metrics import count_offer
from app.core.problems import ProblemType
from app.core.security import Principal
from app.models.assignment import (
    OPEN_ASSIGNMENT_STATUSES,
    Assignment,
    AssignmentRole,
    AssignmentStatus,
)
from app.models.assignment_schemas import (
    AssignmentCreate,
    AssignmentPublic,
    AutoDispatchRequest,
    AutoDispatchResult,
)
from app.models.incident import Incident, IncidentStatus
from app.repositories.dispatch import DispatchRepository
from app.services import audit, notifications, outbox
from app.services.dispatch.auto import auto_dispatch
from app.services.dispatch.candidates import CandidateRanking
from app.services.dispatch.matching import Candidate, check_manual_pick, score_manager
from app.services.dispatch.offers import (
    OFFER_AUDIT_FIELDS,
    assignment_payload,
    offer_row,
    offered_event_data,
)
from app.services.dispatch.refill import expire_offers, refill
from app.services.dispatch.slots import FreedSlots, end_assignment
from app.services.dispatch.views import AssignmentViews
from app.services.incidents import IncidentService, change_status, record_event

S = IncidentStatus
A = AssignmentStatus
LEAD, CO = AssignmentRole.lead, AssignmentRole.co
#: Incident statuses in which a coordinator may offer a slot (in_progress: a freed slot only).
OFFERABLE = frozenset({S.triaged, S.dispatched, S.in_progress})


class DispatchService(CandidateRanking, AssignmentViews):
    """Dispatch rules over one session (the request's unit of work): ranking
    (:class:`~app.services.dispatch.candidates.CandidateRanking`), reads
    (:class:`~app.services.dispatch.views.AssignmentViews`), and here the offer lifecycle,
    freed slots, expiry and batch auto-dispatch."""

    def __init__(self, session: Session, settings: Settings | None = None) -> None:
        self.session = session
        self.settings = settings or get_settings()
        self.repo = DispatchRepository(session)
        self.clock = get_clock()
        #: Slots given back in this unit of work, released in lock order (slots.py).
        self.freed = FreedSlots(session)

    # --- rules of thumb ------------------------------------------------------------------------

    def is_tandem(self, incident: Incident) -> bool:
        return incident.escalation_level >= self.settings.tandem_from_level

    def above_volunteer_level(self, incident: Incident) -> bool:
        return incident.escalation_level > self.settings.volunteer_max_level

    # --- offers --------------------------------------------------------------------------------

    def create(self, body: AssignmentCreate, principal: Principal) -> AssignmentPublic:
        incident = IncidentService(self.session).load(body.incident_id, principal, for_update=True)
        if body.manager_id is not None and not self.repo.manager_exists(body.manager_id):
            raise Unprocessable(
                f"Unknown manager {body.manager_id}.",
                errors=[
                    {
                        "loc": ["body", "manager_id"],
                        "msg": "unknown manager",
                        "type": "unknown_reference",
                    }
                ],
            )
        if incident.status not in OFFERABLE:
            raise Conflict(
                f"An incident in status '{incident.status}' cannot be dispatched "
                "(it must be triaged or dispatched).",
                type_=ProblemType.INCIDENT_NOT_DISPATCHABLE,
            )
        role = self._slot_for(incident, body.role)
        today, now = self.clock.today(), self.clock.now()
        facts = self.repo.incident_facts([incident])[incident.id]
        if body.manager_id is not None:
            (manager,) = self.repo.manager_facts(
                [body.manager_id], today, incident_id=incident.id, district=incident.district
            )
            failure = check_manual_pick(facts, manager, today)
            if failure is not None:
                raise Conflict(
                    f"The manager is not eligible for this incident: {failure}.",
                    type_=(
                        ProblemType.AT_CAPACITY
                        if failure == "at_capacity"
                        else ProblemType.NOT_ELIGIBLE
                    ),
                    errors=[{"loc": ["body", "manager_id"], "msg": failure, "type": failure}],
                )
            candidate = score_manager(facts, manager, today, now=now)
            assignment = self._offer(incident, candidate, role, principal, now=now, auto=False)
            if assignment is None:
                raise Conflict(
                    "The manager has no free slot (max_open_assignments reached).",
                    type_=ProblemType.AT_CAPACITY,
                    errors=[
                        {"loc": ["body", "manager_id"], "msg": "at_capacity", "type": "at_capacity"}
                    ],
                )
        else:
            if self.above_volunteer_level(incident):
                raise Conflict(
                    f"Escalation level {incident.escalation_level} is above the volunteer level "
                    f"({self.settings.volunteer_max_level}): a coordinator must pick a manager.",
                    type_=ProblemType.ESCALATION_ABOVE_VOLUNTEER_LEVEL,
                )
            assignment = None
            for candidate in self.rank(incident, facts=facts).candidates:
                assignment = self._offer(incident, candidate, role, principal, now=now, auto=True)
                if assignment is not None:
                    break
            if assignment is None:
                raise Conflict("No manager fits this incident.", type_=ProblemType.NO_CANDIDATE)
        self.session.flush()
        return self.public(assignment, principal)

    def _slot_for(self, incident: Incident, wanted: AssignmentRole | None) -> AssignmentRole:
        taken = {a.role for a in self.repo.open_slots(incident.id)}
        tandem = self.is_tandem(incident)
        if wanted is None:
            if LEAD not in taken:
                return LEAD
            if not tandem:
                raise Conflict(
                    "The lead slot is taken and the incident needs no co manager.",
                    type_=ProblemType.SLOT_TAKEN,
                )
            wanted = CO
        if wanted == CO and not tandem:
            raise Conflict(
                f"Only tandem incidents (escalation level ≥ {self.settings.tandem_from_level}) "
                "have a co slot.",
                type_=ProblemType.NOT_TANDEM,
            )
        if wanted in taken:
            raise Conflict(
                f"The {wanted} slot of this incident is taken.", type_=ProblemType.SLOT_TAKEN
            )
        return wanted

    def _offer(
        self,
        incident: Incident,
        candidate: Candidate,
        role: AssignmentRole,
        principal: Principal,
        *,
        now: datetime,
        auto: bool,
    ) -> Assignment | None:
        """Reserve the manager's slot and offer; ``None`` when the manager is at capacity."""
        row = offer_row(
            incident.id,
            candidate,
            role,
            principal,
            now=now,
            ttl_hours=self.settings.offer_ttl_hours,
        )
        assignment = Assignment(**row)
        try:
            with self.session.begin_nested():
                if not self.freed.reserve(candidate.manager_id, now):
                    return None
                self.session.add(assignment)
                self.session.flush()
        except IntegrityError:
            raise Conflict(
                f"The {role} slot of this incident is taken (or the manager holds an open "
                "assignment on it).",
                type_=ProblemType.SLOT_TAKEN,
            ) from None
        record_event(
            self.session,
            incident,
            "assignment_offered",
            principal,
            data=offered_event_data(row, auto=auto),
        )
        audit.record(
            self.session, principal, "offer", "assignment", assignment.id, OFFER_AUDIT_FIELDS
        )
        if incident.status == S.triaged:
            change_status(
                self.session,
                incident,
                S.dispatched,
                principal,
                note=f"{role} offered",
                data={"assignment_id": str(assignment.id)},
            )
        self._emit("assignment.offered", assignment, incident)
        notifications.offer_made(self.session, assignment, incident)
        return assignment

    # --- answers -------------------------------------------------------------------------------

    def accept(self, assignment_id: uuid.UUID, principal: Principal) -> AssignmentPublic:
        assignment, incident = self._locked(assignment_id, principal)
        if assignment.status == A.accepted:
            return self.public(assignment, principal)
        self._require_open_offer(assignment)
        now = self.clock.now()
        assignment.status = A.accepted
        assignment.responded_at = now
        self._touch(assignment, now)
        record_event(
            self.session,
            incident,
            "assignment_accepted",
            principal,
            data=self._event_data(assignment),
        )
        audit.record(
            self.session,
            principal,
            "accept",
            "assignment",
            assignment.id,
            ["status", "responded_at"],
        )
        self._emit("assignment.accepted", assignment, incident)
        self._maybe_start(incident, principal)
        self.session.flush()
        return self.public(assignment, principal)

    def decline(
        self, assignment_id: uuid.UUID, reason: str, principal: Principal
    ) -> AssignmentPublic:
        assignment, incident = self._locked(assignment_id, principal)
        if assignment.status == A.declined:
            return self.public(assignment, principal)
        self._require_open_offer(assignment)
        now = self.clock.now()
        end_assignment(self.session, assignment, A.declined, now, reason=reason, freed=self.freed)
        record_event(
            self.session,
            incident,
            "assignment_declined",
            principal,
            data=self._event_data(assignment),
        )
        audit.record(
            self.session,
            principal,
            "decline",
            "assignment",
            assignment.id,
            ["status", "responded_at", "decline_reason"],
        )
        self._emit("assignment.declined", assignment, incident)
        self._refill(incident, AssignmentRole(assignment.role), now, cause=A.declined)
        self.freed.release()
        self.session.flush()
        return self.public(assignment, principal)

    def complete(
        self, assignment_id: uuid.UUID, outcome: str, principal: Principal
    ) -> AssignmentPublic:
        assignment, incident = self._locked(assignment_id, principal)
        if assignment.status == A.completed:
            return self.public(assignment, principal)
        if assignment.status != A.accepted:
            raise Conflict(
                f"Only an accepted assignment can be completed; this one is {assignment.status}.",
                type_=ProblemType.ASSIGNMENT_NOT_ACCEPTED,
            )
        now = self.clock.now()
        end_assignment(self.session, assignment, A.completed, now)
        assignment.outcome = outcome
        record_event(
            self.session,
            incident,
            "assignment_completed",
            principal,
            data=self._event_data(assignment),
        )
        audit.record(
            self.session, principal, "complete", "assignment", assignment.id, ["status", "outcome"]
        )
        self.session.flush()
        return self.public(assignment, principal)

    def withdraw(
        self, assignment_id: uuid.UUID, reason: str | None, principal: Principal
    ) -> AssignmentPublic:
        assignment, incident = self._locked(assignment_id, principal)
        if assignment.status == A.withdrawn:
            return self.public(assignment, principal)
        if assignment.status not in OPEN_ASSIGNMENT_STATUSES:
            raise Conflict(
                f"Only an offered or accepted assignment can be withdrawn; this one is "
                f"{assignment.status}.",
                type_=ProblemType.ASSIGNMENT_NOT_OPEN,
            )
        now = self.clock.now()
        end_assignment(self.session, assignment, A.withdrawn, now, reason=reason, freed=self.freed)
        record_event(
            self.session,
            incident,
            "assignment_withdrawn",
            principal,
            data=self._event_data(assignment),
        )
        audit.record(
            self.session,
            principal,
            "withdraw",
            "assignment",
            assignment.id,
            ["status", "withdraw_reason"],
        )
        self._refill(incident, AssignmentRole(assignment.role), now, cause=A.withdrawn)
        self.freed.release()
        self.session.flush()
        return self.public(assignment, principal)

    def _require_open_offer(self, assignment: Assignment) -> None:
        if assignment.status != A.offered:
            raise Conflict(
                f"The offer is no longer open (it is {assignment.status}).",
                type_=ProblemType.OFFER_NOT_OPEN,
            )
        if assignment.expires_at <= self.clock.now():
            raise Conflict("The offer has expired.", type_=ProblemType.OFFER_NOT_OPEN)

    def _maybe_start(self, incident: Incident, principal: Principal) -> None:
        """dispatched → in_progress once the lead (tandem: lead and co) accepted."""
        if incident.status != S.dispatched:
            return
        accepted = {a.role for a in self.repo.open_slots(incident.id) if a.status == A.accepted}
        if LEAD in accepted and (CO in accepted or not self.is_tandem(incident)):
            change_status(
                self.session,
                incident,
                S.in_progress,
                principal,
                note="lead and co accepted" if self.is_tandem(incident) else "lead accepted",
            )

    # --- freed slots ---------------------------------------------------------------------------

    def _refill(
        self, incident: Incident, role: AssignmentRole, now: datetime, *, cause: AssignmentStatus
    ) -> None:
        """Offer a freed slot again: :func:`app.services.dispatch.refill.refill`."""
        refill(self, incident, role, now, cause=cause)

    def expire_offers_of(self, incident: Incident, now: datetime) -> int:
        """Expire the incident's offers due at ``now`` (incident locked by the caller)."""
        return expire_offers(self, incident, now)

    # --- helpers -------------------------------------------------------------------------------

    @staticmethod
    def _touch(assignment: Assignment, now: datetime) -> None:
        assignment.version += 1
        assignment.updated_at = now

    @staticmethod
    def _event_data(assignment: Assignment) -> dict[str, Any]:
        return {
            "assignment_id": str(assignment.id),
            "manager_id": str(assignment.manager_id),
            "role": assignment.role,
        }

    def _emit(self, event_type: str, assignment: Assignment, incident: Incident) -> None:
        if event_type in (
            "assignment.offered",
            "assignment.accepted",
        ):  # the others: end_assignment
            count_offer(self.session, event_type.removeprefix("assignment."))
        outbox.emit(
            self.session,
            event_type,
            assignment_payload(assignment, incident),
            organisation_id=incident.organisation_id,
        )

    # --- batch ---------------------------------------------------------------------------------

    def auto(self, body: AutoDispatchRequest, principal: Principal) -> AutoDispatchResult:
        """Batch auto-dispatch: :func:`app.services.dispatch.auto.auto_dispatch`."""
        return auto_dispatch(self, body, principal)

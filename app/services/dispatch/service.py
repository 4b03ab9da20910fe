"""Dispatch rules: candidates, the offer lifecycle, refilling freed slots, batch auto-dispatch.

Locking (both databases): every change to an incident's assignments happens while the incident row
is locked (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite serialises write transactions with
``BEGIN IMMEDIATE``). The lock is always taken on the incident first, then manager rows are touched
by the atomic conditional UPDATEs of :mod:`app.services.dispatch.slots`. So an incident's slots
are decided by one transaction at a time, a manager's open count can never pass its maximum, and
the partial unique indexes on ``assignment`` are the backstop for both.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, insert, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session

from app.core.clock import get_clock
from app.core.config import Settings, get_settings
from app.core.errors import Conflict, NotFound, Unprocessable
from app.core.metrics import count_offer
from app.core.pagination import PageParams
from app.core.problems import ProblemType
from app.core.security import Principal, PrincipalKind
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
    CandidatePublic,
    CandidatesResponse,
    ExcludedCounts,
    PlannedAssignmentPublic,
    ReasonPublic,
    UnassignedIncident,
)
from app.models.incident import Incident, IncidentEvent, IncidentStatus
from app.models.manager import Manager
from app.models.notification import NotificationKind
from app.models.outbox import OutboxEvent
from app.models.system import AuditEvent, AuditKind, Role
from app.repositories.dispatch import AssignmentFilter, DispatchRepository
from app.services import audit, notifications, outbox
from app.services.audit import principal_columns
from app.services.dispatch.batch import BatchIncident, BatchPlan, plan_batch
from app.services.dispatch.matching import (
    EXCLUSION_REASONS,
    Candidate,
    CompetenceHolding,
    IncidentFacts,
    ManagerFacts,
    Ranking,
    check_manual_pick,
    competence_valid,
    rank_candidates,
    score_manager,
)
from app.services.dispatch.slots import end_assignment, release_slot, reserve_slot
from app.services.incidents import IncidentService, change_status, record_event
from app.services.timeline import actor_columns

#: Who acts when dispatch itself offers a freed slot, expires offers or sends an incident back.
DISPATCH_PRINCIPAL = Principal(
    key_id=None, role=Role.admin, name="dispatch", kind=PrincipalKind.system
)

S = IncidentStatus
A = AssignmentStatus
LEAD, CO = AssignmentRole.lead, AssignmentRole.co
#: Incident statuses in which a coordinator may offer a slot (in_progress: a freed slot only).
OFFERABLE = frozenset({S.triaged, S.dispatched, S.in_progress})


def _reasons(candidate: Candidate) -> list[dict[str, Any]]:
    return [
        {"factor": r.factor, "value": r.value, "weight": r.weight, "detail": r.detail}
        for r in candidate.reasons
    ]


def _candidate(candidate: Candidate) -> CandidatePublic:
    return CandidatePublic(
        manager_id=candidate.manager_id,
        display_name=candidate.display_name,
        score=candidate.score,
        district_match=candidate.district_match,
        open_assignments=candidate.open_assignments,
        reasons=[ReasonPublic(**r) for r in _reasons(candidate)],
    )


class DispatchService:
    def __init__(self, session: Session, settings: Settings | None = None) -> None:
        self.session = session
        self.settings = settings or get_settings()
        self.repo = DispatchRepository(session)
        self.clock = get_clock()

    # --- rules of thumb ------------------------------------------------------------------------

    def is_tandem(self, incident: Incident) -> bool:
        return incident.escalation_level >= self.settings.tandem_from_level

    def above_volunteer_level(self, incident: Incident) -> bool:
        return incident.escalation_level > self.settings.volunteer_max_level

    # --- candidates ----------------------------------------------------------------------------

    def rank(
        self,
        incident: Incident,
        *,
        fallback: bool = True,
        limit: int | None = None,
        facts: IncidentFacts | None = None,
    ) -> Ranking:
        """The exact ranking of the whole roster for ``incident`` (see the repository docstring)."""
        facts = facts or self.repo.incident_facts([incident])[incident.id]
        # First without neighbours: while anyone in the district qualifies, the engine ignores
        # neighbouring districts anyway (they count as wrong_district), so this is exact and
        # loads a third of the facts. Only when nobody there qualifies are neighbours screened.
        ranking = self._rank_screened(incident, facts, neighbours=False, limit=limit)
        if fallback and not ranking.candidates and facts.neighbours:
            ranking = self._rank_screened(incident, facts, neighbours=True, limit=limit)
        return ranking

    def _rank_screened(
        self, incident: Incident, facts: IncidentFacts, *, neighbours: bool, limit: int | None
    ) -> Ranking:
        today, now = self.clock.today(), self.clock.now()
        counts, plausible = self.repo.screen_roster(facts, today, neighbours=neighbours)
        managers = self.repo.manager_facts(
            plausible, today, incident_id=incident.id, district=incident.district, screened=True
        )
        ranking = rank_candidates(
            facts, managers, today, fallback_neighbours=neighbours, now=now, limit=limit
        )
        excluded = {r: ranking.excluded[r] + counts.get(r, 0) for r in EXCLUSION_REASONS}
        return Ranking(ranking.candidates, excluded, ranking.fallback_used)

    def candidates(
        self, incident_id: uuid.UUID, principal: Principal, *, limit: int, fallback: bool
    ) -> CandidatesResponse:
        incident = IncidentService(self.session).load(incident_id, principal)
        ranking = self.rank(incident, fallback=fallback, limit=limit)
        return CandidatesResponse(
            incident_id=incident.id,
            candidates=[_candidate(c) for c in ranking.candidates],
            excluded=ExcludedCounts(**ranking.excluded),
            fallback_used=ranking.fallback_used,
        )

    # --- offers --------------------------------------------------------------------------------

    def create(self, body: AssignmentCreate, principal: Principal) -> AssignmentPublic:
        incident = IncidentService(self.session).load(body.incident_id, principal, for_update=True)
        if body.manager_id is not None and not self.repo.manager_exists(body.manager_id):
            raise Unprocessable(
                f"Unknown manager {body.manager_id}.",
                errors=[{"loc": ["body", "manager_id"], "msg": "unknown manager",
                         "type": "unknown_reference"}],
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
                    type_=(ProblemType.AT_CAPACITY if failure == "at_capacity"
                           else ProblemType.NOT_ELIGIBLE),
                    errors=[{"loc": ["body", "manager_id"], "msg": failure, "type": failure}],
                )
            candidate = score_manager(facts, manager, today, now=now)
            assignment = self._offer(incident, candidate, role, principal, now=now, auto=False)
            if assignment is None:
                raise Conflict(
                    "The manager has no free slot (max_open_assignments reached).",
                    type_=ProblemType.AT_CAPACITY,
                    errors=[{"loc": ["body", "manager_id"], "msg": "at_capacity",
                             "type": "at_capacity"}],
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
            raise Conflict(f"The {wanted} slot of this incident is taken.", type_=ProblemType.SLOT_TAKEN)
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
        assignment = Assignment(
            incident_id=incident.id,
            manager_id=candidate.manager_id,
            role=role,
            status=A.offered,
            offered_at=now,
            expires_at=now + timedelta(hours=self.settings.offer_ttl_hours),
            score=candidate.score,
            reasons=_reasons(candidate),
            offered_by=principal.key_id,
            created_at=now,
            updated_at=now,
        )
        try:
            with self.session.begin_nested():
                if not reserve_slot(self.session, candidate.manager_id, now):
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
            data={
                "assignment_id": str(assignment.id),
                "manager_id": str(assignment.manager_id),
                "role": role,
                "score": candidate.score,
                "auto": auto,
            },
        )
        audit.record(
            self.session, principal, "offer", "assignment", assignment.id,
            ["incident_id", "manager_id", "role", "status", "expires_at"],
        )
        if incident.status == S.triaged:
            change_status(
                self.session, incident, S.dispatched, principal,
                note=f"{role} offered", data={"assignment_id": str(assignment.id)},
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
        record_event(self.session, incident, "assignment_accepted", principal,
                     data=self._event_data(assignment))
        audit.record(self.session, principal, "accept", "assignment", assignment.id,
                     ["status", "responded_at"])
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
        end_assignment(self.session, assignment, A.declined, now, reason=reason)
        record_event(self.session, incident, "assignment_declined", principal,
                     data=self._event_data(assignment))
        audit.record(self.session, principal, "decline", "assignment", assignment.id,
                     ["status", "responded_at", "decline_reason"])
        self._emit("assignment.declined", assignment, incident)
        self._refill(incident, AssignmentRole(assignment.role), now, cause=A.declined)
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
        record_event(self.session, incident, "assignment_completed", principal,
                     data=self._event_data(assignment))
        audit.record(self.session, principal, "complete", "assignment", assignment.id,
                     ["status", "outcome"])
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
        end_assignment(self.session, assignment, A.withdrawn, now, reason=reason)
        record_event(self.session, incident, "assignment_withdrawn", principal,
                     data=self._event_data(assignment))
        audit.record(self.session, principal, "withdraw", "assignment", assignment.id,
                     ["status", "withdraw_reason"])
        self._refill(incident, AssignmentRole(assignment.role), now, cause=A.withdrawn)
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
                self.session, incident, S.in_progress, principal,
                note="lead and co accepted" if self.is_tandem(incident) else "lead accepted",
            )

    # --- freed slots ---------------------------------------------------------------------------

    def _refill(
        self, incident: Incident, role: AssignmentRole, now: datetime, *, cause: AssignmentStatus
    ) -> None:
        """Offer a freed slot to the next candidate; with none, maybe back to the queue (and the
        coordinators hear of the slot nobody could take)."""
        if incident.status not in (S.dispatched, S.in_progress):
            return
        if role == CO and not self.is_tandem(incident):
            pass  # the incident needs no co (any more): nothing to offer
        elif self.above_volunteer_level(incident):
            record_event(
                self.session, incident, "coordinator_pick_required", DISPATCH_PRINCIPAL,
                note=f"Escalation level {incident.escalation_level} is above the volunteer "
                f"level: a coordinator must pick the {role}.",
                data={"role": role},
            )
            notifications.tell_coordinators(
                self.session, NotificationKind.coordinator_pick_required, incident, role=role)
        else:
            for candidate in self.rank(incident).candidates:
                if self._offer(incident, candidate, role, DISPATCH_PRINCIPAL, now=now, auto=True):
                    return
            record_event(
                self.session, incident, "no_candidate", DISPATCH_PRINCIPAL,
                note=f"No manager left to offer the {role} slot.", data={"role": role},
            )
            self._tell_unfilled(incident, role, cause)
        open_slots = self.repo.open_slots(incident.id)
        if any(a.role == LEAD for a in open_slots) or self.repo.has_completed_lead(incident.id):
            return
        withdrawn = []
        for co in (a for a in open_slots if a.role == CO):
            if end_assignment(self.session, co, A.withdrawn, now, reason="no lead"):
                withdrawn.append(str(co.id))
                record_event(self.session, incident, "assignment_withdrawn", DISPATCH_PRINCIPAL,
                             note="no lead", data=self._event_data(co))
                audit.record(self.session, DISPATCH_PRINCIPAL, "withdraw", "assignment", co.id,
                             ["status", "withdraw_reason"])
        change_status(
            self.session, incident, S.triaged, DISPATCH_PRINCIPAL,
            note="no candidate left: back to the dispatch queue",
            data={"withdrawn_assignments": withdrawn} if withdrawn else None,
        )

    def _tell_unfilled(
        self, incident: Incident, role: AssignmentRole, cause: AssignmentStatus
    ) -> None:
        """Which coordinator mail a slot nobody could take is: a co slot next to a lead that
        stays is an open tandem slot; otherwise an expired offer with nobody next, or no
        candidate (after a decline or withdrawal)."""
        if role == CO and (
            any(a.role == LEAD for a in self.repo.open_slots(incident.id))
            or self.repo.has_completed_lead(incident.id)
        ):
            kind = NotificationKind.tandem_slot_open
        elif cause == A.expired:
            kind = NotificationKind.offer_expired_unfilled
        else:
            kind = NotificationKind.no_candidate
        notifications.tell_coordinators(self.session, kind, incident, role=role)

    # --- expiry --------------------------------------------------------------------------------

    def expire_offers_of(self, incident: Incident, now: datetime) -> int:
        """Expire the incident's offers due at ``now`` (incident locked by the caller)."""
        due = self.repo.due_offers(incident.id, now)
        for assignment in due:
            end_assignment(self.session, assignment, A.expired, now)
            record_event(self.session, incident, "assignment_expired", DISPATCH_PRINCIPAL,
                         data=self._event_data(assignment))
            audit.record(self.session, DISPATCH_PRINCIPAL, "expire", "assignment",
                         assignment.id, ["status"])
            self._emit("assignment.expired", assignment, incident)
        for assignment in sorted(due, key=lambda a: a.role != LEAD):
            self._refill(incident, AssignmentRole(assignment.role), now, cause=A.expired)
        self.session.flush()
        return len(due)

    # --- reads ---------------------------------------------------------------------------------

    def get(self, assignment_id: uuid.UUID, principal: Principal) -> AssignmentPublic:
        assignment = self.session.get(Assignment, assignment_id)
        if assignment is None or not self._may_see(assignment, principal):
            raise NotFound(f"No assignment {assignment_id}.")
        return self.public(assignment, principal)

    def page(
        self, flt: AssignmentFilter, params: PageParams, principal: Principal
    ) -> tuple[list[AssignmentPublic], str | None]:
        if principal.role == Role.manager:
            flt = dataclasses.replace(
                flt, scope_manager_id=principal.manager_id or uuid.UUID(int=0)
            )
        elif principal.role == Role.partner:
            flt = dataclasses.replace(
                flt, scope_organisation_id=principal.organisation_id or uuid.UUID(int=0)
            )
        rows, cursor = self.repo.page(flt, params)
        return [self._public(a, name, principal) for a, name in rows], cursor

    def public(self, assignment: Assignment, principal: Principal) -> AssignmentPublic:
        name = self.repo.display_names([assignment.manager_id]).get(assignment.manager_id)
        return self._public(assignment, name, principal)

    @staticmethod
    def _public(assignment: Assignment, name: str | None, principal: Principal
                ) -> AssignmentPublic:
        view = AssignmentPublic.model_validate(assignment)
        view.manager_display_name = name
        if principal.role == Role.partner:
            view.decline_reason = None
            view.withdraw_reason = None
        return view

    def _may_see(self, assignment: Assignment, principal: Principal) -> bool:
        if principal.is_staff:
            return True
        if principal.role == Role.manager:
            return principal.manager_id is not None and assignment.manager_id == principal.manager_id
        if principal.role == Role.partner:
            incident = self.session.get(Incident, assignment.incident_id)
            return (
                incident is not None
                and incident.organisation_id is not None
                and incident.organisation_id == principal.organisation_id
            )
        return False

    def _locked(self, assignment_id: uuid.UUID, principal: Principal
                ) -> tuple[Assignment, Incident]:
        """The assignment (if visible) with its incident row locked, both freshly read."""
        assignment = self.session.get(Assignment, assignment_id)
        if assignment is None or not self._may_see(assignment, principal):
            raise NotFound(f"No assignment {assignment_id}.")
        (incident,) = self.repo.incidents([assignment.incident_id], for_update=True)
        self.session.refresh(assignment)
        return assignment, incident

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
        if event_type in ("assignment.offered", "assignment.accepted"):  # the others: end_assignment
            count_offer(self.session, event_type.removeprefix("assignment."))
        outbox.emit(self.session, event_type, assignment_payload(assignment, incident),
                    organisation_id=incident.organisation_id)

    # --- batch ---------------------------------------------------------------------------------

    def auto(self, body: AutoDispatchRequest, principal: Principal) -> AutoDispatchResult:
        lock = not body.dry_run
        if body.incident_ids is not None:
            wanted = list(dict.fromkeys(body.incident_ids))
            found = {i.id: i for i in self.repo.incidents(wanted, for_update=lock)}
            unknown = [n for n, i in enumerate(body.incident_ids) if i not in found]
            if unknown:
                raise Unprocessable(
                    f"{len(unknown)} unknown incident id(s).",
                    errors=[{"loc": ["body", "incident_ids", n], "msg": "unknown incident",
                             "type": "unknown_reference"} for n in unknown],
                )
            incidents = [found[i] for i in wanted]
        else:
            incidents = self.repo.triaged_incidents(for_update=lock)
        unassigned: list[UnassignedIncident] = []
        eligible: list[Incident] = []
        for incident in incidents:
            if incident.status != S.triaged:
                unassigned.append(UnassignedIncident(incident_id=incident.id, reason="not_triaged"))
            elif self.above_volunteer_level(incident):
                unassigned.append(UnassignedIncident(
                    incident_id=incident.id, reason="escalation_above_volunteer_level"))
            else:
                eligible.append(incident)
        planner = _BatchPlanner(self, eligible)
        plan = planner.plan()
        unassigned.extend(
            UnassignedIncident(incident_id=u.incident_id, reason=u.reason) for u in plan.unassigned
        )
        if body.dry_run:
            items: list[AssignmentPublic | PlannedAssignmentPublic] = [
                PlannedAssignmentPublic(
                    incident_id=p.incident_id,
                    manager_id=p.manager_id,
                    manager_display_name=planner.names[p.manager_id],
                    role=AssignmentRole(p.role),
                    score=p.score,
                    reasons=_reasons(planner.chosen[p.incident_id][p.manager_id]),
                )
                for p in plan.assignments
            ]
            total = sum(p.score for p in plan.assignments)
        else:
            made, failed = planner.write(plan, principal)
            unassigned.extend(
                UnassignedIncident(incident_id=i, reason="no_candidate") for i in failed
            )
            self._tell_unassigned(incidents, unassigned)
            items = [
                AssignmentPublic.model_validate(
                    {**row, "manager_display_name": planner.names.get(row["manager_id"])})
                for row in made
            ]
            total = sum(row["score"] for row in made)
        return AutoDispatchResult(
            dry_run=body.dry_run,
            assignments=items,
            unassigned=unassigned,
            total_score=round(total, 4),
            optimal=plan.optimal,
        )


    _UNASSIGNED_KINDS = {
        "no_candidate": NotificationKind.no_candidate,
        "no_tandem_partner": NotificationKind.tandem_slot_open,
        "escalation_above_volunteer_level": NotificationKind.coordinator_pick_required,
    }

    def _tell_unassigned(
        self, incidents: Sequence[Incident], unassigned: Sequence[UnassignedIncident]
    ) -> None:
        """Coordinators hear of incidents a batch run could not dispatch — once per incident
        version, so a batch repeated every few minutes does not repeat the mail."""
        by_id = {i.id: i for i in incidents}
        for item in unassigned:
            kind = self._UNASSIGNED_KINDS.get(item.reason)
            incident = by_id.get(item.incident_id)
            if kind is not None and incident is not None:
                notifications.tell_coordinators(
                    self.session, kind, incident,
                    dedupe=f"{kind.value}:{incident.id}:v{incident.version}",
                )


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


class _BatchPlanner:
    """Candidates of many incidents from one load of the available roster, then one plan.

    Same hard constraints and scores as :meth:`DispatchService.rank` (the engine decides), but
    without the exclusion counts, which a batch does not report: only managers that can take an
    offer today at all (active, not absent, a free slot) are loaded, indexed by the districts they
    serve. An incident is ranked first against the managers serving its district; only when none
    of them qualifies are its neighbours' managers added (exactly the engine's fallback rule).
    Incidents alike in district, competences and languages, with no history, share one ranking.
    """

    def __init__(self, service: DispatchService, incidents: Sequence[Incident]) -> None:
        self.service = service
        self.session = service.session
        self.repo = service.repo
        self.incidents = list(incidents)
        self.today: date = service.clock.today()
        self.now: datetime = service.clock.now()
        self.names: dict[uuid.UUID, str] = {}
        self.chosen: dict[uuid.UUID, dict[uuid.UUID, Candidate]] = {}
        self.open_on: set[uuid.UUID] = set()
        self.facts: dict[uuid.UUID, IncidentFacts] = {}

    def plan(self) -> BatchPlan:
        facts = self.repo.incident_facts(self.incidents) if self.incidents else {}
        self.facts = facts
        roster = self.repo.available_roster(self.today) if self.incidents else []
        competences = self.repo.competences_of(None, valid_on=self.today) if roster else {}
        served = self.repo.served_districts(None) if roster else {}
        cases = self.repo.cases_by_district() if roster else {}
        involvement: dict[uuid.UUID, dict[uuid.UUID, set[str]]] = defaultdict(
            lambda: defaultdict(set))
        for incident_id, manager_id, status in self.repo.involvement(
            [i.id for i in self.incidents]
        ):
            involvement[incident_id][manager_id].add(status)
            if status in OPEN_ASSIGNMENT_STATUSES:
                self.open_on.add(incident_id)

        base: dict[uuid.UUID, ManagerFacts] = {}
        valid: dict[uuid.UUID, frozenset[str]] = {}
        by_district: dict[str, list[uuid.UUID]] = defaultdict(list)
        free: dict[uuid.UUID, int] = {}
        for m in roster:
            holdings = tuple(competences.get(m.id, ()))
            districts = frozenset(served.get(m.id, ()))
            base[m.id] = ManagerFacts(
                id=m.id, display_name=m.display_name, status=m.status,
                home_district=m.home_district, districts=districts,
                languages=frozenset(m.languages or ()),
                max_open_assignments=m.max_open_assignments, competences=holdings,
                open_assignments=m.open_assignments, last_assigned_at=m.last_assigned_at,
            )
            valid[m.id] = frozenset(h.code for h in holdings if _valid(h, self.today))
            for district in {m.home_district, *districts}:
                by_district[district].append(m.id)
            free[m.id] = m.max_open_assignments - m.open_assignments
            self.names[m.id] = m.display_name

        def pool(district: str, incident: IncidentFacts, skip: frozenset[uuid.UUID] = frozenset()
                 ) -> list[ManagerFacts]:
            in_district = cases.get(incident.district, {})
            history = involvement.get(incident.id, {})
            result = []
            for manager_id in by_district.get(district, ()):
                if manager_id in skip or not incident.required_competences <= valid[manager_id]:
                    continue
                facts_m = base[manager_id]
                earlier = in_district.get(manager_id, 0)
                statuses = history.get(manager_id)
                if statuses:
                    earlier -= sum(1 for s in statuses if s in ("accepted", "completed"))
                if earlier or statuses:
                    facts_m = dataclasses.replace(
                        facts_m, earlier_cases_in_district=max(earlier, 0),
                        statuses_on_incident=frozenset(statuses or ()),
                    )
                result.append(facts_m)
            return result

        # Incidents alike in district, competences and languages, without history, share one
        # ranking (and its candidate pairs, and its lookup by manager).
        Shared = tuple[list[tuple[uuid.UUID, float]], dict[uuid.UUID, Candidate]]
        shared: dict[tuple[Any, ...], Shared] = {}
        candidates_by_incident: dict[uuid.UUID, list[tuple[uuid.UUID, float]]] = {}
        batch: list[BatchIncident] = []
        for incident in self.incidents:
            f = facts[incident.id]
            if incident.id in self.open_on:
                ranked: Shared = ([], {})  # holds an open assignment already: not a batch case
            elif incident.id in involvement:
                ranked = self._shared(self._rank(f, pool))
            else:
                key = (f.district, f.required_competences, f.languages)
                if key not in shared:
                    shared[key] = self._shared(self._rank(f, pool))
                ranked = shared[key]
            candidates_by_incident[incident.id], self.chosen[incident.id] = ranked
            batch.append(BatchIncident(incident.id, 2 if self.service.is_tandem(incident) else 1))
        return plan_batch(batch, candidates_by_incident, free)

    @staticmethod
    def _shared(ranked: list[Candidate]
                ) -> tuple[list[tuple[uuid.UUID, float]], dict[uuid.UUID, Candidate]]:
        return [(c.manager_id, c.score) for c in ranked], {c.manager_id: c for c in ranked}

    def _rank(self, facts: IncidentFacts, pool) -> list[Candidate]:  # type: ignore[no-untyped-def]
        home = pool(facts.district, facts)
        ranking = rank_candidates(facts, home, self.today, fallback_neighbours=False, now=self.now)
        if ranking.candidates or not facts.neighbours:
            return ranking.candidates
        seen = frozenset(m.id for m in home)
        wider = list(home)
        for neighbour in sorted(facts.neighbours):
            extra = pool(neighbour, facts, seen)
            wider.extend(extra)
            seen = seen | {m.id for m in extra}
        return rank_candidates(facts, wider, self.today, fallback_neighbours=True,
                               now=self.now).candidates

    def write(self, plan: BatchPlan, principal: Principal
              ) -> tuple[list[dict[str, Any]], list[uuid.UUID]]:
        """Offer the planned slots in bulk; an incident whose slots cannot all be reserved (a
        manager's slot taken meanwhile by a concurrent request) gets none.

        The same rows as one :meth:`DispatchService._offer` per slot plus the ``triaged →
        dispatched`` :func:`~app.services.incidents.change_status` — assignment, timeline events,
        audit entries, outbox events — written set-based (the incidents are locked by the
        caller, manager slots are taken by atomic conditional UPDATEs).
        """
        now = self.now
        planned_by_incident: dict[uuid.UUID, list[Any]] = defaultdict(list)
        for planned in plan.assignments:
            planned_by_incident[planned.incident_id].append(planned)
        lost = self._reserve(Counter(p.manager_id for p in plan.assignments))
        failed = [i for i, ps in planned_by_incident.items()
                  if any(p.manager_id in lost for p in ps)]
        for incident_id in failed:  # give back the slots its other managers got
            for p in planned_by_incident.pop(incident_id):
                if p.manager_id not in lost:
                    release_slot(self.session, p.manager_id)
        if not planned_by_incident:
            return [], failed

        incidents = {i.id: i for i in self.incidents}
        expires_at = now + timedelta(hours=self.service.settings.offer_ttl_hours)
        assignments: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        audits: list[dict[str, Any]] = []
        outbox_rows: list[dict[str, Any]] = []
        incident_updates: list[dict[str, Any]] = []
        actor = actor_columns(principal)
        who = principal_columns(principal)

        def audit_row(action: str, resource: str, resource_id: Any, fields: list[str]
                      ) -> dict[str, Any]:
            return {"id": uuid.uuid4(), "at": now, "kind": AuditKind.write,
                    **who,
                    "action": action, "resource": resource, "resource_id": str(resource_id),
                    "fields": sorted(fields)}

        for incident_id, planned in planned_by_incident.items():
            incident = incidents[incident_id]
            for p in planned:
                candidate = self.chosen[incident_id][p.manager_id]
                row = {
                    "id": uuid.uuid4(), "incident_id": incident_id, "manager_id": p.manager_id,
                    "role": p.role, "status": A.offered, "offered_at": now,
                    "responded_at": None, "expires_at": expires_at, "ended_at": None,
                    "score": candidate.score, "reasons": _reasons(candidate),
                    "decline_reason": None, "withdraw_reason": None, "outcome": None,
                    "offered_by": principal.key_id, "version": 1,
                    "created_at": now, "updated_at": now,
                }
                assignments.append(row)
                events.append({"id": uuid.uuid4(), "incident_id": incident_id, "at": now,
                               "type": "assignment_offered", **actor, "from_status": None,
                               "to_status": None, "note": None,
                               "data": {"assignment_id": str(row["id"]),
                                        "manager_id": str(p.manager_id), "role": p.role,
                                        "score": candidate.score, "auto": True}})
                audits.append(audit_row("offer", "assignment", row["id"], [
                    "incident_id", "manager_id", "role", "status", "expires_at"]))
            # triaged → dispatched, exactly as change_status records it
            set_committed_value(incident, "status", S.dispatched)
            set_committed_value(incident, "status_changed_at", now)
            set_committed_value(incident, "version", incident.version + 1)
            set_committed_value(incident, "updated_at", now)
            incident_updates.append({"id": incident_id, "status": S.dispatched,
                                     "status_changed_at": now, "version": incident.version,
                                     "updated_at": now})
            first = assignments[-len(planned)]
            events.append({"id": uuid.uuid4(), "incident_id": incident_id, "at": now,
                           "type": "status_changed", **actor, "from_status": S.triaged,
                           "to_status": S.dispatched, "note": f"{planned[0].role} offered",
                           "data": {"assignment_id": str(first["id"])}})
            audits.append(audit_row("status", "incident", incident_id, ["status"]))
            view = IncidentService._public(
                incident, sorted(self.facts[incident_id].required_competences),
                with_reporter=False,
            ).model_dump(mode="json")
            outbox_rows.append({"id": uuid.uuid4(), "event_type": "incident.status_changed",
                                "payload": {"incident": view, "from_status": S.triaged,
                                            "to_status": S.dispatched},
                                "organisation_id": incident.organisation_id,
                                "created_at": now, "fanned_out_at": None})
            for row in assignments[-len(planned):]:
                outbox_rows.append({"id": uuid.uuid4(), "event_type": "assignment.offered",
                                    "payload": assignment_payload(row, incident),
                                    "organisation_id": incident.organisation_id,
                                    "created_at": now, "fanned_out_at": None})

        # Core executemany (one batched statement per table, no ORM row bookkeeping).
        connection = self.session.connection()
        for model, rows in ((Assignment, assignments), (IncidentEvent, events),
                            (AuditEvent, audits), (OutboxEvent, outbox_rows)):
            connection.execute(insert(model.__table__), rows)  # type: ignore[attr-defined]
        for _ in assignments:
            count_offer(self.session, A.offered)
        notifications.offers_made(self.session, assignments, incidents)
        table = Incident.__table__  # type: ignore[attr-defined]
        connection.execute(
            update(table)
            .where(table.c.id == bindparam("incident", type_=table.c.id.type))
            .values(status=S.dispatched, status_changed_at=now, updated_at=now,
                    version=bindparam("new_version")),
            [{"incident": u["id"], "new_version": u["version"]} for u in incident_updates],
        )
        return assignments, failed

    def _reserve(self, slots: Counter[uuid.UUID]) -> set[uuid.UUID]:
        """Take ``slots[m]`` free slots of each manager atomically; the managers that had not
        enough any more (nothing is taken from them)."""
        table = Manager.__table__  # type: ignore[attr-defined]
        stmt = (
            update(table)
            .where(
                table.c.id == bindparam("manager", type_=table.c.id.type),
                table.c.open_assignments + bindparam("slots") <= table.c.max_open_assignments,
            )
            .values(open_assignments=table.c.open_assignments + bindparam("slots"),
                    last_assigned_at=self.now)
        )
        params = [{"manager": m, "slots": k} for m, k in sorted(slots.items())]  # lock order
        if not params:
            return set()
        connection = self.session.connection()
        try:
            with self.session.begin_nested():
                if connection.execute(stmt, params).rowcount != len(params):
                    raise _SlotLost
            return set()
        except _SlotLost:
            pass
        lost = set()
        for param in params:  # a concurrent request took a slot: find whose, one by one
            if connection.execute(stmt, param).rowcount != 1:
                lost.add(param["manager"])
        return lost


def assignment_payload(assignment: Any, incident: Incident) -> dict[str, Any]:
    """An outbox payload: the assignment's dispatch facts, never contact or personal reasons."""
    get = assignment.get if isinstance(assignment, dict) else (
        lambda name: getattr(assignment, name))
    return {
        "assignment": {
            "id": str(get("id")),
            "incident_id": str(get("incident_id")),
            "manager_id": str(get("manager_id")),
            "role": str(get("role")),
            "status": str(get("status")),
            "offered_at": _iso(get("offered_at")),
            "responded_at": _iso(get("responded_at")),
            "expires_at": _iso(get("expires_at")),
            "score": get("score"),
        },
        "incident": {
            "id": str(incident.id),
            "reference": incident.reference,
            "status": str(incident.status),
        },
    }


class _SlotLost(Exception):
    """A planned manager's slot was taken meanwhile: the incident's offers are rolled back."""


def _valid(holding: CompetenceHolding, today: date) -> bool:
    return competence_valid(holding, today)

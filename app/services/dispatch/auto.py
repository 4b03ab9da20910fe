"""Batch auto-dispatch (DESIGN §2 ``POST /dispatch/auto``): choose the incidents, plan them with
the optimal solver (:mod:`~app.services.dispatch.batch_planner`, :mod:`~app.services.dispatch.batch`),
write the plan (:mod:`~app.services.dispatch.batch_writer`) and tell coordinators what could not be
dispatched."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlmodel import Session

from app.core.errors import Unprocessable
from app.core.runtime import collector_paused
from app.core.security import Principal
from app.models.assignment import AssignmentRole
from app.models.assignment_schemas import (
    AssignmentPublic,
    AutoDispatchRequest,
    AutoDispatchResult,
    PlannedAssignmentPublic,
    ReasonPublic,
    UnassignedIncident,
)
from app.models.incident import Incident, IncidentStatus
from app.models.notification import NotificationKind
from app.services import notifications
from app.services.dispatch.batch_planner import BatchPlanner
from app.services.dispatch.batch_writer import write_plan
from app.services.dispatch.offers import reasons_of

if TYPE_CHECKING:
    from app.services.dispatch.service import DispatchService

S = IncidentStatus


def auto_dispatch(
    service: DispatchService, body: AutoDispatchRequest, principal: Principal
) -> AutoDispatchResult:
    """Plan the triaged (or given) incidents optimally; unless a dry run, write the plan and tell
    coordinators what could not be dispatched."""
    with collector_paused():  # ~10⁵ objects alive until the end: app.core.runtime
        return _auto_dispatch(service, body, principal)


def _auto_dispatch(
    service: DispatchService, body: AutoDispatchRequest, principal: Principal
) -> AutoDispatchResult:
    lock = not body.dry_run
    if body.incident_ids is not None:
        wanted = list(dict.fromkeys(body.incident_ids))
        found = {i.id: i for i in service.repo.incidents(wanted, for_update=lock)}
        unknown = [n for n, i in enumerate(body.incident_ids) if i not in found]
        if unknown:
            raise Unprocessable(
                f"{len(unknown)} unknown incident id(s).",
                errors=[
                    {
                        "loc": ["body", "incident_ids", n],
                        "msg": "unknown incident",
                        "type": "unknown_reference",
                    }
                    for n in unknown
                ],
            )
        incidents = [found[i] for i in wanted]
    else:
        incidents = service.repo.triaged_incidents(for_update=lock)
    unassigned: list[UnassignedIncident] = []
    eligible: list[Incident] = []
    for incident in incidents:
        if incident.status != S.triaged:
            unassigned.append(UnassignedIncident(incident_id=incident.id, reason="not_triaged"))
        elif service.above_volunteer_level(incident):
            unassigned.append(
                UnassignedIncident(
                    incident_id=incident.id, reason="escalation_above_volunteer_level"
                )
            )
        else:
            eligible.append(incident)
    planner = BatchPlanner(service, eligible)
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
                reasons=[
                    ReasonPublic(**reason)
                    for reason in reasons_of(planner.chosen[p.incident_id][p.manager_id])
                ],
            )
            for p in plan.assignments
        ]
        total = sum(p.score for p in plan.assignments)
    else:
        made, failed = write_plan(planner, plan, principal)
        unassigned.extend(UnassignedIncident(incident_id=i, reason="no_candidate") for i in failed)
        _tell_unassigned(service.session, incidents, unassigned)
        items = [
            AssignmentPublic.model_validate(
                {**row, "manager_display_name": planner.names.get(row["manager_id"])}
            )
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


#: Which coordinator notification an unassigned reason gives.
UNASSIGNED_KINDS = {
    "no_candidate": NotificationKind.no_candidate,
    "no_tandem_partner": NotificationKind.tandem_slot_open,
    "escalation_above_volunteer_level": NotificationKind.coordinator_pick_required,
}


def _tell_unassigned(
    session: Session, incidents: Sequence[Incident], unassigned: Sequence[UnassignedIncident]
) -> None:
    """Coordinators hear of incidents a batch run could not dispatch — once per incident
    version, so a batch repeated every few minutes does not repeat the mail."""
    by_id = {i.id: i for i in incidents}
    for item in unassigned:
        kind = UNASSIGNED_KINDS.get(item.reason)
        incident = by_id.get(item.incident_id)
        if kind is not None and incident is not None:
            notifications.tell_coordinators(
                session,
                kind,
                incident,
                dedupe=f"{kind.value}:{incident.id}:v{incident.version}",
            )

"""Manager capacity as a database guarantee.

``manager.open_assignments`` counts a manager's offered + accepted assignments. It changes only by
the conditional UPDATEs below, which are atomic on both databases (PostgreSQL takes the row lock and
re-checks the condition; SQLite serialises writers): a manager's open count can never exceed
``max_open_assignments``, however many coordinators dispatch at once.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import update
from sqlmodel import Session

from app.core.metrics import count_offer
from app.models.assignment import OPEN_ASSIGNMENT_STATUSES, Assignment, AssignmentStatus
from app.models.manager import Manager


def reserve_slot(session: Session, manager_id: uuid.UUID, now: datetime) -> bool:
    """Take one of the manager's free slots; ``False`` when the manager is at capacity."""
    result = session.execute(
        update(Manager)
        .where(
            Manager.id == manager_id,
            Manager.open_assignments < Manager.max_open_assignments,
        )
        .values(open_assignments=Manager.open_assignments + 1, last_assigned_at=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def release_slot(session: Session, manager_id: uuid.UUID) -> None:
    session.execute(
        update(Manager)
        .where(Manager.id == manager_id, Manager.open_assignments > 0)
        .values(open_assignments=Manager.open_assignments - 1)
        .execution_options(synchronize_session=False)
    )


def end_assignment(
    session: Session,
    assignment: Assignment,
    status: AssignmentStatus,
    now: datetime,
    *,
    reason: str | None = None,
) -> bool:
    """Move an open assignment to a final status and free its slot. ``False`` if not open."""
    if assignment.status not in OPEN_ASSIGNMENT_STATUSES:
        return False
    was_offered = assignment.status == AssignmentStatus.offered
    assignment.status = status
    assignment.ended_at = now
    if was_offered and status in (AssignmentStatus.declined, AssignmentStatus.expired):
        assignment.responded_at = now if status == AssignmentStatus.declined else None
    if status == AssignmentStatus.withdrawn:
        assignment.withdraw_reason = reason
    elif status == AssignmentStatus.declined:
        assignment.decline_reason = reason
    assignment.version += 1
    assignment.updated_at = now
    session.add(assignment)
    release_slot(session, assignment.manager_id)
    count_offer(session, status)  # Prometheus: kokoma_dispatch_offers_total{outcome}
    if status == AssignmentStatus.withdrawn:
        from app.services.notifications import offer_withdrawn

        offer_withdrawn(session, assignment, was_offered)
    return True

"""Manager capacity: the rule that a manager is never overbooked lives here, and only here.

``manager.open_assignments`` counts a manager's offered + accepted assignments. It changes only by
the conditional UPDATEs of this module — :func:`reserve_slot` for one offer, :func:`reserve_slots`
for a batch, :func:`release_slot` when an open assignment ends — which are atomic on both
databases (PostgreSQL takes the row lock and re-checks the condition; SQLite serialises writers):
a manager's open count can never exceed ``max_open_assignments``, however many coordinators
dispatch at once. The database backs the rule with the CHECK constraint
``ck_manager_open_within_capacity`` (``0 <= open_assignments <= max_open_assignments``).

Lock order. A unit of work locks its incident row(s) first, then manager rows in ascending id
order, so that two transactions moving slots between the same managers wait for each other
instead of deadlocking: :func:`reserve_slots` takes its managers sorted, and a unit of work that
gives slots back and then offers a freed slot (a withdrawal, a decline, an expiry) collects the
slots in :class:`FreedSlots`, which releases them in one id-ordered pass with the reservation.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import ARRAY, Connection, Integer, any_, bindparam, select, update
from sqlmodel import Session

from app.core.db import affected_rows
from app.core.metrics import count_offer
from app.models.assignment import OPEN_ASSIGNMENT_STATUSES, Assignment, AssignmentStatus
from app.models.base import table_of
from app.models.manager import Manager
from app.repositories.bulk import unnest_rows

_TABLE = table_of(Manager)


def _reserve_statement(now: datetime) -> Any:
    """Take ``:slots`` free slots of manager ``:manager`` if (and only if) they all fit."""
    return (
        update(_TABLE)
        .where(
            _TABLE.c.id == bindparam("manager", type_=_TABLE.c.id.type),
            _TABLE.c.open_assignments + bindparam("slots") <= _TABLE.c.max_open_assignments,
        )
        .values(
            open_assignments=_TABLE.c.open_assignments + bindparam("slots"), last_assigned_at=now
        )
    )


_RELEASE = (
    update(_TABLE)
    .where(
        _TABLE.c.id == bindparam("manager", type_=_TABLE.c.id.type), _TABLE.c.open_assignments > 0
    )
    .values(open_assignments=_TABLE.c.open_assignments - 1)
)


def reserve_slot(session: Session, manager_id: uuid.UUID, now: datetime) -> bool:
    """Take one of the manager's free slots; ``False`` when the manager is at capacity."""
    result = session.execute(_reserve_statement(now), {"manager": manager_id, "slots": 1})
    return affected_rows(result) == 1


def reserve_slots(
    session: Session, slots: Mapping[uuid.UUID, int], now: datetime
) -> set[uuid.UUID]:
    """Take ``slots[m]`` free slots of each manager atomically, in id order; the managers that had
    not enough any more (nothing is taken from them)."""
    params = [{"manager": m, "slots": k} for m, k in sorted(slots.items())]  # lock order
    if not params:
        return set()
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        return _reserve_slots_at_once(connection, params, now)
    stmt = _reserve_statement(now)
    try:
        # the savepoint is begun by the session's next connection(): a statement on a connection
        # taken before begin_nested() would run outside it, and not be rolled back
        with session.begin_nested():
            if session.connection().execute(stmt, params).rowcount != len(params):
                raise _SlotLost
        return set()
    except _SlotLost:
        pass
    lost = set()
    for param in params:  # a concurrent request took a slot: find whose, one by one
        if connection.execute(stmt, param).rowcount != 1:
            lost.add(param["manager"])
    return lost


_LOCK_MANAGERS = (
    select(_TABLE.c.id)
    .where(_TABLE.c.id == any_(bindparam("managers", type_=ARRAY(_TABLE.c.id.type))))
    .order_by(_TABLE.c.id)
    .with_for_update()
)


def _reserve_slots_at_once(
    connection: Connection, params: list[dict[str, Any]], now: datetime
) -> set[uuid.UUID]:
    """:func:`reserve_slots` on PostgreSQL in two statements instead of one per manager.

    The managers' rows are locked first by one ``SELECT … ORDER BY id FOR UPDATE`` (the rows are
    locked in the order of the sort: the lock order above); then one ``UPDATE … FROM unnest``
    takes the slots of those that still have them all — the same condition as
    :func:`_reserve_statement`, so a manager that had not enough is left as it was — and returns
    whose it took."""
    managers = [p["manager"] for p in params]
    connection.execute(_LOCK_MANAGERS, {"managers": managers})
    wanted = unnest_rows(
        "wanted", ("id", "managers", _TABLE.c.id.type), ("slots", "slots", Integer)
    )
    taken = connection.execute(
        update(_TABLE)
        .where(
            _TABLE.c.id == wanted.c.id,
            _TABLE.c.open_assignments + wanted.c.slots <= _TABLE.c.max_open_assignments,
        )
        .values(open_assignments=_TABLE.c.open_assignments + wanted.c.slots, last_assigned_at=now)
        .returning(_TABLE.c.id),
        {"managers": managers, "slots": [p["slots"] for p in params]},
    )
    return set(managers) - set(taken.scalars())


class _SlotLost(Exception):
    """A planned manager's slot was taken meanwhile: the batch finds out whose, one by one."""


def release_slot(session: Session, manager_id: uuid.UUID) -> None:
    session.execute(_RELEASE, {"manager": manager_id})


class FreedSlots:
    """Slots a unit of work gives back, released in manager id order together with the slot it
    reserves next (see *Lock order* above); :meth:`release` gives back what is left."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.pending: list[uuid.UUID] = []

    def add(self, manager_id: uuid.UUID) -> None:
        self.pending.append(manager_id)

    def reserve(self, manager_id: uuid.UUID, now: datetime) -> bool:
        """:func:`reserve_slot`, releasing the pending slots of lower ids first and, once it
        succeeded, those of higher ids (a failed reservation leaves them pending)."""
        self.pending.sort()
        lower = [m for m in self.pending if m < manager_id]
        self.pending = [m for m in self.pending if m >= manager_id]
        for freed in lower:
            release_slot(self.session, freed)
        if not reserve_slot(self.session, manager_id, now):
            return False
        self.release()
        return True

    def release(self) -> None:
        for freed in sorted(self.pending):
            release_slot(self.session, freed)
        self.pending = []


def end_assignment(
    session: Session,
    assignment: Assignment,
    status: AssignmentStatus,
    now: datetime,
    *,
    reason: str | None = None,
    freed: FreedSlots | None = None,
) -> bool:
    """Move an open assignment to a final status and free its slot. ``False`` if not open.

    With ``freed`` the slot is given back later, in lock order (:class:`FreedSlots`)."""
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
    if freed is None:
        release_slot(session, assignment.manager_id)
    else:
        freed.add(assignment.manager_id)
    count_offer(session, status)  # Prometheus: kokoma_dispatch_offers_total{outcome}
    if status == AssignmentStatus.withdrawn:
        from app.services.notifications import offer_withdrawn

        offer_withdrawn(session, assignment, was_offered)
    return True

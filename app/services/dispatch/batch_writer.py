"""Batch auto-dispatch, writing: the planned offers in bulk, set-based.

The same rows as one :meth:`DispatchService._offer
<app.services.dispatch.service.DispatchService._offer>` per slot plus the ``triaged →
dispatched`` :func:`~app.services.incidents.change_status` — assignment, timeline events, audit
entries, outbox events — built by the same builders (:mod:`app.services.dispatch.offers`,
:func:`app.services.timeline.entry_fields`, :func:`app.services.audit.entry`). The append-only
rows go in one bulk write per table (:func:`app.repositories.bulk.bulk_writer`: ``COPY`` on
PostgreSQL, one ``executemany`` on SQLite), run on a database thread while the next table's rows
are built (:class:`_DatabaseThread`). Manager slots are taken by
:func:`app.services.dispatch.slots.reserve_slots`; the incidents are locked by the caller.
"""

from __future__ import annotations

import contextvars
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, bindparam, update
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session

from app.core.metrics import count_offer
from app.core.security import Principal
from app.models.assignment import Assignment, AssignmentStatus
from app.models.base import new_ordered_ids, table_of
from app.models.incident import Incident, IncidentEvent, IncidentStatus
from app.models.outbox import OutboxEvent
from app.models.system import AuditEvent
from app.repositories.bulk import bulk_writer, unnest_rows
from app.services import audit, notifications
from app.services.dispatch.batch import BatchPlan, PlannedAssignment
from app.services.dispatch.batch_planner import BatchPlanner
from app.services.dispatch.offers import (
    OFFER_AUDIT_FIELDS,
    assignment_payload,
    offer_row,
    offered_event_data,
)
from app.services.dispatch.slots import release_slot, reserve_slots
from app.services.incidents import IncidentService
from app.services.timeline import entry_fields

S = IncidentStatus


def write_plan(
    planner: BatchPlanner, plan: BatchPlan, principal: Principal
) -> tuple[list[dict[str, Any]], list[uuid.UUID]]:
    """Offer the planned slots in bulk; an incident whose slots cannot all be reserved (a
    manager's slot taken meanwhile by a concurrent request) gets none.

    Returns the assignment rows written and the incidents that got none for that reason.
    """
    session = planner.session
    now = planner.now
    ttl_hours = planner.service.settings.offer_ttl_hours
    planned_by_incident: dict[uuid.UUID, list[PlannedAssignment]] = defaultdict(list)
    for planned in plan.assignments:
        planned_by_incident[planned.incident_id].append(planned)
    lost = reserve_slots(session, Counter(p.manager_id for p in plan.assignments), now)
    failed = [i for i, ps in planned_by_incident.items() if any(p.manager_id in lost for p in ps)]
    for incident_id in failed:  # give back the slots its other managers got
        for p in planned_by_incident.pop(incident_id):
            if p.manager_id not in lost:
                release_slot(session, p.manager_id)
    if not planned_by_incident:
        return [], failed

    incidents = {i.id: i for i in planner.incidents}
    # One entry of each kind from the shared builders; rows differ only in ids and data.
    offered_event = entry_fields("assignment_offered", principal, at=now)
    status_event = entry_fields(
        "status_changed", principal, from_status=S.triaged, to_status=S.dispatched, at=now
    )
    offer_audit = audit.entry(principal, "offer", "assignment", "", OFFER_AUDIT_FIELDS, at=now)
    status_audit = audit.entry(principal, "status", "incident", "", ["status"], at=now)

    with _DatabaseThread(session) as database:
        offers: dict[uuid.UUID, list[dict[str, Any]]] = {}
        incident_updates: list[dict[str, Any]] = []
        for incident_id, planned in planned_by_incident.items():
            offers[incident_id] = [
                offer_row(
                    incident_id,
                    planner.chosen[incident_id][p.manager_id],
                    p.role,
                    principal,
                    now=now,
                    ttl_hours=ttl_hours,
                )
                for p in planned
            ]
            # triaged → dispatched, exactly as change_status records it
            incident = incidents[incident_id]
            set_committed_value(incident, "status", S.dispatched)
            set_committed_value(incident, "status_changed_at", now)
            set_committed_value(incident, "version", incident.version + 1)
            set_committed_value(incident, "updated_at", now)
            incident_updates.append({"incident": incident_id, "new_version": incident.version})
        database.run(lambda: _mark_dispatched(session, incident_updates, now))
        assignments = [row for rows in offers.values() for row in rows]
        database.run(bulk_writer(session, Assignment, assignments))

        events: list[dict[str, Any]] = []
        audits: list[dict[str, Any]] = []
        # time-ordered ids, as a single offer's rows get them (an incident's timeline entries of
        # one batch share their instant and list in the order written): per offer and per
        # incident one timeline entry, one audit entry and one outbox event
        next_id = iter(new_ordered_ids(3 * (len(assignments) + len(offers)))).__next__
        for incident_id, rows in offers.items():
            for row in rows:
                events.append(
                    {
                        **offered_event,
                        "id": next_id(),
                        "incident_id": incident_id,
                        "data": offered_event_data(row, auto=True),
                    }
                )
                audits.append({**offer_audit, "id": next_id(), "resource_id": str(row["id"])})
            events.append(
                {
                    **status_event,
                    "id": next_id(),
                    "incident_id": incident_id,
                    "note": f"{rows[0]['role']} offered",
                    "data": {"assignment_id": str(rows[0]["id"])},
                }
            )
            audits.append({**status_audit, "id": next_id(), "resource_id": str(incident_id)})
        database.run(bulk_writer(session, IncidentEvent, events))
        database.run(bulk_writer(session, AuditEvent, audits))

        outbox_rows: list[dict[str, Any]] = []
        for incident_id, rows in offers.items():
            incident = incidents[incident_id]
            view = IncidentService._public(
                incident,
                sorted(planner.facts[incident_id].required_competences),
                with_reporter=False,
            ).model_dump(mode="json")
            outbox_rows.append(
                {
                    "id": next_id(),
                    "event_type": "incident.status_changed",
                    "payload": {
                        "incident": view,
                        "from_status": S.triaged,
                        "to_status": S.dispatched,
                    },
                    "organisation_id": incident.organisation_id,
                    "created_at": now,
                    "fanned_out_at": None,
                }
            )
            for row in rows:
                outbox_rows.append(
                    {
                        "id": next_id(),
                        "event_type": "assignment.offered",
                        "payload": assignment_payload(row, incident),
                        "organisation_id": incident.organisation_id,
                        "created_at": now,
                        "fanned_out_at": None,
                    }
                )
        database.run(bulk_writer(session, OutboxEvent, outbox_rows))

    for _ in assignments:
        count_offer(session, AssignmentStatus.offered)
    notifications.offers_made(session, assignments, incidents)
    return assignments, failed


def _mark_dispatched(session: Session, updates: list[dict[str, Any]], now: datetime) -> None:
    """``triaged → dispatched`` for the batch's incidents (locked by the caller), each with its
    new version. On PostgreSQL one statement over ``unnest`` of the ids and versions: the tally's
    statement trigger runs once, not once per incident."""
    table = table_of(Incident)
    if session.get_bind().dialect.name == "postgresql":
        marks = unnest_rows(
            "v", ("id", "incidents", table.c.id.type), ("version", "versions", Integer)
        )
        session.connection().execute(
            update(table)
            .where(table.c.id == marks.c.id)
            .values(
                status=S.dispatched,
                status_changed_at=now,
                updated_at=now,
                version=marks.c.version,
            ),
            {
                "incidents": [u["incident"] for u in updates],
                "versions": [u["new_version"] for u in updates],
            },
        )
        return
    session.connection().execute(
        update(table)
        .where(table.c.id == bindparam("incident", type_=table.c.id.type))
        .values(
            status=S.dispatched,
            status_changed_at=now,
            updated_at=now,
            version=bindparam("new_version"),
        ),
        updates,
    )


class _DatabaseThread:
    """The batch's writes run in order on one thread of their own while this thread builds the
    next table's rows: the driver releases the GIL while it waits for the server, so the
    database's work (COPY into indexed tables, the incident UPDATE and its trigger) overlaps
    Python's (as the imports' :class:`app.services.imports.pipeline.Pipeline`). The session is
    used only by that thread until the block ends; the block ends once every write has run and
    raises the first write's error, if any."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kokoma-dispatch")
        self._writes: list[Future[None]] = []

    def run(self, write: Callable[[], None] | None) -> None:
        if write is not None:
            self._writes.append(self._executor.submit(contextvars.copy_context().run, write))

    def __enter__(self) -> _DatabaseThread:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._executor.shutdown(wait=True)
        for write in self._writes:  # a later write fails too once one has: report the first
            write.result()

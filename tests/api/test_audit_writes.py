"""The access entries of the event-loop read path (:mod:`app.repositories.audit_writes`: one
``executemany`` on SQLite, one ``INSERT … SELECT unnest(…)`` per batch on PostgreSQL) are stored
exactly as the ORM path stores the same rows: every column, for key and signed-in principals,
``None`` values, several field lists in one batch."""

from __future__ import annotations

import uuid
from typing import Any

from sqlmodel import col, select

from app.core.db import session_scope
from app.core.security import Principal, PrincipalKind
from app.models.system import AuditEvent, Role
from app.repositories import audit_writes
from app.services.privacy.access_log import access_rows


def _stored(ids: list[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any]]:
    with session_scope() as session:
        events = session.exec(select(AuditEvent).where(col(AuditEvent.id).in_(ids))).all()
        return {e.id: e.model_dump() for e in events}


def test_loop_path_entries_are_stored_as_given(client: Any) -> None:
    reads = client.app.state.reads
    key = Principal(key_id=uuid.uuid4(), role=Role.admin, name="Leitstelle")
    person = Principal(
        key_id=None,
        role=Role.coordinator,
        name="Erika Muster",
        kind=PrincipalKind.oidc,
        oidc_subject="a1b2",
    )
    rows = [
        *access_rows(
            key,
            "incident",
            [
                (uuid.uuid4(), ["reporter.name"]),
                (uuid.uuid4(), ["reporter.contact", "reporter.name"]),
            ],
        ),
        *access_rows(person, "manager", [(uuid.uuid4(), ["email"])]),
        *access_rows(
            Principal(key_id=None, role=Role.admin), "incident", [("x-1", ["reporter.name"])]
        ),
    ]
    client.portal.call(audit_writes.write, reads, rows)

    stored = _stored([row["id"] for row in rows])
    assert len(stored) == len(rows) == 4
    for row in rows:
        assert stored[row["id"]] == {**row, "kind": "access"}, row

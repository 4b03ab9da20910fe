"""Assignment reads on the event loop (:mod:`app.core.reads`): one statement per request — the
assignment with its manager's display name (and, for the partner's scope, its incident's
organisation) — and rows turned into the API's JSON in one pass.

The JSON is the same as :class:`app.models.assignment_schemas.AssignmentPublic` serialised by
pydantic (field order, RFC 3339 timestamps with ``Z``, reasons with float values); tests compare
both paths.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson

from app.core.reads import Reads, ReadStatement, time_text, uuid_text
from app.repositories.dispatch import AssignmentFilter

_COLUMNS = (
    "a.id, a.incident_id, a.manager_id, m.display_name, a.role, a.status, a.offered_at, "
    "a.responded_at, a.expires_at, a.ended_at, a.score, a.reasons, a.decline_reason, "
    "a.withdraw_reason, a.outcome, a.version, a.created_at, a.updated_at"
)
# Column positions in _COLUMNS (and the incident's organisation after them in _BY_ID).
ID, MANAGER_ID, VERSION, CREATED_AT, ORGANISATION_ID = 0, 2, 15, 16, 18

_BY_ID = ReadStatement(
    f"SELECT {_COLUMNS}, i.organisation_id FROM assignment a "  # noqa: S608 (constant text)
    "LEFT JOIN manager m ON m.id = a.manager_id "
    "LEFT JOIN incident i ON i.id = a.incident_id WHERE a.id = :id"
)


_LIST_CACHE: dict[tuple[object, ...], ReadStatement] = {}


def _list_statement(flt: AssignmentFilter, after: bool) -> ReadStatement:
    shape = (
        flt.scope_manager_id is not None,
        flt.scope_organisation_id is not None,
        flt.manager_id is not None,
        flt.incident_id is not None,
        len(flt.statuses),
        after,
    )
    statement = _LIST_CACHE.get(shape)
    if statement is None:
        # The manager last (SQLite: the right side of a CROSS JOIN is an inner loop; PostgreSQL
        # plans it as the inner join it is): without statistics on assignments, SQLite would
        # otherwise scan the whole roster and probe each manager's assignments, then sort.
        sql = f"SELECT {_COLUMNS} FROM assignment a"  # noqa: S608 (constant fragments only)
        where: list[str] = ["m.id = a.manager_id"]
        if flt.scope_manager_id is not None:
            where.append("a.manager_id = :scope_manager_id")
        if flt.scope_organisation_id is not None:
            sql += " JOIN incident i ON i.id = a.incident_id"
            where.append("i.organisation_id = :scope_organisation_id")
        sql += " CROSS JOIN manager m"
        if flt.manager_id is not None:
            where.append("a.manager_id = :manager_id")
        if flt.incident_id is not None:
            where.append("a.incident_id = :incident_id")
        if flt.statuses:
            where.append(
                "a.status IN (" + ", ".join(f":status{n}" for n in range(len(flt.statuses))) + ")"
            )
        if after:  # keyset, as app.core.pagination.keyset writes it (descending)
            where.append(
                "(a.created_at < :after_at OR (a.created_at = :after_at AND a.id < :after_id))"
            )
        sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY a.created_at DESC, a.id DESC LIMIT :limit"
        statement = _LIST_CACHE[shape] = ReadStatement(sql)
    return statement


class AssignmentReads:
    def __init__(self, reads: Reads) -> None:
        self.reads = reads

    async def row(self, assignment_id: uuid.UUID) -> tuple[Any, ...] | None:
        rows = await self.reads.all(_BY_ID, {"id": self.reads.bind_uuid(assignment_id)})
        return rows[0] if rows else None

    async def page(
        self, flt: AssignmentFilter, limit: int, after: tuple[datetime, uuid.UUID] | None
    ) -> list[tuple[Any, ...]]:
        """Up to ``limit + 1`` rows, newest first (the extra row tells that a page follows)."""
        reads = self.reads
        params: dict[str, Any] = {"limit": limit + 1}
        for name in ("scope_manager_id", "scope_organisation_id", "manager_id", "incident_id"):
            value = getattr(flt, name)
            if value is not None:
                params[name] = reads.bind_uuid(value)
        for n, status in enumerate(flt.statuses):
            params[f"status{n}"] = str(status)
        if after is not None:
            params["after_at"] = reads.bind_time(after[0])
            params["after_id"] = reads.bind_uuid(after[1])
        return await reads.all(_list_statement(flt, after is not None), params)


def _reasons(value: Any) -> list[dict[str, Any]]:
    """The stored reasons as :class:`~app.models.assignment_schemas.ReasonPublic` writes them."""
    if value is None:
        return []
    reasons = orjson.loads(value) if isinstance(value, str | bytes) else value
    return [
        {
            "factor": r["factor"],
            "value": float(r["value"]),
            "weight": float(r["weight"]),
            "detail": r["detail"],
        }
        for r in reasons
    ]


def assignment_json(row: Sequence[Any], partner: bool) -> dict[str, Any]:
    """One row as the API's assignment object (decline and withdraw reasons hidden from
    partners, as :mod:`app.services.dispatch.views` does)."""
    (
        id_,
        incident_id,
        manager_id,
        display_name,
        role,
        status,
        offered_at,
        responded_at,
        expires_at,
        ended_at,
        score,
        reasons,
        decline_reason,
        withdraw_reason,
        outcome,
        version,
        created_at,
        updated_at,
    ) = row[:18]
    return {
        "id": uuid_text(id_),
        "incident_id": uuid_text(incident_id),
        "manager_id": uuid_text(manager_id),
        "manager_display_name": display_name,
        "role": role,
        "status": status,
        "offered_at": time_text(offered_at),
        "responded_at": time_text(responded_at),
        "expires_at": time_text(expires_at),
        "ended_at": time_text(ended_at),
        "score": None if score is None else float(score),
        "reasons": _reasons(reasons),
        "decline_reason": None if partner else decline_reason,
        "withdraw_reason": None if partner else withdraw_reason,
        "outcome": outcome,
        "version": version,
        "created_at": time_text(created_at),
        "updated_at": time_text(updated_at),
    }

"""Assignment reads on the event loop: get by id and the filtered list, for every role that may
read assignments — each role's visibility is a property of the row (staff: every assignment;
manager: its own; partner: those on its organisation's incidents).

The same rules as :mod:`app.services.dispatch.views` — who sees which assignment, 404 without
leaking existence, decline and withdraw reasons hidden from partners — on the one-statement path
of :mod:`app.repositories.assignment_reads`.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime
from typing import Any

import orjson

from app.core.errors import NotFound
from app.core.pagination import PageParams
from app.core.reads import Reads, time_text, time_value, uuid_text
from app.core.security import Principal
from app.models.system import Role
from app.repositories.assignment_reads import (
    CREATED_AT,
    ID,
    MANAGER_ID,
    ORGANISATION_ID,
    VERSION,
    AssignmentReads,
    assignment_json,
)
from app.repositories.dispatch import AssignmentFilter
from app.services.read_cursors import after, next_cursor


def _sees(principal: Principal, row: tuple[Any, ...]) -> bool:
    if principal.is_staff:
        return True
    if principal.role == Role.manager:
        return principal.manager_id is not None and (
            uuid.UUID(uuid_text(row[MANAGER_ID])) == principal.manager_id
        )
    if principal.role == Role.partner:
        organisation_id = row[ORGANISATION_ID]
        return (
            principal.organisation_id is not None
            and organisation_id is not None
            and uuid.UUID(uuid_text(organisation_id)) == principal.organisation_id
        )
    return False


async def get(reads: Reads, assignment_id: uuid.UUID, principal: Principal) -> tuple[bytes, int]:
    """The assignment's JSON and its version (for the ETag)."""
    row = await AssignmentReads(reads).row(assignment_id)
    if row is None or not _sees(principal, row):
        raise NotFound(f"No assignment {assignment_id}.")
    return orjson.dumps(assignment_json(row, principal.role == Role.partner)), row[VERSION]


def _key(row: tuple[Any, ...]) -> list[Any]:
    return [time_value(time_text(row[CREATED_AT]) or ""), uuid.UUID(uuid_text(row[ID]))]


async def page(
    reads: Reads, flt: AssignmentFilter, params: PageParams, principal: Principal
) -> bytes:
    """One page of ``{"items": [...], "next_cursor": ...}``, newest first."""
    if principal.role == Role.manager:
        flt = dataclasses.replace(flt, scope_manager_id=principal.manager_id or uuid.UUID(int=0))
    elif principal.role == Role.partner:
        flt = dataclasses.replace(
            flt, scope_organisation_id=principal.organisation_id or uuid.UUID(int=0)
        )
    key = after(params.cursor, datetime, uuid.UUID)
    rows = await AssignmentReads(reads).page(flt, params.limit, (key[0], key[1]) if key else None)
    rows, cursor = next_cursor(rows, params.limit, _key)
    partner = principal.role == Role.partner
    return orjson.dumps(
        {"items": [assignment_json(r, partner) for r in rows], "next_cursor": cursor}
    )

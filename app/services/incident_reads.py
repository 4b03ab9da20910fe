"""Incident reads on the event loop: get by id and the filtered list, for the roles whose
visibility is a property of the row itself (staff: every incident; partner: its organisation's).

The same rules as :class:`app.services.incidents.IncidentService` — who sees which incident,
who sees the reporter, 404 without leaking existence, one ``access`` entry per returned incident
whose reporter name or contact the caller sees, durable before the response — on the one-
statement path of :mod:`app.repositories.incident_reads`. Managers (visibility by assignment)
and text search (``q``) stay on the unit-of-work path: :func:`serves` says which requests come
here.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from app.core.errors import NotFound
from app.core.pagination import PageParams, decode_cursor, encode_cursor, invalid_cursor
from app.core.reads import Reads, uuid_text
from app.core.security import Principal
from app.models.system import Role
from app.repositories.incident_reads import (
    HAS_REPORTER,
    ID,
    ORGANISATION_ID,
    REPORTER_CONTACT,
    REPORTER_NAME,
    VERSION,
    IncidentReads,
    ListFilter,
    cursor_key,
    dumps,
    incident_json,
)
from app.repositories.incidents import IncidentFilter
from app.services.privacy.access_writer import record_reporter_reads


def serves(principal: Principal, flt: IncidentFilter | None = None) -> bool:
    """Whether this path answers the request (else the unit-of-work path does)."""
    if not (principal.is_staff or principal.role == Role.partner):
        return False
    return flt is None or not flt.q


def _sees(principal: Principal, row: tuple[Any, ...]) -> bool:
    """Row visibility and reporter visibility coincide for staff and partners."""
    if principal.is_staff:
        return True
    organisation_id = row[ORGANISATION_ID]
    return (
        principal.organisation_id is not None
        and organisation_id is not None
        and uuid.UUID(organisation_id) == principal.organisation_id
    )


def _reporter_reads(rows: list[tuple[Any, ...]]) -> list[tuple[str, str | None, str | None]]:
    return [
        (uuid_text(r[ID]) or "", r[REPORTER_NAME], r[REPORTER_CONTACT])
        for r in rows
        if r[HAS_REPORTER]
    ]


async def get(reads: Reads, incident_id: uuid.UUID, principal: Principal) -> tuple[bytes, int]:
    """The incident's JSON and its version (for the ETag)."""
    row = await IncidentReads(reads).row(incident_id)
    if row is None or not _sees(principal, row):
        raise NotFound(f"No incident {incident_id}.")
    await record_reporter_reads(reads, principal, _reporter_reads([row]))
    return dumps(incident_json(row, True)), row[VERSION]


async def page(
    reads: Reads, flt: IncidentFilter, params: PageParams, principal: Principal
) -> bytes:
    """One page of ``{"items": [...], "next_cursor": ...}``, newest first."""
    after: tuple[Any, uuid.UUID] | None = None
    if params.cursor:
        at, last_id = decode_cursor(params.cursor, 2)
        if not isinstance(at, datetime) or not isinstance(last_id, uuid.UUID):
            raise invalid_cursor()
        after = (at, last_id)
    scoped = ListFilter(
        district=flt.district,
        statuses=tuple(flt.statuses),
        category=flt.category,
        min_escalation=flt.min_escalation,
        reported_after=flt.reported_after,
        reported_before=flt.reported_before,
        organisation_id=flt.organisation_id,
        scope_organisation_id=(
            None if principal.is_staff else principal.organisation_id or uuid.UUID(int=0)
        ),
    )
    rows = await IncidentReads(reads).page(scoped, params.limit, after)
    cursor = None
    if len(rows) > params.limit:
        rows = rows[: params.limit]
        cursor = encode_cursor(cursor_key(rows[-1]))
    await record_reporter_reads(reads, principal, _reporter_reads(rows))
    return dumps({"items": [incident_json(r, True) for r in rows], "next_cursor": cursor})

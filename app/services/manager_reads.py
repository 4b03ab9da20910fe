"""Manager reads on the event loop: a manager by id, the filtered list and a manager's absences,
for every role.

The same rules as :class:`app.services.managers.ManagerService` — partners and viewers get the
redacted view, staff every field, a ``manager`` key every field but the ``email``/``phone`` of
other managers (:mod:`app.services.visibility`); an unknown manager is 404 for every role; one
``access`` entry per returned manager whose e-mail or phone the caller sees, committed before the
response (:func:`app.services.privacy.access_writer.record_manager_contact_reads`); absences:
staff and the manager itself (404 before 403, the cursor checked last) — on the one-statement
path of :mod:`app.repositories.manager_reads`. Every role's rule is a property of the row and
the caller, so no request needs the unit-of-work path here.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from app.core.clock import get_clock
from app.core.config import get_settings
from app.core.errors import BadRequest, Forbidden, NotFound
from app.core.pagination import PageParams, decode_cursor, encode_cursor, invalid_cursor
from app.core.reads import Reads, uuid_text
from app.core.security import Principal
from app.repositories.manager_reads import (
    EMAIL,
    ID,
    PHONE,
    VERSION,
    ListFilter,
    ManagerReads,
    absence_json,
    cursor_key,
    dumps,
    expiry_window,
    manager_json,
)
from app.repositories.managers import ManagerFilter, absence_cursor
from app.services import visibility
from app.services.privacy.access_writer import record_manager_contact_reads


def _sees_contact(principal: Principal, row: tuple[Any, ...]) -> bool:
    return principal.is_staff or (
        principal.manager_id is not None and uuid.UUID(row[ID]) == principal.manager_id
    )


async def _views(
    reads: Reads, principal: Principal, rows: list[tuple[Any, ...]], today: date, redacted: bool
) -> list[dict[str, Any]]:
    """The rows as the caller sees them, their contact reads logged (committed) first."""
    window = expiry_window(today, get_settings().expiring_competence_days)
    contact = [False if redacted else _sees_contact(principal, r) for r in rows]
    await record_manager_contact_reads(
        reads,
        principal,
        [(uuid_text(r[ID]), r[EMAIL], r[PHONE]) for r, c in zip(rows, contact, strict=True) if c],
    )
    return [
        manager_json(r, redacted=redacted, contact=c, window=window)
        for r, c in zip(rows, contact, strict=True)
    ]


async def get(
    reads: Reads, manager_id: uuid.UUID, principal: Principal
) -> tuple[bytes, int | None]:
    """The manager's JSON and, for the full view only, its version (the ETag)."""
    today = get_clock().today()
    redacted = visibility.manager_view_redacted(principal)
    row = await ManagerReads(reads).row(manager_id, today, redacted=redacted)
    if row is None:
        raise NotFound(f"No manager {manager_id}.")
    view = (await _views(reads, principal, [row], today, redacted))[0]
    return dumps(view), None if redacted else row[VERSION]


async def page(reads: Reads, flt: ManagerFilter, params: PageParams, principal: Principal) -> bytes:
    """One page of ``{"items": [...], "next_cursor": ...}`` in (created_at, id) order."""
    after: tuple[Any, uuid.UUID] | None = None
    if params.cursor:
        at, last_id = decode_cursor(params.cursor, 2)
        if not isinstance(at, datetime) or not isinstance(last_id, uuid.UUID):
            raise invalid_cursor()
        after = (at, last_id)
    today = get_clock().today()
    redacted = visibility.manager_view_redacted(principal)
    scoped = ListFilter(
        district=flt.district,
        competences=tuple(flt.competences),
        statuses=tuple(flt.statuses),
        language=flt.language,
        available=flt.available,
    )
    rows = await ManagerReads(reads).page(scoped, today, params.limit, after, redacted=redacted)
    cursor = None
    if len(rows) > params.limit:
        rows = rows[: params.limit]
        cursor = encode_cursor(cursor_key(rows[-1]))
    items = await _views(reads, principal, rows, today, redacted)
    return dumps({"items": items, "next_cursor": cursor})


async def absences(
    reads: Reads, manager_id: uuid.UUID, params: PageParams, principal: Principal
) -> bytes:
    """One page of the manager's absences by (starts_on, id)."""
    after: tuple[date, uuid.UUID] | None = None
    bad_cursor: BadRequest | None = None
    if params.cursor:
        try:
            after = absence_cursor(params.cursor)
        except BadRequest as exc:  # reported after 404 and 403, as the unit-of-work path does
            bad_cursor = exc
    rows = await ManagerReads(reads).absences(manager_id, params.limit, after)
    if not rows:
        raise NotFound(f"No manager {manager_id}.")
    if not principal.is_staff and principal.manager_id != manager_id:
        raise Forbidden("A manager key manages its own absences only.")
    if bad_cursor is not None:
        raise bad_cursor
    rows = [r for r in rows if r[1] is not None]
    cursor = None
    if len(rows) > params.limit:
        rows = rows[: params.limit]
        last = rows[-1]
        cursor = encode_cursor([last[2], uuid.UUID(last[1])])
    return dumps({"items": [absence_json(r) for r in rows], "next_cursor": cursor})

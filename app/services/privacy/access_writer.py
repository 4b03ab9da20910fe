"""The reporter access log of the event-loop read path, written by group commit.

A read that returns reporter data records one ``access`` audit entry per incident whose reporter
name or contact the caller sees (PRIVACY.md; the rows of :func:`access_rows`, as
:func:`log_reporter_access` writes them on the unit-of-work path). On the loop path
(:mod:`app.services.incident_reads`) they go to one
:class:`app.core.group_commit.GroupCommitWriter` per reader (one per app lifespan, so one per
event loop): each request awaits the commit of the batch holding its entries — so no response is
sent without its entry, and a failed commit becomes an error response — while concurrent reads
share one commit.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Sequence
from typing import Any

from app.core.config import get_settings
from app.core.group_commit import GroupCommitWriter
from app.core.reads import Reads
from app.core.security import Principal
from app.repositories import audit_writes
from app.services.privacy.access_log import access_rows, manager_contact_fields, reporter_fields

_writers: weakref.WeakKeyDictionary[Reads, GroupCommitWriter] = weakref.WeakKeyDictionary()


def writer(reads: Reads) -> GroupCommitWriter:
    """The reader's writer (created on first use with the settings of that moment)."""
    found = _writers.get(reads)
    if found is None:
        settings = get_settings()

        async def commit(rows: Sequence[dict[str, Any]]) -> None:
            await audit_writes.write(reads, rows)

        found = _writers[reads] = GroupCommitWriter(
            commit,
            max_rows=settings.access_log_batch_rows,
            max_wait=settings.access_log_batch_wait_ms / 1000,
            name="kokoma-access-log",
        )
    return found


async def close_writer(reads: Reads) -> None:
    """Commit what the reader's writer still holds (app shutdown)."""
    found = _writers.pop(reads, None)
    if found is not None:
        await found.close()


async def record_reporter_reads(
    reads: Reads, principal: Principal, incidents: Iterable[tuple[str, str | None, str | None]]
) -> None:
    """Entries for ``(incident id, reporter name, reporter contact)`` returned with their
    reporter data; returns once they are committed (raises when the commit failed)."""
    rows = access_rows(
        principal,
        "incident",
        [(i, reporter_fields(name, contact)) for i, name, contact in incidents],
    )
    if rows:
        await writer(reads).write(rows)


async def record_manager_contact_reads(
    reads: Reads, principal: Principal, managers: Iterable[tuple[Any, str | None, str | None]]
) -> None:
    """Entries for ``(manager id, email, phone)`` returned with their contact data (as
    ``ManagerService._logged`` writes them); returns once they are committed."""
    rows = access_rows(
        principal,
        "manager",
        [(m, manager_contact_fields(email, phone)) for m, email, phone in managers],
    )
    if rows:
        await writer(reads).write(rows)

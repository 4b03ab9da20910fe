"""The reporter access log of the event-loop read path, written by group commit.

A read that returns reporter data records one ``access`` audit entry per incident whose reporter
name or contact the caller sees (PRIVACY.md; the same rows as
:func:`app.services.privacy.log_reporter_access`). On the loop path these entries go to one
:class:`app.core.group_commit.GroupCommitWriter` per process: each request awaits the commit of
the batch holding its entries, so no response is sent without its entry — and a failed commit
turns into an error response — while concurrent reads share one commit.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import insert

from app.core.clock import get_clock
from app.core.config import get_settings
from app.core.db import WRITE_OPTION, get_engine
from app.core.group_commit import GroupCommitWriter
from app.core.security import Principal
from app.models.base import new_ordered_id
from app.models.system import AuditEvent, AuditKind
from app.services import audit
from app.services.privacy import _SQLITE_ACCESS_WRITER as SQLITE_WRITER_LOCK
from app.services.privacy import reporter_fields

_INSERT = insert(AuditEvent.__table__)  # type: ignore[attr-defined]
_ACCESS = AuditKind.access.value


def commit_batch(rows: Sequence[dict[str, Any]]) -> None:
    """One transaction, one multi-row ``INSERT``, one commit."""
    engine = get_engine()
    if engine.dialect.name == "sqlite":
        with SQLITE_WRITER_LOCK, \
                engine.execution_options(**{WRITE_OPTION: True}).begin() as conn:
            conn.execute(_INSERT, list(rows))
    else:
        with engine.begin() as conn:
            conn.execute(_INSERT, list(rows))


_writer: GroupCommitWriter | None = None
_writer_lock = threading.Lock()


def writer() -> GroupCommitWriter:
    global _writer
    if _writer is None:
        with _writer_lock:
            if _writer is None:
                settings = get_settings()
                _writer = GroupCommitWriter(
                    commit_batch,
                    max_rows=settings.access_log_batch_rows,
                    max_wait=settings.access_log_batch_wait_ms / 1000,
                    name="kokoma-access-log",
                )
    return _writer


def close_writer() -> None:
    """Commit what is queued and stop the writer thread (app shutdown, tests)."""
    global _writer
    with _writer_lock:
        if _writer is not None:
            _writer.close()
            _writer = None


def access_rows(principal: Principal,
                incidents: Iterable[tuple[str, str | None, str | None]]) -> list[dict[str, Any]]:
    now = get_clock().now()
    who = audit.principal_columns(principal)
    rows = []
    for incident_id, name, contact in incidents:
        fields = reporter_fields(name, contact)
        if fields:
            rows.append({
                "id": new_ordered_id(), "at": now, "kind": _ACCESS, **who, "action": "read",
                "resource": "incident", "resource_id": incident_id,
                "fields": sorted(set(fields)),
            })
    return rows


async def record_reporter_reads(
    principal: Principal, incidents: Iterable[tuple[str, str | None, str | None]]
) -> None:
    """Entries for ``(incident id, reporter name, reporter contact)`` returned with their
    reporter data; returns once they are committed (raises when the commit failed)."""
    rows = access_rows(principal, incidents)
    if rows:
        await writer().write(rows)

"""Access logging: reads of personal data leave ``access`` audit entries (fields, never values)."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import insert
from sqlmodel import Session

from app.core.clock import get_clock
from app.core.db import WRITE_OPTION, get_engine
from app.core.security import Principal
from app.models.base import new_ordered_ids, table_of
from app.models.system import AuditEvent, AuditKind
from app.services import audit


def reporter_fields(name: str | None, contact: str | None) -> list[str]:
    """The reporter fields that hold a value (as access and erasure entries name them)."""
    return [f for f, v in (("reporter.contact", contact), ("reporter.name", name)) if v is not None]


_ACCESS = AuditKind.access.value
_ACCESS_INSERT = insert(table_of(AuditEvent))
_SQLITE_ACCESS_WRITER = threading.Lock()


def _own_write_transaction() -> Any:
    return get_engine().execution_options(**{WRITE_OPTION: True}).begin()


def access_rows(
    principal: Principal,
    resource: str,
    entries: Iterable[tuple[Any, Sequence[str]]],
    *,
    action: str = "read",
) -> list[dict[str, Any]]:
    """The ``access`` audit rows for records ``(id, fields)`` (records without fields: none)."""
    kept = [(record_id, fields) for record_id, fields in entries if fields]
    if not kept:
        return []
    now = get_clock().now()
    who = audit.principal_columns(principal)
    return [
        {
            "id": entry_id,
            "at": now,
            "kind": _ACCESS,
            **who,
            "action": action,
            "resource": resource,
            "resource_id": str(record_id),
            "fields": sorted(set(fields)),
        }
        for entry_id, (record_id, fields) in zip(new_ordered_ids(len(kept)), kept, strict=True)
    ]


def log_access(
    session: Session,
    principal: Principal,
    resource: str,
    entries: Iterable[tuple[Any, Sequence[str]]],
    *,
    action: str = "read",
    separate: bool = False,
) -> int:
    """Record reads of personal data: one ``access`` audit entry per record ``(id, fields)``.

    Entries name the fields, never their values. They are inserted in one statement — in the
    caller's transaction when it may write (PostgreSQL, or a write session on SQLite), otherwise
    (a read session on SQLite, whose deferred transaction must not upgrade to a write lock) or
    with ``separate=True`` (streamed exports) in a short write transaction of their own.
    """
    rows = access_rows(principal, resource, entries, action=action)
    if not rows:
        return 0
    bind = session.get_bind()
    in_caller = not separate and (
        bind.dialect.name != "sqlite" or bind.get_execution_options().get(WRITE_OPTION, False)
    )
    # Core on the connection (no ORM execution bookkeeping): one multi-row INSERT.
    if in_caller:
        session.connection().execute(_ACCESS_INSERT, rows)
    elif bind.dialect.name == "sqlite":
        # This process's threads queue here, woken as soon as the writer before them commits,
        # instead of polling SQLite's single write lock with the busy handler's sleeps (up to
        # 100 ms each: the p99 of staff reads under load, bench/README.md).
        with _SQLITE_ACCESS_WRITER, _own_write_transaction() as own:
            own.execute(_ACCESS_INSERT, rows)
    else:
        with _own_write_transaction() as own:
            own.execute(_ACCESS_INSERT, rows)
    return len(rows)


def log_reporter_access(
    session: Session,
    principal: Principal,
    incidents: Iterable[tuple[Any, str | None, str | None]],
    *,
    action: str = "read",
    separate: bool = False,
) -> int:
    """Access entries for incidents ``(id, reporter_name, reporter_contact)`` returned with
    their reporter data (those without a name or contact are skipped)."""
    return log_access(
        session,
        principal,
        "incident",
        [(i, reporter_fields(name, contact)) for i, name, contact in incidents],
        action=action,
        separate=separate,
    )


def manager_contact_fields(email: str | None, phone: str | None) -> list[str]:
    return [f for f, v in (("email", email), ("phone", phone)) if v is not None]

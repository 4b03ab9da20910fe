"""The audit trail: every write (and, for personal data, every read) leaves an entry.

Entries name the fields that changed, never their values.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlmodel import Session

from app.core.clock import get_clock
from app.core.security import Principal
from app.models.system import AuditEvent, AuditKind


def principal_columns(principal: Principal) -> dict[str, Any]:
    """Who, as an audit row records it: key id, role, subject and name at the time."""
    return {
        "principal_id": principal.key_id,
        "principal_role": str(principal.role),
        "principal_subject": principal.subject,
        "principal_name": principal.display_name[:200] or None,
    }


def entry_columns(
    principal: Principal,
    at: datetime,
    action: str,
    resource: str,
    kind: AuditKind = AuditKind.write,
) -> dict[str, Any]:
    """An audit entry's columns but for the resource id and the field names (one place for the
    API's entries and the bulk writers')."""
    return {
        "at": at,
        "kind": getattr(kind, "value", kind),
        **principal_columns(principal),
        "action": action,
        "resource": resource,
    }


def entry(
    principal: Principal,
    action: str,
    resource: str,
    resource_id: Any,
    fields: Iterable[str] = (),
    *,
    kind: AuditKind = AuditKind.write,
    at: datetime | None = None,
) -> dict[str, Any]:
    """The columns of one audit entry (``at``: now, unless a bulk writer stamps its rows)."""
    return {
        **entry_columns(principal, get_clock().now() if at is None else at, action, resource),
        "kind": kind,
        "resource_id": str(resource_id),
        "fields": sorted(set(fields)),
    }


def record(
    session: Session,
    principal: Principal,
    action: str,
    resource: str,
    resource_id: Any,
    fields: Iterable[str] = (),
    *,
    kind: AuditKind = AuditKind.write,
) -> None:
    session.add(AuditEvent(**entry(principal, action, resource, resource_id, fields, kind=kind)))

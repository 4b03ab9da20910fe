"""The audit trail: every write (and, for personal data, every read) leaves an entry.

Entries name the fields that changed, never their values.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlmodel import Session

from app.core.clock import get_clock
from app.core.security import Principal
from app.models.system import AuditEvent, AuditKind


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
    session.add(
        AuditEvent(
            at=get_clock().now(),
            kind=kind,
            principal_id=principal.key_id,
            principal_role=principal.role,
            action=action,
            resource=resource,
            resource_id=str(resource_id),
            fields=sorted(set(fields)),
        )
    )

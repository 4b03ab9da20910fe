"""What every timeline entry (incident or recommendation) records: when, what, who, the status
change, a note and structured data. Each resource's ``record_event`` adds its own key."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from app.core.clock import get_clock
from app.core.security import Principal


def actor_columns(principal: Principal) -> dict[str, Any]:
    """Who, as a timeline row records it: key id, role, subject and name at the time."""
    return {
        "actor_id": principal.key_id,
        "actor_role": str(principal.role),
        "actor_subject": principal.subject,
        "actor_name": principal.display_name[:200] or None,
    }


def entry_fields(
    type_: str,
    principal: Principal,
    *,
    from_status: str | None = None,
    to_status: str | None = None,
    note: str | None = None,
    data: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> dict[str, Any]:
    """The columns of one timeline entry (``at``: now, unless a bulk writer stamps its rows)."""
    return {
        "at": get_clock().now() if at is None else at,
        "type": type_,
        **actor_columns(principal),
        "from_status": from_status,
        "to_status": to_status,
        "note": note,
        "data": data or {},
    }

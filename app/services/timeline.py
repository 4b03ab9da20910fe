"""What every timeline entry (incident or recommendation) records: when, what, who, the status
change, a note and structured data. Each resource's ``record_event`` adds its own key."""

from __future__ import annotations

from typing import Any

from app.core.clock import get_clock
from app.core.security import Principal


def entry_fields(
    type_: str,
    principal: Principal,
    *,
    from_status: str | None = None,
    to_status: str | None = None,
    note: str | None = None,
    data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "at": get_clock().now(),
        "type": type_,
        "actor_id": principal.key_id,
        "actor_role": principal.role,
        "from_status": from_status,
        "to_status": to_status,
        "note": note,
        "data": data or {},
    }

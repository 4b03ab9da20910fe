"""Optimistic concurrency for mutable resources: ``version`` + ``ETag`` / ``If-Match``."""

from __future__ import annotations

from typing import Any, Protocol

from sqlmodel import Session

from app.core.clock import get_clock
from app.core.errors import PreconditionFailed
from app.core.problems import ProblemType


class Versioned(Protocol):
    version: int


def check_if_match(obj: Versioned, if_match: int | None) -> None:
    """Refuse a stale write: ``If-Match`` names a version other than the current one → 412."""
    if if_match is not None and if_match != obj.version:
        raise PreconditionFailed(
            f"The resource is at version {obj.version}, not {if_match}; reload and retry.",
            type_=ProblemType.STALE_VERSION,
        )


def apply_changes(obj: Any, changes: dict[str, Any]) -> list[str]:
    """Set the changed attributes; return the names of those that really changed."""
    changed = []
    for name, value in changes.items():
        if getattr(obj, name) != value:
            setattr(obj, name, value)
            changed.append(name)
    return changed


def bump(session: Session, obj: Any) -> None:
    """A new version: increments ``version`` and stamps ``updated_at``."""
    obj.version += 1
    obj.updated_at = get_clock().now()
    session.add(obj)

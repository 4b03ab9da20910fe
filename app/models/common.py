"""Request/response building blocks shared by every resource."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Generic, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
)

T = TypeVar("T")

SLUG_RE = re.compile(r"^[a-z0-9]+(?:[-_][a-z0-9]+)*$")

Slug = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=SLUG_RE.pattern)
]
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
LongText = Annotated[str, StringConstraints(max_length=20_000)]
Note = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=5_000)]


def _rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _require_aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamp needs a time zone offset (RFC 3339), e.g. 2026-05-01T12:00:00Z")
    return value.astimezone(UTC)


UTCTimestamp = Annotated[
    datetime, AfterValidator(_require_aware), PlainSerializer(_rfc3339, return_type=str)
]


class RequestModel(BaseModel):
    """Base of every request body: unknown fields are refused (422)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class ResponseModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Page(BaseModel, Generic[T]):
    """One page of a list: ``next_cursor`` is opaque; ``null`` on the last page."""

    items: list[T]
    next_cursor: str | None = Field(default=None, description="Pass as ?cursor= for the next page")


class StatusChange(RequestModel):
    status: str = Field(min_length=1, max_length=40)
    note: Note | None = None

"""Request/response building blocks shared by every resource."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    field_validator,
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


def contains_nul(value: Any) -> bool:
    """NUL characters anywhere in a value (strings, lists, dict keys and values)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list | tuple | set | frozenset):
        return any(contains_nul(item) for item in value)
    if isinstance(value, dict):
        return any(contains_nul(k) or contains_nul(v) for k, v in value.items())
    return False


class RequestModel(BaseModel):
    """Base of every request body: unknown fields are refused (422), and so is text with NUL
    characters (PostgreSQL cannot store them; they are never meaningful input)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul_characters(cls, value: Any) -> Any:
        if contains_nul(value):
            raise ValueError("text may not contain NUL (\\u0000) characters")
        return value


class ResponseModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Page(BaseModel, Generic[T]):
    """One page of a list: ``next_cursor`` is opaque; ``null`` on the last page."""

    items: list[T]
    next_cursor: str | None = Field(default=None, description="Pass as ?cursor= for the next page")


"""Request/response building blocks shared by every resource."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    PlainSerializer,
    StringConstraints,
    field_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

T = TypeVar("T")

SLUG_RE = re.compile(r"^[a-z0-9]+(?:[-_][a-z0-9]+)*$")

Slug = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=SLUG_RE.pattern)]
#: The slug pattern, either case: district codes are matched case-insensitively.
DISTRICT_CODE_PATTERN = r"^[A-Za-z0-9]+(?:[-_][A-Za-z0-9]+)*$"


def _lower(value: str) -> str:
    return value.lower()


#: A district code as input: ``Ilversgehofen`` is ``ilversgehofen`` (codes are stored lower-case),
#: and a code of the right shape that names no district is "unknown district" (422).
DistrictCode = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64, pattern=DISTRICT_CODE_PATTERN),
    AfterValidator(_lower),
]
#: A district code in a query filter or a path: matched case-insensitively (no shape check — a
#: filter naming no district finds nothing, a path naming none is 404).
DistrictFilter = Annotated[
    str, StringConstraints(min_length=1, max_length=64), AfterValidator(_lower)
]
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
LongText = Annotated[str, StringConstraints(max_length=20_000)]
Note = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=5_000)]


def _rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


_NUMBER_RE = re.compile(r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$")


def _refuse_numbers(value: Any) -> Any:
    """Pydantic would read a number (or a string of one) as Unix time: ``0.5`` is not a
    timestamp here — RFC 3339 text only."""
    if isinstance(value, bool | int | float) or (
        isinstance(value, str) and _NUMBER_RE.match(value)
    ):
        raise PydanticCustomError(
            "datetime_type", "timestamp must be RFC 3339 text, e.g. 2026-05-01T12:00:00Z"
        )
    return value


def _require_aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamp needs a time zone offset (RFC 3339), e.g. 2026-05-01T12:00:00Z")
    return value.astimezone(UTC)


#: A timestamp in a request or response: RFC 3339 text on the wire, an aware UTC ``datetime``
#: in Python. The serializer applies to JSON output only (``when_used="json"``): a
#: ``model_dump()`` in Python mode — how services take a PATCH body's changes to the ORM — keeps
#: the ``datetime``, which is what the timestamp columns bind (a string there was a 500).
UTCTimestamp = Annotated[
    datetime,
    BeforeValidator(_refuse_numbers),
    AfterValidator(_require_aware),
    PlainSerializer(_rfc3339, return_type=str, when_used="json"),
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


def _refuse_null(value: Any) -> Any:
    if value is None:
        raise PydanticCustomError("none_forbidden", "may not be null; leave the field out instead")
    return value


def _allows_null(schema: dict[str, Any]) -> bool:
    return schema.get("type") == "null" or any(
        _allows_null(branch) for branch in schema.get("anyOf", ())
    )


class NotNull:
    """``Annotated[X | None, NotNull()] = None``: a PATCH field that may be left out but not sent
    as ``null`` (422). The schema says so: the field is ``X``, not nullable."""

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_before_validator_function(_refuse_null, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        branches = [b for b in json_schema.get("anyOf", ()) if not _allows_null(b)]
        if "anyOf" in json_schema and len(branches) == 1:
            rest = {k: v for k, v in json_schema.items() if k != "anyOf"}
            return {**branches[0], **rest}
        if "anyOf" in json_schema:
            return {**json_schema, "anyOf": branches}
        return json_schema


class RequestModel(BaseModel):
    """Base of every request body: unknown fields are refused (422), and so is text with NUL
    characters (PostgreSQL cannot store them; they are never meaningful input)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        """An omitted field's ``default: null`` is not declared where ``null`` is not allowed
        (:class:`NotNull`): it would contradict the field's type."""
        json_schema = handler(schema)
        target = handler.resolve_ref_schema(json_schema)
        for prop in target.get("properties", {}).values():
            if "default" in prop and prop["default"] is None and not _allows_null(prop):
                del prop["default"]
        return json_schema

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

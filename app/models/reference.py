"""Reference data: districts (with symmetric neighbours), competences, organisations."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import Field as PField
from pydantic import field_validator
from sqlalchemy import Column, ForeignKey, String
from sqlmodel import Field, SQLModel

from app.models.base import JSONType, UTCDateTime, new_id, table_name, utcnow
from app.models.common import (
    DistrictCode,
    NotNull,
    RequestModel,
    ResponseModel,
    ShortText,
    Slug,
    UTCTimestamp,
)


class OrganisationKind(StrEnum):
    city_department = "city_department"
    ngo = "ngo"
    steering_group = "steering_group"
    other = "other"


class Organisation(SQLModel, table=True):
    __tablename__ = table_name("organisation")

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    name: str = Field(max_length=200, index=True)
    kind: str = Field(max_length=32)
    version: int = Field(default=1)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class District(SQLModel, table=True):
    __tablename__ = table_name("district")

    code: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=200)
    city: str = Field(max_length=100)
    area: str | None = Field(default=None, max_length=100)
    boundary: dict[str, Any] | None = Field(default=None, sa_type=JSONType)
    version: int = Field(default=1)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class DistrictNeighbour(SQLModel, table=True):
    """Stored in both directions, so that ``neighbours`` is symmetric by construction."""

    __tablename__ = table_name("district_neighbour")

    district_code: str = Field(
        sa_column=Column(
            String(64), ForeignKey("district.code", ondelete="CASCADE"), primary_key=True
        )
    )
    neighbour_code: str = Field(
        sa_column=Column(
            String(64), ForeignKey("district.code", ondelete="CASCADE"), primary_key=True
        )
    )


class Competence(SQLModel, table=True):
    __tablename__ = table_name("competence")

    code: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=200)
    description: str = Field(default="", max_length=5000)
    version: int = Field(default=1)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


# --- API schemas -------------------------------------------------------------------------------


#: A position ``[lon, lat]`` (lat within ±90 — a rule the schema states in words: a per-index
#: bound needs ``prefixItems``, which generated clients do not handle).
_POSITION: dict[str, Any] = {
    "type": "array",
    "description": "[lon, lat] in WGS84 degrees (lat within ±90)",
    "items": {"type": "number", "minimum": -180, "maximum": 180},
    "minItems": 2,
    "maxItems": 3,
}
_RING: dict[str, Any] = {"type": "array", "items": _POSITION, "maxItems": 10_000}


class GeoPolygon(RequestModel):
    """A GeoJSON Polygon or MultiPolygon geometry."""

    type: Literal["Polygon", "MultiPolygon"]
    coordinates: list[Any] = PField(
        min_length=1,
        max_length=10_000,
        json_schema_extra={
            "items": _RING,
            "description": "The rings of a Polygon (a MultiPolygon's polygons of rings are "
            "accepted too)",
        },
    )

    @field_validator("coordinates")
    @classmethod
    def _positions(cls, value: list[Any]) -> list[Any]:
        def walk(node: Any, depth: int) -> None:
            if depth > 4 or not isinstance(node, list):
                raise ValueError("coordinates must be nested lists of [lon, lat] positions")
            if node and all(isinstance(x, int | float) for x in node):
                if len(node) < 2 or not (-180 <= node[0] <= 180 and -90 <= node[1] <= 90):
                    raise ValueError("each position is [lon, lat] in WGS84 degrees")
                return
            for child in node:
                walk(child, depth + 1)

        walk(value, 0)
        return value


class DistrictCreate(RequestModel):
    code: DistrictCode
    name: ShortText
    city: ShortText
    area: ShortText | None = None
    neighbours: list[DistrictCode] = PField(default_factory=list, max_length=100)
    boundary: GeoPolygon | None = None


class DistrictUpdate(RequestModel):
    name: Annotated[ShortText | None, NotNull()] = None
    city: Annotated[ShortText | None, NotNull()] = None
    area: ShortText | None = None
    neighbours: list[DistrictCode] | None = PField(default=None, max_length=100)
    boundary: GeoPolygon | None = None


class DistrictPublic(ResponseModel):
    code: str
    name: str
    city: str
    area: str | None
    neighbours: list[str]
    boundary: dict[str, Any] | None
    version: int
    created_at: UTCTimestamp
    updated_at: UTCTimestamp


class CompetenceCreate(RequestModel):
    code: Slug
    name: ShortText
    description: str = PField(default="", max_length=5000)


class CompetenceUpdate(RequestModel):
    """PATCH: ``name`` may be left out, not nulled (422); ``description: null`` clears it."""

    name: Annotated[ShortText | None, NotNull()] = None
    description: str | None = PField(default=None, max_length=5000)


class CompetencePublic(ResponseModel):
    code: str
    name: str
    description: str
    version: int
    created_at: UTCTimestamp
    updated_at: UTCTimestamp


class OrganisationCreate(RequestModel):
    name: ShortText
    kind: OrganisationKind


class OrganisationUpdate(RequestModel):
    """PATCH: either field may be left out, not nulled (422)."""

    name: Annotated[ShortText | None, NotNull()] = None
    kind: Annotated[OrganisationKind | None, NotNull()] = None


class OrganisationPublic(ResponseModel):
    id: uuid.UUID
    name: str
    kind: OrganisationKind
    version: int
    created_at: UTCTimestamp
    updated_at: UTCTimestamp

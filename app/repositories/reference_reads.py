"""Reference data reads on the event loop (:mod:`app.core.reads`): districts (with their
neighbours aggregated), competences and organisations — one statement per request, rows turned
into the API's JSON in one pass.

The JSON is the same as :class:`app.models.reference.DistrictPublic`, ``CompetencePublic`` and
``OrganisationPublic`` serialised by pydantic (field order, RFC 3339 timestamps with ``Z``);
tests compare both paths.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import orjson

from app.core.reads import DialectStatement, Reads, ReadStatement, time_text, uuid_text

# --- aggregates in the database's order ----------------------------------------------------------


class OrderedStatement(DialectStatement):
    """A statement whose ``{agg}`` lists come in the database's order: PostgreSQL orders inside
    the aggregate (``string_agg(x, ',' ORDER BY x)``, the collation of an ``ORDER BY``); SQLite
    before 3.44 cannot, so its lists are sorted by the reader — in code point order, which is
    SQLite's ``BINARY`` collation."""

    __slots__ = ()


def codes(value: str | None, dialect: str) -> list[str]:
    """A ``,``-aggregated list of codes (slugs: never a comma) in the database's order."""
    if not value:
        return []
    items = value.split(",")
    return items if dialect == "postgresql" else sorted(items)


# --- districts ------------------------------------------------------------------------------------


_DISTRICT_SQL = (
    "SELECT d.code, d.name, d.city, d.area, "
    "(SELECT {agg}(n.neighbour_code, ','<order>) FROM district_neighbour n "
    "WHERE n.district_code = d.code) AS neighbours, "
    "d.boundary, d.version, d.created_at, d.updated_at FROM district d<where>"
)


def _district_statement(where: str, tail: str) -> OrderedStatement:
    text = _DISTRICT_SQL.replace("<where>", where + tail)
    return OrderedStatement(
        text.replace("<order>", ""), text.replace("<order>", " ORDER BY n.neighbour_code")
    )


_DISTRICT = _district_statement(" WHERE d.code = :code", "")
_DISTRICTS: dict[tuple[bool, bool], OrderedStatement] = {}


def _districts_statement(city: bool, after: bool) -> OrderedStatement:
    statement = _DISTRICTS.get((city, after))
    if statement is None:
        where = [c for c, on in (("d.city = :city", city), ("d.code > :after", after)) if on]
        statement = _DISTRICTS[(city, after)] = _district_statement(
            " WHERE " + " AND ".join(where) if where else "", " ORDER BY d.code LIMIT :limit"
        )
    return statement


def _json_value(value: Any) -> Any:
    """A stored JSON column (text on both databases' read path) as its value."""
    if value is None or not isinstance(value, str | bytes):
        return value
    return orjson.loads(value)


def district_json(row: tuple[Any, ...], dialect: str) -> dict[str, Any]:
    code, name, city, area, neighbours, boundary, version, created_at, updated_at = row
    return {
        "code": code,
        "name": name,
        "city": city,
        "area": area,
        "neighbours": codes(neighbours, dialect),
        "boundary": _json_value(boundary),
        "version": version,
        "created_at": time_text(created_at),
        "updated_at": time_text(updated_at),
    }


# --- competences ----------------------------------------------------------------------------------

_COMPETENCE_COLUMNS = (
    "SELECT code, name, description, version, created_at, updated_at FROM competence"
)
_COMPETENCE = ReadStatement(_COMPETENCE_COLUMNS + " WHERE code = :code")
_COMPETENCES = {
    False: ReadStatement(_COMPETENCE_COLUMNS + " ORDER BY code LIMIT :limit"),
    True: ReadStatement(_COMPETENCE_COLUMNS + " WHERE code > :after ORDER BY code LIMIT :limit"),
}


def competence_json(row: tuple[Any, ...]) -> dict[str, Any]:
    code, name, description, version, created_at, updated_at = row
    return {
        "code": code,
        "name": name,
        "description": description,
        "version": version,
        "created_at": time_text(created_at),
        "updated_at": time_text(updated_at),
    }


# --- organisations --------------------------------------------------------------------------------

_ORGANISATION_COLUMNS = "SELECT id, name, kind, version, created_at, updated_at FROM organisation"
_ORGANISATION = ReadStatement(_ORGANISATION_COLUMNS + " WHERE id = :id")
_ORGANISATIONS = {
    False: ReadStatement(_ORGANISATION_COLUMNS + " ORDER BY created_at, id LIMIT :limit"),
    True: ReadStatement(
        _ORGANISATION_COLUMNS
        + " WHERE created_at > :after_at OR (created_at = :after_at AND id > :after_id)"
        " ORDER BY created_at, id LIMIT :limit"
    ),
}
ORGANISATION_ID, ORGANISATION_CREATED_AT = 0, 4


def organisation_json(row: tuple[Any, ...]) -> dict[str, Any]:
    id_, name, kind, version, created_at, updated_at = row
    return {
        "id": uuid_text(id_),
        "name": name,
        "kind": kind,
        "version": version,
        "created_at": time_text(created_at),
        "updated_at": time_text(updated_at),
    }


class ReferenceReads:
    def __init__(self, reads: Reads) -> None:
        self.reads = reads

    async def district(self, code: str) -> tuple[Any, ...] | None:
        rows = await self.reads.all(_DISTRICT.on(self.reads), {"code": code})
        return rows[0] if rows else None

    async def districts(
        self, limit: int, city: str | None, after: str | None
    ) -> list[tuple[Any, ...]]:
        """Up to ``limit + 1`` rows by code (the extra row tells that a page follows)."""
        params: dict[str, Any] = {"limit": limit + 1}
        if city:
            params["city"] = city
        if after is not None:
            params["after"] = after
        statement = _districts_statement(bool(city), after is not None)
        return await self.reads.all(statement.on(self.reads), params)

    async def competence(self, code: str) -> tuple[Any, ...] | None:
        rows = await self.reads.all(_COMPETENCE, {"code": code})
        return rows[0] if rows else None

    async def competences(self, limit: int, after: str | None) -> list[tuple[Any, ...]]:
        params: dict[str, Any] = {"limit": limit + 1}
        if after is not None:
            params["after"] = after
        return await self.reads.all(_COMPETENCES[after is not None], params)

    async def organisation(self, organisation_id: uuid.UUID) -> tuple[Any, ...] | None:
        rows = await self.reads.all(_ORGANISATION, {"id": self.reads.bind_uuid(organisation_id)})
        return rows[0] if rows else None

    async def organisations(
        self, limit: int, after: tuple[datetime, uuid.UUID] | None
    ) -> list[tuple[Any, ...]]:
        params: dict[str, Any] = {"limit": limit + 1}
        if after is not None:
            params["after_at"] = self.reads.bind_time(after[0])
            params["after_id"] = self.reads.bind_uuid(after[1])
        return await self.reads.all(_ORGANISATIONS[after is not None], params)

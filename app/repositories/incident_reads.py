"""Incident reads on the event loop (:mod:`app.core.reads`): one statement per request — the row
with its required competences aggregated — and rows turned into the API's JSON in one pass.

The JSON is the same as :class:`app.models.incident.IncidentPublic` serialised by pydantic
(field order, RFC 3339 timestamps with ``Z``, ``null`` for absent values; tests compare both
paths), built from the stored text of each value without parsing it into Python objects first.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from app.core.reads import Reads, ReadStatement, time_text, time_value, uuid_text

_COLUMNS = (
    "i.id, i.reference, i.title, i.description, i.district, i.lat, i.lon, i.category, "
    "i.escalation_level, "
    "(SELECT {agg}(c.competence_code, ',') FROM incident_competence c "
    "WHERE c.incident_id = i.id) AS competences, "
    "i.languages, i.status, i.occurred_at, i.reported_at, i.source, i.external_id, "
    "i.organisation_id, i.has_reporter, i.reporter_name, i.reporter_contact, "
    "i.reporter_anonymous, i.version, i.created_at, i.updated_at, "
    # The slots held (app.services.incidents.open_slots_of), only where they are reported.
    "(SELECT {agg}(a.role, ',') FROM assignment a WHERE a.incident_id = i.id "
    "AND i.status IN ('dispatched', 'in_progress') "
    "AND a.status IN ('offered', 'accepted', 'completed')) AS held_roles"
)
_BY_ID = ReadStatement(f"SELECT {_COLUMNS} FROM incident i WHERE i.id = :id")  # noqa: S608 (constant text)

# Column positions in _COLUMNS.
ID, ORGANISATION_ID, HAS_REPORTER, REPORTER_NAME, REPORTER_CONTACT = 0, 16, 17, 18, 19
VERSION, CREATED_AT = 21, 22


@dataclass(frozen=True, slots=True)
class ListFilter:
    """The list filters the loop path serves (text search ``q`` is not among them)."""

    district: str | None = None
    statuses: Sequence[str] = ()
    category: str | None = None
    min_escalation: int | None = None
    reported_after: Any = None
    reported_before: Any = None
    organisation_id: uuid.UUID | None = None
    scope_organisation_id: uuid.UUID | None = None


_LIST_CACHE: dict[tuple[object, ...], ReadStatement] = {}


def _list_statement(flt: ListFilter, after: bool) -> ReadStatement:
    shape = (
        flt.scope_organisation_id is not None,
        bool(flt.district),
        len(flt.statuses),
        bool(flt.category),
        flt.min_escalation is not None,
        flt.reported_after is not None,
        flt.reported_before is not None,
        flt.organisation_id is not None,
        after,
    )
    statement = _LIST_CACHE.get(shape)
    if statement is None:
        where: list[str] = []
        if flt.scope_organisation_id is not None:
            where.append("i.organisation_id = :scope_organisation_id")
        if flt.district:
            where.append("i.district = :district")
        if flt.statuses:
            where.append(
                "i.status IN (" + ", ".join(f":status{n}" for n in range(len(flt.statuses))) + ")"
            )
        if flt.category:
            where.append("i.category = :category")
        if flt.min_escalation is not None:
            where.append("i.escalation_level >= :min_escalation")
        if flt.reported_after is not None:
            where.append("i.reported_at >= :reported_after")
        if flt.reported_before is not None:
            where.append("i.reported_at < :reported_before")
        if flt.organisation_id is not None:
            where.append("i.organisation_id = :organisation_id")
        if after:  # keyset, as app.core.pagination.keyset writes it (descending)
            where.append(
                "(i.created_at < :after_at OR (i.created_at = :after_at AND i.id < :after_id))"
            )
        sql = f"SELECT {_COLUMNS} FROM incident i"  # noqa: S608 (constant fragments only)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY i.created_at DESC, i.id DESC LIMIT :limit"
        statement = _LIST_CACHE[shape] = ReadStatement(sql)
    return statement


class IncidentReads:
    def __init__(self, reads: Reads) -> None:
        self.reads = reads

    async def row(self, incident_id: uuid.UUID) -> tuple[Any, ...] | None:
        rows = await self.reads.all(_BY_ID, {"id": self.reads.bind_uuid(incident_id)})
        return rows[0] if rows else None

    async def page(
        self, flt: ListFilter, limit: int, after: tuple[Any, uuid.UUID] | None
    ) -> list[tuple[Any, ...]]:
        """Up to ``limit + 1`` rows, newest first (the extra row tells that a page follows)."""
        reads = self.reads
        params: dict[str, Any] = {"limit": limit + 1}
        if flt.scope_organisation_id is not None:
            params["scope_organisation_id"] = reads.bind_uuid(flt.scope_organisation_id)
        if flt.district:
            params["district"] = flt.district
        for n, status in enumerate(flt.statuses):
            params[f"status{n}"] = str(status)
        if flt.category:
            params["category"] = str(flt.category)
        if flt.min_escalation is not None:
            params["min_escalation"] = flt.min_escalation
        if flt.reported_after is not None:
            params["reported_after"] = reads.bind_time(flt.reported_after)
        if flt.reported_before is not None:
            params["reported_before"] = reads.bind_time(flt.reported_before)
        if flt.organisation_id is not None:
            params["organisation_id"] = reads.bind_uuid(flt.organisation_id)
        if after is not None:
            params["after_at"] = reads.bind_time(after[0])
            params["after_id"] = reads.bind_uuid(after[1])
        return await reads.all(_list_statement(flt, after is not None), params)


def cursor_key(row: tuple[Any, ...]) -> list[Any]:
    """The keyset of a row, as the ORM path's cursor holds it: ``[created_at, id]``."""
    return [time_value(time_text(row[CREATED_AT]) or ""), uuid.UUID(uuid_text(row[ID]))]


def _languages(value: Any) -> Any:
    if value is None:
        return []
    return orjson.Fragment(value) if isinstance(value, str | bytes) else value


_STAFFED = ("dispatched", "in_progress")


def _open_slots(status: str, escalation_level: int, held: str | None) -> list[str]:
    """As :func:`app.services.incidents.open_slots_of`: the slots a dispatched or in-progress
    incident needs (lead; and co from the tandem level) that no assignment holds."""
    if status not in _STAFFED:
        return []
    from app.core.config import get_settings

    needed = ["lead", "co"] if escalation_level >= get_settings().tandem_from_level else ["lead"]
    taken = set(held.split(",")) if held else set()
    return [role for role in needed if role not in taken]


def incident_json(row: tuple[Any, ...], with_reporter: bool) -> dict[str, Any]:
    """One row as the API's incident object (``reporter`` only when ``with_reporter``)."""
    (
        id_,
        reference,
        title,
        description,
        district,
        lat,
        lon,
        category,
        escalation_level,
        competences,
        languages,
        status,
        occurred_at,
        reported_at,
        source,
        external_id,
        organisation_id,
        has_reporter,
        reporter_name,
        reporter_contact,
        reporter_anonymous,
        version,
        created_at,
        updated_at,
        held_roles,
    ) = row
    return {
        "id": uuid_text(id_),
        "reference": reference,
        "title": title,
        "description": description,
        "district": district,
        "location": {"lat": lat, "lon": lon} if lat is not None and lon is not None else None,
        "category": category,
        "escalation_level": escalation_level,
        "required_competences": sorted(competences.split(",")) if competences else [],
        "languages": _languages(languages),
        "status": status,
        "occurred_at": time_text(occurred_at),
        "reported_at": time_text(reported_at),
        "source": source,
        "external_id": external_id,
        "organisation_id": uuid_text(organisation_id),
        "reporter": {
            "name": reporter_name,
            "contact": reporter_contact,
            "anonymous": bool(reporter_anonymous),
        }
        if with_reporter and has_reporter
        else None,
        "open_slots": _open_slots(status, escalation_level, held_roles),
        "version": version,
        "created_at": time_text(created_at),
        "updated_at": time_text(updated_at),
    }


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)

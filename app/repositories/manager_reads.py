"""Manager reads on the event loop (:mod:`app.core.reads`): one statement per request — the
manager row with its served districts and competences aggregated and whether an absence covers
today — and rows turned into the API's JSON in one pass.

The JSON is the same as :class:`app.models.manager_schemas.ManagerPublic` (or
:class:`~app.models.manager_schemas.ManagerPublicRedacted`) serialised by pydantic: field order,
ISO dates, RFC 3339 timestamps with ``Z``, lists sorted as
:class:`app.services.managers.ManagerService` sorts them (tests compare both paths byte for
byte). The day rules are the SQL twins of :mod:`app.services.managers` (as
:mod:`app.repositories.managers` writes them): *today* is passed in, never read here.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import orjson

from app.core.reads import Reads, ReadStatement, time_text, time_value, uuid_text

# Codes are slugs (no commas, no spaces): ``code certified_on expires_on`` joined by commas.
_COMPETENCES = (
    "(SELECT {agg}(c.competence_code || ' ' || CAST(c.certified_on AS TEXT) || ' ' || "
    "COALESCE(CAST(c.expires_on AS TEXT), ''), ',') FROM manager_competence c "
    "WHERE c.manager_id = m.id)"
)
_ABSENT = (
    "EXISTS (SELECT 1 FROM absence a WHERE a.manager_id = m.id "
    "AND a.starts_on <= :today AND a.ends_on >= :today)"
)


def _columns(redacted: bool) -> str:
    """The row of one manager; the redacted view needs no competences (``NULL``)."""
    return (
        "m.id, m.display_name, m.email, m.phone, m.organisation_id, m.status, m.home_district, "  # noqa: S608 (constant fragments)
        "(SELECT {agg}(d.district_code, ',') FROM manager_district d "
        "WHERE d.manager_id = m.id) AS districts, "
        "m.languages, m.max_open_assignments, m.notify_by_email, "
        f"{'NULL' if redacted else _COMPETENCES} AS competences, "
        f"{_ABSENT} AS absent_today, "
        "m.open_assignments, m.version, m.created_at, m.updated_at"
    )


# Column positions in _columns().
ID, EMAIL, PHONE, VERSION, CREATED_AT = 0, 2, 3, 14, 15

_BY_ID = {
    redacted: ReadStatement(f"SELECT {_columns(redacted)} FROM manager m WHERE m.id = :id")  # noqa: S608 (constant text)
    for redacted in (False, True)
}


@dataclass(frozen=True, slots=True)
class ListFilter:
    """The list filters of :class:`app.repositories.managers.ManagerFilter`."""

    district: str | None = None
    competences: Sequence[str] = ()
    statuses: Sequence[str] = ()
    language: str | None = None
    available: bool | None = None


def _speaks(dialect: str) -> str:
    """The manager speaks ``:language`` (as ``ManagerRepository._speaks_clause``)."""
    if dialect == "postgresql":
        return "m.languages @> jsonb_build_array(CAST(:language AS TEXT))"
    return "EXISTS (SELECT 1 FROM json_each(m.languages) spoken WHERE spoken.value = :language)"


_LIST_CACHE: dict[tuple[object, ...], ReadStatement] = {}


def _list_statement(dialect: str, flt: ListFilter, redacted: bool, after: bool) -> ReadStatement:
    competences = len(dict.fromkeys(flt.competences))
    shape = (
        dialect,
        redacted,
        bool(flt.district),
        competences,
        len(flt.statuses),
        bool(flt.language),
        flt.available,
        after,
    )
    statement = _LIST_CACHE.get(shape)
    if statement is None:
        where: list[str] = []
        if flt.district:  # home or served
            where.append(
                "(m.home_district = :district OR EXISTS (SELECT 1 FROM manager_district sd "
                "WHERE sd.manager_id = m.id AND sd.district_code = :district))"
            )
        for n in range(competences):  # held and valid today
            where.append(
                "EXISTS (SELECT 1 FROM manager_competence vc WHERE vc.manager_id = m.id "  # noqa: S608 (constant)
                f"AND vc.competence_code = :competence{n} AND vc.certified_on <= :today "
                "AND (vc.expires_on IS NULL OR vc.expires_on >= :today))"
            )
        if flt.statuses:
            where.append(
                "m.status IN (" + ", ".join(f":status{n}" for n in range(len(flt.statuses))) + ")"
            )
        if flt.language:
            where.append(_speaks(dialect))
        available = f"(m.status = 'active' AND NOT {_ABSENT})"
        if flt.available is True:
            where.append(available)
        elif flt.available is False:
            where.append(f"NOT {available}")
        if after:  # keyset, as app.core.pagination.keyset writes it (ascending)
            where.append(
                "(m.created_at > :after_at OR (m.created_at = :after_at AND m.id > :after_id))"
            )
        sql = f"SELECT {_columns(redacted)} FROM manager m"  # noqa: S608 (constant fragments only)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY m.created_at, m.id LIMIT :limit"
        statement = _LIST_CACHE[shape] = ReadStatement(sql)
    return statement


def bind_date(reads: Reads, value: date) -> Any:
    """A date as the engine stores it: ISO text on SQLite, a ``date`` for psycopg."""
    return value if reads.dialect == "postgresql" else value.isoformat()


class ManagerReads:
    def __init__(self, reads: Reads) -> None:
        self.reads = reads

    async def row(
        self, manager_id: uuid.UUID, today: date, *, redacted: bool
    ) -> tuple[Any, ...] | None:
        reads = self.reads
        rows = await reads.all(
            _BY_ID[redacted], {"id": reads.bind_uuid(manager_id), "today": bind_date(reads, today)}
        )
        return rows[0] if rows else None

    async def page(
        self,
        flt: ListFilter,
        today: date,
        limit: int,
        after: tuple[Any, uuid.UUID] | None,
        *,
        redacted: bool,
    ) -> list[tuple[Any, ...]]:
        """Up to ``limit + 1`` rows in (created_at, id) order (the extra row: a page follows)."""
        reads = self.reads
        params: dict[str, Any] = {"limit": limit + 1, "today": bind_date(reads, today)}
        if flt.district:
            params["district"] = flt.district
        for n, code in enumerate(dict.fromkeys(flt.competences)):
            params[f"competence{n}"] = code
        for n, status in enumerate(flt.statuses):
            params[f"status{n}"] = str(status)
        if flt.language:
            params["language"] = flt.language
        if after is not None:
            params["after_at"] = reads.bind_time(after[0])
            params["after_id"] = reads.bind_uuid(after[1])
        return await reads.all(
            _list_statement(reads.dialect, flt, redacted, after is not None), params
        )

    async def absences(
        self,
        manager_id: uuid.UUID,
        limit: int,
        after: tuple[date, uuid.UUID] | None,
    ) -> list[tuple[Any, ...]]:
        """``(manager id, absence id, starts_on, ends_on, reason)``: no row when the manager does
        not exist, one row of ``NULL`` absence columns when it has none (after the cursor)."""
        reads = self.reads
        params: dict[str, Any] = {"id": reads.bind_uuid(manager_id), "limit": limit + 1}
        if after is not None:
            params["after_on"] = bind_date(reads, after[0])
            params["after_id"] = reads.bind_uuid(after[1])
        return await reads.all(_ABSENCES[after is not None], params)


_ABSENCES = {
    after: ReadStatement(
        "SELECT m.id, a.id, CAST(a.starts_on AS TEXT), CAST(a.ends_on AS TEXT), a.reason "
        "FROM manager m LEFT JOIN absence a ON a.manager_id = m.id"
        + (
            " AND (a.starts_on > :after_on OR (a.starts_on = :after_on AND a.id > :after_id))"
            if after
            else ""
        )
        + " WHERE m.id = :id ORDER BY a.starts_on, a.id LIMIT :limit"
    )
    for after in (False, True)
}


def cursor_key(row: tuple[Any, ...]) -> list[Any]:
    """The keyset of a row, as the ORM path's cursor holds it: ``[created_at, id]``."""
    return [time_value(time_text(row[CREATED_AT]) or ""), uuid.UUID(uuid_text(row[ID]))]


def _districts(value: str | None) -> list[str]:
    return sorted(value.split(",")) if value else []


def _holdings(value: str | None) -> list[tuple[str, str, str | None]]:
    """``(code, certified_on, expires_on)`` sorted by code, as ``app.services.managers._stored``
    (a manager holds a code once; a space sorts before every character of a slug)."""
    if not value:
        return []
    holdings: list[tuple[str, str, str | None]] = []
    for item in sorted(value.split(",")):
        code, certified_on, expires_on = item.split(" ")
        holdings.append((code, certified_on, expires_on or None))
    return holdings


def expiry_window(today: date, within_days: int) -> tuple[str, str]:
    """Today and the last day a competence counts as expiring, as ISO text (``window`` of
    :func:`manager_json`; stored dates compare as text the same way)."""
    return today.isoformat(), (today + timedelta(days=within_days)).isoformat()


def manager_json(
    row: tuple[Any, ...], *, redacted: bool, contact: bool, window: tuple[str, str]
) -> dict[str, Any]:
    """One row as the API's manager object: the redacted view, or the full one with ``email``
    and ``phone`` only when ``contact``; ``window`` is :func:`expiry_window`."""
    (
        id_,
        display_name,
        email,
        phone,
        organisation_id,
        status,
        home_district,
        districts,
        languages,
        max_open_assignments,
        notify_by_email,
        competences,
        absent_today,
        open_assignments,
        version,
        created_at,
        updated_at,
    ) = row
    available = status == "active" and not absent_today
    spoken = orjson.loads(languages) if languages is not None else []
    if redacted:
        return {
            "id": uuid_text(id_),
            "display_name": display_name,
            "email": None,
            "phone": None,
            "status": status,
            "home_district": home_district,
            "districts": _districts(districts),
            "languages": spoken,
            "available_today": available,
        }
    holdings = _holdings(competences)
    day, horizon = window
    return {
        "id": uuid_text(id_),
        "display_name": display_name,
        "email": email if contact else None,
        "phone": phone if contact else None,
        "organisation_id": uuid_text(organisation_id),
        "status": status,
        "home_district": home_district,
        "districts": _districts(districts),
        "languages": spoken,
        "max_open_assignments": max_open_assignments,
        "notify_by_email": bool(notify_by_email),
        "competences": [
            {"code": code, "certified_on": certified_on, "expires_on": expires_on}
            for code, certified_on, expires_on in holdings
        ],
        "available_today": available,
        "open_assignments": open_assignments,
        # valid today and expiring within the horizon (app.services.managers.expiring_competences)
        "expiring_competences": [
            {"code": code, "expires_on": expires_on}
            for code, certified_on, expires_on in holdings
            if expires_on is not None and certified_on <= day <= expires_on <= horizon
        ],
        "version": version,
        "created_at": time_text(created_at),
        "updated_at": time_text(updated_at),
    }


def absence_json(row: tuple[Any, ...]) -> dict[str, Any]:
    _, id_, starts_on, ends_on, reason = row
    return {"id": uuid_text(id_), "starts_on": starts_on, "ends_on": ends_on, "reason": reason}


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)

"""Recommendation reads on the event loop (:mod:`app.core.reads`): one statement per request — the
recommendation with its districts and its evidence (incident id, reference, title) aggregated,
or a page of its timeline — and rows turned into the API's JSON in one pass.

The JSON is the same as :class:`app.models.recommendation.RecommendationPublic` and
``RecommendationEventPublic`` serialised by pydantic; tests compare both paths. Lists come in the
database's order (:class:`~app.repositories.reference_reads.OrderedStatement`): districts by code,
evidence by incident reference.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import orjson

from app.core.reads import Reads, ReadStatement, time_text, uuid_text
from app.models.recommendation import CLOSED_RECOMMENDATION_STATUSES
from app.repositories.recommendations import RecommendationFilter
from app.repositories.reference_reads import OrderedStatement, codes

_CLOSED = ", ".join(f"'{s}'" for s in sorted(CLOSED_RECOMMENDATION_STATUSES))


_COLUMNS = (
    "r.id, r.reference, r.title, r.body, r.category, r.issued_by, r.addressee, r.status, "
    "r.progress, r.due_on, (SELECT <districts> FROM recommendation_district d "
    "WHERE d.recommendation_id = r.id) AS districts, "
    "(SELECT <evidence> FROM recommendation_incident e "
    "JOIN incident i ON i.id = e.incident_id WHERE e.recommendation_id = r.id) AS evidence, "
    "r.version, r.created_at, r.updated_at, r.status_changed_at, r.implemented_at"
)


def _columns(dialect: str) -> str:
    if dialect == "postgresql":
        districts = "string_agg(d.district_code, ',' ORDER BY d.district_code)"
        evidence = (
            "json_agg(json_build_array(e.incident_id, i.reference, i.title) ORDER BY i.reference)"
        )
    else:  # sorted by the reader (SQLite before 3.44 has no ORDER BY in an aggregate)
        districts = "group_concat(d.district_code, ',')"
        evidence = "json_group_array(json_array(e.incident_id, i.reference, i.title))"
    return _COLUMNS.replace("<districts>", districts).replace("<evidence>", evidence)


def _statement(tail: str) -> OrderedStatement:
    return OrderedStatement(
        f"SELECT {_columns('sqlite')} FROM recommendation r{tail}",  # noqa: S608 (constant text)
        f"SELECT {_columns('postgresql')} FROM recommendation r{tail}",  # noqa: S608
    )


_BY_ID = _statement(" WHERE r.id = :id")
# Column positions in _columns().
ID, VERSION, CREATED_AT = 0, 12, 13

_LIST_CACHE: dict[tuple[object, ...], OrderedStatement] = {}


def _list_statement(flt: RecommendationFilter, after: bool) -> OrderedStatement:
    shape = (
        len(flt.statuses),
        bool(flt.category),
        flt.addressee is not None,
        bool(flt.district),
        flt.overdue,
        after,
    )
    statement = _LIST_CACHE.get(shape)
    if statement is None:
        where: list[str] = []
        if flt.statuses:
            where.append(
                "r.status IN (" + ", ".join(f":status{n}" for n in range(len(flt.statuses))) + ")"
            )
        if flt.category:
            where.append("r.category = :category")
        if flt.addressee is not None:
            where.append("r.addressee = :addressee")
        if flt.district:
            where.append(
                "EXISTS (SELECT 1 FROM recommendation_district x "
                "WHERE x.recommendation_id = r.id AND x.district_code = :district)"
            )
        # overdue as app.repositories.recommendations.overdue_clause / not_overdue_clause
        if flt.overdue is True:
            where.append(
                f"(r.due_on IS NOT NULL AND r.due_on < :today AND r.status NOT IN ({_CLOSED}))"
            )
        elif flt.overdue is False:
            where.append(f"(r.due_on IS NULL OR r.due_on >= :today OR r.status IN ({_CLOSED}))")
        if after:  # keyset, as app.core.pagination.keyset writes it (descending)
            where.append(
                "(r.created_at < :after_at OR (r.created_at = :after_at AND r.id < :after_id))"
            )
        tail = " WHERE " + " AND ".join(where) if where else ""
        statement = _LIST_CACHE[shape] = _statement(
            tail + " ORDER BY r.created_at DESC, r.id DESC LIMIT :limit"
        )
    return statement


# --- the timeline ---------------------------------------------------------------------------------

_EVENT_COLUMNS = (
    "e.id, e.recommendation_id, e.seq, e.at, e.type, e.actor_id, e.actor_role, e.actor_subject, "
    "e.actor_name, e.from_status, e.to_status, e.note, e.data"
)
# The recommendation joined to its events: no row at all when it does not exist (404), one row
# without an event when its page is empty.
_EVENTS = {
    after: ReadStatement(
        f"SELECT {_EVENT_COLUMNS} FROM recommendation r "  # noqa: S608 (constant text)
        "LEFT JOIN recommendation_event e ON e.recommendation_id = r.id"
        + (" AND e.seq > :after" if after else "")
        + " WHERE r.id = :id ORDER BY e.seq LIMIT :limit"
    )
    for after in (False, True)
}
SEQ = 2


class RecommendationReads:
    def __init__(self, reads: Reads) -> None:
        self.reads = reads

    def _date(self, value: date) -> Any:
        # as the engine stores a Date: ISO text on SQLite, a date on PostgreSQL
        return value if self.reads.dialect == "postgresql" else value.isoformat()

    async def row(self, rec_id: uuid.UUID) -> tuple[Any, ...] | None:
        rows = await self.reads.all(_BY_ID.on(self.reads), {"id": self.reads.bind_uuid(rec_id)})
        return rows[0] if rows else None

    async def page(
        self,
        flt: RecommendationFilter,
        today: date,
        limit: int,
        after: tuple[datetime, uuid.UUID] | None,
    ) -> list[tuple[Any, ...]]:
        """Up to ``limit + 1`` rows, newest first (the extra row tells that a page follows)."""
        reads = self.reads
        params: dict[str, Any] = {"limit": limit + 1}
        for n, status in enumerate(flt.statuses):
            params[f"status{n}"] = str(status)
        if flt.category:
            params["category"] = str(flt.category)
        if flt.addressee is not None:
            params["addressee"] = reads.bind_uuid(flt.addressee)
        if flt.district:
            params["district"] = flt.district
        if flt.overdue is not None:
            params["today"] = self._date(today)
        if after is not None:
            params["after_at"] = reads.bind_time(after[0])
            params["after_id"] = reads.bind_uuid(after[1])
        return await reads.all(_list_statement(flt, after is not None).on(reads), params)

    async def events(
        self, rec_id: uuid.UUID, limit: int, after: int | None
    ) -> list[tuple[Any, ...]] | None:
        """Up to ``limit + 1`` events in timeline order; ``None`` when the recommendation does
        not exist."""
        params: dict[str, Any] = {"id": self.reads.bind_uuid(rec_id), "limit": limit + 1}
        if after is not None:
            params["after"] = after
        rows = await self.reads.all(_EVENTS[after is not None], params)
        if not rows:
            return None
        return [r for r in rows if r[0] is not None]


def _date_text(value: Any) -> str | None:
    if value is None:
        return None
    return value.isoformat() if isinstance(value, date) else str(value)


def _evidence(value: Any, dialect: str) -> list[dict[str, Any]]:
    if value is None:
        return []
    items = orjson.loads(value) if isinstance(value, str | bytes) else value
    if dialect != "postgresql":
        items.sort(key=lambda e: e[1])
    return [
        {"incident_id": uuid_text(incident_id), "reference": reference, "title": title}
        for incident_id, reference, title in items
    ]


def recommendation_json(row: Sequence[Any], today: date, dialect: str) -> dict[str, Any]:
    (
        id_,
        reference,
        title,
        body,
        category,
        issued_by,
        addressee,
        status,
        progress,
        due_on,
        districts,
        evidence,
        version,
        created_at,
        updated_at,
        status_changed_at,
        implemented_at,
    ) = row
    due = _date_text(due_on)
    cited = _evidence(evidence, dialect)
    return {
        "id": uuid_text(id_),
        "reference": reference,
        "title": title,
        "body": body,
        "category": category,
        "issued_by": uuid_text(issued_by),
        "addressee": uuid_text(addressee),
        "status": status,
        "progress": progress,
        "due_on": due,
        # as app.services.recommendations.is_overdue
        "overdue": due is not None
        and date.fromisoformat(due) < today
        and status not in CLOSED_RECOMMENDATION_STATUSES,
        "districts": codes(districts, dialect),
        "incident_ids": [e["incident_id"] for e in cited],
        "evidence": cited,
        "version": version,
        "created_at": time_text(created_at),
        "updated_at": time_text(updated_at),
        "status_changed_at": time_text(status_changed_at),
        "implemented_at": time_text(implemented_at),
    }


def event_json(row: Sequence[Any]) -> dict[str, Any]:
    (
        id_,
        recommendation_id,
        seq,
        at,
        type_,
        actor_id,
        actor_role,
        actor_subject,
        actor_name,
        from_status,
        to_status,
        note,
        data,
    ) = row
    return {
        "id": uuid_text(id_),
        "recommendation_id": uuid_text(recommendation_id),
        "seq": seq,
        "at": time_text(at),
        "type": type_,
        "actor_id": uuid_text(actor_id),
        "actor_role": actor_role,
        "actor_subject": actor_subject,
        "actor_name": actor_name,
        "from_status": from_status,
        "to_status": to_status,
        "note": note,
        "data": orjson.loads(data) if isinstance(data, str | bytes) else (data or {}),
    }

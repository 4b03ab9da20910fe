"""Audit rows written on the event-loop path (:meth:`app.core.reads.Reads.write_many`).

The same rows as :data:`app.services.privacy.access_log._ACCESS_INSERT` writes through the ORM
engine, bound as the engine stores them (UUIDs, timestamps and JSON per database). On SQLite one
``executemany``; on PostgreSQL ONE statement for the whole batch, ``INSERT … SELECT`` from
``jsonb_to_recordset`` of the batch as one JSON text — an ``executemany`` there costs psycopg a
prepared execution and a JSON dump per row, and arrays per column a Python loop per value in
psycopg's array dumper (bench/README.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy.dialects import postgresql

from app.core.reads import Reads, ReadStatement
from app.models.base import table_of
from app.models.system import AuditEvent

_TABLE = table_of(AuditEvent)
_COLUMNS = [column.name for column in _TABLE.columns]
AUDIT_INSERT = ReadStatement(
    f"INSERT INTO {_TABLE.name} ({', '.join(_COLUMNS)}) "  # noqa: S608 (the table's own names)
    f"VALUES ({', '.join(':' + name for name in _COLUMNS)})"
)
_PG_TYPES = [column.type.compile(dialect=postgresql.dialect()) for column in _TABLE.columns]
AUDIT_INSERT_JSON = ReadStatement(
    f"INSERT INTO {_TABLE.name} ({', '.join(_COLUMNS)}) "  # noqa: S608 (the table's own names)
    f"SELECT {', '.join(_COLUMNS)} FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r("
    + ", ".join(f"{name} {type_}" for name, type_ in zip(_COLUMNS, _PG_TYPES, strict=True))
    + ")"
)


def bound(reads: Reads, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """``audit_event`` rows (as :func:`app.services.privacy.access_log.access_rows` builds them)
    with their values as SQLite stores them, for :data:`AUDIT_INSERT` (the instant and the field
    lists, shared by the rows of one read, converted once)."""
    uuid_of, time_of = reads.bind_uuid, reads.bind_time
    times: dict[Any, Any] = {}
    fields: dict[tuple[str, ...], Any] = {}
    out = []
    for row in rows:
        at, names = row["at"], tuple(row["fields"])
        bound_at = times.get(at)
        if bound_at is None:
            bound_at = times[at] = time_of(at)
        bound_fields = fields.get(names)
        if bound_fields is None:
            bound_fields = fields[names] = orjson.dumps(list(names)).decode()
        principal_id = row["principal_id"]
        out.append(
            {
                **row,
                "id": uuid_of(row["id"]),
                "at": bound_at,
                "principal_id": None if principal_id is None else uuid_of(principal_id),
                "fields": bound_fields,
            }
        )
    return out


def as_json(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as one JSON array (PostgreSQL: :data:`AUDIT_INSERT_JSON`), in one ``orjson``
    call: UUIDs as their text, instants in RFC 3339 with their offset, the field lists as
    arrays."""
    return orjson.dumps(rows).decode()


async def write(reads: Reads, rows: Sequence[dict[str, Any]]) -> None:
    """The rows in one transaction, committed when this returns."""
    if reads.dialect == "postgresql":
        await reads.write_many(AUDIT_INSERT_JSON, [{"rows": as_json(rows)}])
    else:
        await reads.write_many(AUDIT_INSERT, bound(reads, rows))

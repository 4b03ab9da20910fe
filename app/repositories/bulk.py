"""Bulk writes of many rows into one table: ``COPY … FROM STDIN`` on PostgreSQL, else one
``executemany`` INSERT with the columns' own bind processors — no per-row ORM or statement work.

Used by the imports (app.services.imports) and usable by any batch writer (e.g. dispatch's
offers): a writer is rendered in Python first and run later, so a caller may render the next
batch while the database writes this one.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import date, datetime
from enum import StrEnum
from operator import itemgetter
from typing import Any

import orjson
from pydantic_core import PydanticUndefined
from sqlalchemy import ARRAY, Boolean, Float, Integer, String, Table, Uuid, bindparam, func
from sqlmodel import Session, SQLModel

from app.models.base import UTCDateTime, table_of
from app.models.tally import ROW_TRIGGERS

#: Rows per INSERT into such a table, and SQLite's limit of bound values per statement (3.32+)
_ROWS_PER_STATEMENT = 500
_SQLITE_MAX_VARIABLES = 32766


def unnest_rows(name: str, *columns: tuple[str, str, Any]) -> Any:
    """PostgreSQL: the derived table ``name`` of ``unnest`` over array parameters, for one
    statement over many rows (``UPDATE … FROM``). ``columns``: (column name, parameter name,
    element type), the parameters bound as arrays of that type."""
    return (
        func.unnest(*(bindparam(param, type_=ARRAY(type_)) for _, param, type_ in columns))
        .table_valued(*(column for column, _, _ in columns))
        .render_derived(name=name)
    )


def bulk_insert(session: Session, model: type[SQLModel], rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` into ``model``'s table in one go (see :func:`bulk_writer`)."""
    write = bulk_writer(session, model, rows)
    if write is not None:
        write()


def bulk_writer(
    session: Session, model: type[SQLModel], rows: list[dict[str, Any]]
) -> Callable[[], None] | None:
    """:func:`table_writer` for rows given as dicts (every row with the first row's keys)."""
    if not rows:
        return None
    names = list(rows[0])
    if len(names) == 1:
        return table_writer(session, model, names, [(row[names[0]],) for row in rows])
    values = itemgetter(*names)  # a tuple per row, in C
    return table_writer(session, model, names, [values(row) for row in rows])


def table_writer(
    session: Session,
    model: type[SQLModel],
    columns: Sequence[str],
    rows: list[tuple[Any, ...]],
    constants: dict[str, Any] | None = None,
) -> Callable[[], None] | None:
    """Render ``rows`` (values in the order of ``columns``) for ``model``'s table now; return the
    call that writes them in one go: ``COPY … FROM STDIN`` on PostgreSQL, else one
    ``executemany`` of the driver with the columns' own bind processors (no per-row ORM or
    statement work). ``None`` when there is nothing to write.

    ``constants`` are columns with one value for the whole batch (a timestamp, the actor): each
    is rendered once. Columns named nowhere get the model's field default (a column added to the
    model later does not break the imports). Rendering and writing are apart so that an import
    renders the next batch in Python while the database writes this one (app.services.imports.pipeline).
    """
    if not rows:
        return None
    table: Table = table_of(model)
    columns, constants = list(columns), dict(constants or {})
    factories = []
    for column in table.columns:
        if column.name in constants or column.name in columns:
            continue
        field_info = model.model_fields.get(column.name)
        if field_info is not None and field_info.default_factory is not None:
            factories.append(field_info.default_factory)  # e.g. an id: one per row
            columns.append(column.name)
        else:
            constants[column.name] = _field_default(model, column.name)()
    if factories:
        rows = [(*row, *(make() for make in factories)) for row in rows]  # type: ignore[call-arg]
    by_name = {column.name: column for column in table.columns}
    varying = [by_name[name] for name in columns]
    fixed = [by_name[name] for name in constants]
    quoted = ", ".join(f'"{column.name}"' for column in (*varying, *fixed))
    dialect = session.get_bind().dialect
    if dialect.name != "postgresql":

        def processor(column: Any) -> Callable[[Any], Any] | None:
            if _is_json(column.type):
                return _to_json_text
            process = column.type._cached_bind_processor(dialect)
            return _memoised(process) if isinstance(column.type, UTCDateTime) else process

        processors = [processor(column) for column in varying]
        fixed_params = tuple(
            process(constants[c.name])
            if (process := processor(c)) is not None
            else constants[c.name]
            for c in fixed
        )
        params = [
            (
                *(
                    proc(value) if proc is not None else value
                    for proc, value in zip(processors, row, strict=True)
                ),
                *fixed_params,
            )
            for row in rows
        ]
        width = len(varying) + len(fixed)
        placeholders = "(" + ", ".join("?" for _ in range(width)) + ")"
        insert_sql = f'INSERT INTO "{table.name}" ({quoted}) VALUES '  # noqa: S608
        if not table.info.get(ROW_TRIGGERS):

            def execute_many() -> None:  # (names from the models, values bound)
                session.connection().exec_driver_sql(insert_sql + placeholders, params)  # type: ignore[arg-type]

            return execute_many
        # A table with row triggers: many rows per statement. SQLite runs a trigger for each
        # row either way, but each execution of a statement with triggers costs ~40 µs more
        # (measured on 3.40: 30,000 incidents by executemany 6,100 rows/s, by statements of
        # 500 rows 9,200; without the triggers 12,800), so fewer executions win.
        per_statement = max(1, min(_ROWS_PER_STATEMENT, _SQLITE_MAX_VARIABLES // width))

        def execute_chunked() -> None:
            connection = session.connection()
            for start in range(0, len(params), per_statement):
                chunk = params[start : start + per_statement]
                connection.exec_driver_sql(
                    insert_sql + ", ".join([placeholders] * len(chunk)),
                    tuple(value for row in chunk for value in row),
                )

        return execute_chunked
    stamps: dict[datetime, str] = {}  # timestamps repeat: format each distinct value once

    def copy_stamp(value: datetime | None) -> str:
        if value is None:
            return "\\N"
        cell = stamps.get(value)
        if cell is None:
            cell = stamps[value] = _copy_datetime(value)
        return cell

    json_cells: dict[int, str] = {}

    def copy_json(value: Any) -> str:
        # rows share their lists and dicts (a batch's audit field lists, cached language lists):
        # each object is serialised once; ``rows`` keeps them alive, so their ids stay unique
        cell = json_cells.get(id(value))
        if cell is None:
            cell = json_cells[id(value)] = _copy_json(value)
        return cell

    def formatter(column: Any) -> Callable[[Any], str]:
        if _is_json(column.type):
            return copy_json
        if isinstance(column.type, UTCDateTime):
            return copy_stamp
        return _copy_formatter(getattr(column.type, "impl", column.type))  # e.g. AutoString

    formatters = [formatter(column) for column in varying]
    tail = "".join("\t" + formatter(c)(constants[c.name]) for c in fixed) + "\n"
    # the COPY text of the whole batch in one pass (no per-row driver formatting), one write
    text_ = "".join(
        [
            "\t".join([fmt(value) for fmt, value in zip(formatters, row, strict=True)]) + tail
            for row in rows
        ]
    )
    copy_sql = f'COPY "{table.name}" ({quoted}) FROM STDIN'

    def copy() -> None:
        raw = session.connection().connection.driver_connection
        if raw is None:  # the pooled connection was invalidated under the session
            raise RuntimeError("no database connection to COPY into")
        with raw.cursor() as cursor, cursor.copy(copy_sql) as stream:
            stream.write(text_)

    return copy


# --- COPY text format (PostgreSQL): one cell -------------------------------------------------------

_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(value: str) -> str:
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return value.translate(_COPY_ESCAPES)
    return value


def _copy_datetime(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    return value.isoformat()


_COPY_FORMATTERS: dict[type, Callable[[Any], str]] = {
    str: _copy_text,
    bool: lambda value: "t" if value else "f",
    int: str,
    float: repr,
    uuid.UUID: str,
    datetime: _copy_datetime,
    date: date.isoformat,
    type(None): lambda value: "\\N",
}


def _copy_cell(value: Any) -> str:
    """A value as a cell of ``COPY … FROM STDIN`` (text format)."""
    formatter = _COPY_FORMATTERS.get(type(value))
    if formatter is not None:
        return formatter(value)
    for kind, formatter in _COPY_FORMATTERS.items():  # subclasses, e.g. StrEnum members
        if isinstance(value, kind):
            return formatter(value.value if isinstance(value, StrEnum) else value)
    raise TypeError(f"cannot COPY a {type(value).__name__}")


def _copy_formatter(type_: Any) -> Callable[[Any], str]:
    """The cell formatter for a column type (fast paths for the common Python types)."""
    for kind, formatter in (
        (String, _copy_str),
        (Uuid, copy_uuid),
        (Boolean, _copy_bool),
        (Integer, _copy_int),
        (Float, _copy_float),
    ):
        if isinstance(type_, kind):
            return formatter
    return _copy_cell


def _copy_str(value: Any) -> str:
    if value is None:
        return "\\N"
    if type(value) is str:
        if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
            return value.translate(_COPY_ESCAPES)
        return value
    return _copy_cell(value)


#: Ids are written several times per batch (an incident's id in its competences, timeline and
#: audit rows): each is formatted once. Bounded; the GIL makes the dict safe across threads.
_UUID_TEXT: dict[uuid.UUID, str] = {}


def copy_uuid(value: Any) -> str:
    if value is None:
        return "\\N"
    if type(value) is not uuid.UUID:
        return _copy_cell(value)
    cell = _UUID_TEXT.get(value)
    if cell is None:
        if len(_UUID_TEXT) >= 20_000:
            _UUID_TEXT.clear()
        cell = _UUID_TEXT[value] = str(value)
    return cell


def _copy_bool(value: Any) -> str:
    if value is True:
        return "t"
    if value is False:
        return "f"
    return _copy_cell(value)


def _typed_copy(kind: type, render: Callable[[Any], str]) -> Callable[[Any], str]:
    """A cell formatter with a fast path for values of exactly ``kind`` (and ``None``)."""

    def copy(value: Any) -> str:
        if type(value) is kind:
            return render(value)
        if value is None:
            return "\\N"
        return _copy_cell(value)

    return copy


_copy_int = _typed_copy(int, str)
_copy_float = _typed_copy(float, repr)


def _copy_json(value: Any) -> str:
    # JSON goes as its text (orjson is ~8x faster than the driver's json)
    return "\\N" if value is None else _copy_text(orjson.dumps(value).decode())


def _to_json_text(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _memoised(process: Callable[[Any], Any] | None) -> Callable[[Any], Any] | None:
    """Timestamps repeat (a batch shares ``now``): convert each distinct value once."""
    if process is None:
        return None
    seen: dict[Any, Any] = {}

    def cached(value: Any) -> Any:
        if value not in seen:
            seen[value] = process(value)
        return seen[value]

    return cached


def _field_default(model: type[SQLModel], name: str) -> Callable[[], Any]:
    field_info = model.model_fields.get(name)
    if field_info is None:
        return lambda: None
    if field_info.default_factory is not None:
        # a factory may take the validated data (pydantic's one-argument form); get_default
        # calls either form
        return lambda: field_info.get_default(call_default_factory=True, validated_data={})
    default = None if field_info.default is PydanticUndefined else field_info.default
    return lambda: default


def _is_json(type_: Any) -> bool:
    from sqlalchemy import JSON

    return isinstance(type_, JSON) or isinstance(getattr(type_, "impl", None), JSON)

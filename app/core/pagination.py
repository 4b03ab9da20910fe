"""Keyset pagination with an opaque cursor (base64url JSON of the last row's sort key)."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, TypeDecorator, and_, or_
from sqlalchemy.orm import Mapped, QueryableAttribute

from app.core.errors import BadRequest
from app.core.problems import ProblemType


@dataclass(frozen=True, slots=True)
class PageParams:
    limit: int
    cursor: str | None


def encode_cursor(values: Sequence[Any]) -> str:
    def plain(value: Any) -> Any:
        if isinstance(value, datetime):
            return {"t": value.isoformat()}
        if isinstance(value, uuid.UUID):
            return {"u": str(value)}
        return value

    raw = json.dumps([plain(v) for v in values], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, arity: int) -> list[Any]:
    def typed(value: Any) -> Any:
        if isinstance(value, dict) and set(value) == {"t"}:
            parsed = datetime.fromisoformat(value["t"])
            if parsed.tzinfo is None:
                raise ValueError("naive")
            return parsed
        if isinstance(value, dict) and set(value) == {"u"}:
            return uuid.UUID(value["u"])
        if isinstance(value, str | int | float) or value is None:
            return value
        raise ValueError("bad value")

    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(values, list) or len(values) != arity:
            raise ValueError("arity")
        return [typed(v) for v in values]
    except (ValueError, TypeError, binascii.Error, json.JSONDecodeError, UnicodeDecodeError):
        raise invalid_cursor() from None


def invalid_cursor() -> BadRequest:
    return BadRequest(
        "The cursor is not valid; start again without it.", type_=ProblemType.INVALID_CURSOR
    )


#: Any SELECT, whatever its columns.
AnySelect = Select[*tuple[Any, ...]]
_S = TypeVar("_S", bound=AnySelect)


def _expression(column: ColumnElement[Any] | Mapped[Any]) -> ColumnElement[Any]:
    """The column expression of a sort column given as a Core column or a model attribute."""
    if isinstance(column, ColumnElement):
        return column
    if isinstance(column, QueryableAttribute):
        return column.expression
    raise TypeError(f"not a column: {column!r}")


def _python_type(column: ColumnElement[Any]) -> type:
    sa_type = column.type
    if isinstance(sa_type, TypeDecorator):
        sa_type = sa_type.impl_instance
    try:
        return sa_type.python_type
    except NotImplementedError:
        return object


def _check_types(columns: Sequence[ColumnElement[Any]], values: Sequence[Any]) -> None:
    """A decodable cursor must still hold a value of each sort column's type (never NULL):
    a forged ``[1, 2]`` would otherwise reach the database as a wrong-typed parameter (500)."""
    for column, value in zip(columns, values, strict=True):
        expected = _python_type(column)
        if value is None or isinstance(value, bool) or not isinstance(value, expected):
            raise invalid_cursor()


def keyset(
    stmt: _S,
    sort_columns: Sequence[ColumnElement[Any] | Mapped[Any]],
    params: PageParams,
    *,
    descending: bool = False,
) -> _S:
    """Order ``stmt`` by ``sort_columns`` (unique together; Core columns or model attributes
    through ``col()``), continue after the cursor, fetch limit+1."""
    columns = [_expression(c) for c in sort_columns]
    if params.cursor:
        after = decode_cursor(params.cursor, len(columns))
        _check_types(columns, after)
        stmt = stmt.where(_after(columns, after, descending))
    order = [c.desc() if descending else c.asc() for c in columns]
    return stmt.order_by(*order).limit(params.limit + 1)


def _after(
    columns: Sequence[ColumnElement[Any]], values: Sequence[Any], descending: bool
) -> ColumnElement[bool]:
    # (a, b) > (x, y)  ==  a > x OR (a = x AND b > y): portable across SQLite and PostgreSQL.
    clauses = []
    for i, column in enumerate(columns):
        equal = [columns[j] == values[j] for j in range(i)]
        step = column < values[i] if descending else column > values[i]
        clauses.append(and_(*equal, step))
    return or_(*clauses)


def page_slice(rows: Sequence[Any], limit: int, key: Any) -> tuple[list[Any], str | None]:
    """Cut the extra row and make the cursor from the last kept row via ``key(row)``."""
    rows = list(rows)
    if len(rows) <= limit:
        return rows, None
    kept = rows[:limit]
    return kept, encode_cursor(key(kept[-1]))

"""Keyset cursors of the event-loop reads: decoded and checked as :func:`app.core.pagination.keyset`
checks them for the unit-of-work path, so that both paths refuse the same cursors (400)."""

from __future__ import annotations

from typing import Any

from app.core.pagination import decode_cursor, encode_cursor, invalid_cursor


def after(cursor: str | None, *types: type) -> list[Any] | None:
    """The sort key a cursor continues after — one value of each sort column's type, never
    ``null`` or a boolean — or ``None`` without a cursor."""
    if not cursor:
        return None
    values = decode_cursor(cursor, len(types))
    for value, expected in zip(values, types, strict=True):
        if value is None or isinstance(value, bool) or not isinstance(value, expected):
            raise invalid_cursor()
    return values


def next_cursor(
    rows: list[tuple[Any, ...]], limit: int, key: Any
) -> tuple[list[tuple[Any, ...]], str | None]:
    """Cut the extra row (``limit + 1`` were read) and make the cursor from the last kept row via
    ``key(row)``, as :func:`app.core.pagination.page_slice` does."""
    if len(rows) <= limit:
        return rows, None
    kept = rows[:limit]
    return kept, encode_cursor(key(kept[-1]))

"""Cell parsers: one cell of a CSV row (text) or an NDJSON record (JSON values) → a value, or
:class:`FieldError` with the message the row error carries."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from app.services.csv_io import unescape_cell
from app.services.imports.base import FieldError

#: Text the database cannot store is refused cell by cell (a row error), never sent to it.
NUL_MESSAGE = "contains a NUL character, which cannot be stored"


def check_encodable(value: str) -> None:
    """Refuse a lone surrogate (NDJSON may escape one: ``"\\ud800"``; UTF-8 cannot hold it)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise FieldError(
            "contains a lone surrogate (not valid Unicode), which cannot be stored"
        ) from None


def _text(raw: Any, is_csv: bool, max_len: int, *, strip: bool = True) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise FieldError("must be text")
    value = unescape_cell(raw) if is_csv else raw
    if strip:
        value = value.strip()
    if value == "":
        return None
    if len(value) > max_len:
        raise FieldError(f"is longer than {max_len} characters")
    if "\x00" in value:
        raise FieldError(NUL_MESSAGE)
    if not value.isascii():
        check_encodable(value)
    return value


def _code(raw: Any, is_csv: bool) -> str | None:
    value = _text(raw, is_csv, 64)
    return value


def _int(raw: Any, is_csv: bool, low: int, high: int) -> int | None:
    if raw is None or raw == "":
        return None
    if isinstance(raw, bool):
        raise FieldError("must be a whole number")
    if isinstance(raw, int):
        value = raw
    elif isinstance(raw, str):
        try:
            value = int(raw.strip())
        except ValueError:
            raise FieldError("must be a whole number") from None
    elif isinstance(raw, float) and raw.is_integer():
        value = int(raw)
    else:
        raise FieldError("must be a whole number")
    if not low <= value <= high:
        raise FieldError(f"must be between {low} and {high}")
    return value


def _float(raw: Any, is_csv: bool, low: float, high: float) -> float | None:
    if raw is None or raw == "":
        return None
    if isinstance(raw, bool):
        raise FieldError("must be a number")
    if isinstance(raw, int | float):
        try:
            value = float(raw)
        except OverflowError:  # an NDJSON integer beyond any float
            raise FieldError(f"must be between {low:g} and {high:g}") from None
    elif isinstance(raw, str):
        text = raw.strip()
        if "," in text and "." not in text:
            text = text.replace(",", ".")  # German spreadsheets: 50,9787
        try:
            value = float(text)
        except ValueError:
            raise FieldError("must be a number") from None
    else:
        raise FieldError("must be a number")
    if not low <= value <= high:  # also refuses nan
        raise FieldError(f"must be between {low:g} and {high:g}")
    return value


_TRUE = frozenset({"true", "1", "yes", "ja", "wahr"})
_FALSE = frozenset({"false", "0", "no", "nein", "falsch"})


def _bool(raw: Any, is_csv: bool) -> bool | None:
    if raw is None or raw == "":
        return None
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str):
        text = raw.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise FieldError("must be true or false")


def _timestamp(raw: Any, is_csv: bool) -> datetime | None:
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str):
        raise FieldError("must be an RFC 3339 timestamp")
    try:
        value = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise FieldError("must be an RFC 3339 timestamp, e.g. 2026-05-01T12:00:00Z") from None
    if value.tzinfo is None:
        raise FieldError("needs a time zone offset, e.g. 2026-05-01T12:00:00Z")
    return value.astimezone(UTC)


def _list(raw: Any, is_csv: bool, max_items: int) -> list[str]:
    if raw is None or raw == "":
        return []
    if isinstance(raw, str):
        items = [part.strip() for part in raw.split("|")]
    elif isinstance(raw, list) and all(isinstance(item, str) for item in raw):
        items = [item.strip() for item in raw]
    else:
        raise FieldError("must be a list of codes ('a|b' or a JSON array of strings)")
    items = [item for item in items if item]
    if len(items) > max_items:
        raise FieldError(f"has more than {max_items} entries")
    return items


def _uuid(raw: Any, is_csv: bool) -> uuid.UUID | None:
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str):
        raise FieldError("must be a UUID")
    try:
        return uuid.UUID(raw.strip())
    except ValueError:
        raise FieldError("must be a UUID") from None


def _csv_text(raw: Any, max_len: int, *, strip: bool = True) -> str | None:
    """:func:`_text` of a CSV cell, inlined for the fast path (same result, same errors)."""
    if raw is None:
        return None
    if raw[:1] == "'":
        raw = unescape_cell(raw)
    if strip:
        raw = raw.strip()
    if not raw:
        return None
    if len(raw) > max_len:
        raise FieldError(f"is longer than {max_len} characters")
    if "\x00" in raw:  # (a CSV body is strict UTF-8: no lone surrogates to look for)
        raise FieldError(NUL_MESSAGE)
    return raw  # type: ignore[no-any-return]

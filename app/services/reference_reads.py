"""Reference data reads on the event loop: districts, competences and organisations, listed and
by key. Every role may read reference data (``Action.reference_read``), so every caller is
served here; the answers are those of :mod:`app.services.reference_data` (same JSON, ETags,
cursors and 404 problems — tests compare both paths)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import orjson

from app.core.errors import NotFound
from app.core.pagination import PageParams
from app.core.reads import Reads, time_text, time_value, uuid_text
from app.repositories.reference_reads import (
    ORGANISATION_CREATED_AT,
    ORGANISATION_ID,
    ReferenceReads,
    competence_json,
    district_json,
    organisation_json,
)
from app.services.read_cursors import after, next_cursor

VERSION = {"district": 6, "competence": 3, "organisation": 3}


def _page(items: list[dict[str, Any]], cursor: str | None) -> bytes:
    return orjson.dumps({"items": items, "next_cursor": cursor})


async def district(reads: Reads, code: str) -> tuple[bytes, int]:
    """The district's JSON and its version (for the ETag)."""
    row = await ReferenceReads(reads).district(code)
    if row is None:
        raise NotFound(f"No district '{code}'.")
    return orjson.dumps(district_json(row, reads.dialect)), row[VERSION["district"]]


async def districts(reads: Reads, params: PageParams, city: str | None) -> bytes:
    key = after(params.cursor, str)
    rows = await ReferenceReads(reads).districts(params.limit, city, key[0] if key else None)
    rows, cursor = next_cursor(rows, params.limit, lambda r: [r[0]])
    return _page([district_json(r, reads.dialect) for r in rows], cursor)


async def competence(reads: Reads, code: str) -> tuple[bytes, int]:
    row = await ReferenceReads(reads).competence(code)
    if row is None:
        raise NotFound(f"No competence '{code}'.")
    return orjson.dumps(competence_json(row)), row[VERSION["competence"]]


async def competences(reads: Reads, params: PageParams) -> bytes:
    key = after(params.cursor, str)
    rows = await ReferenceReads(reads).competences(params.limit, key[0] if key else None)
    rows, cursor = next_cursor(rows, params.limit, lambda r: [r[0]])
    return _page([competence_json(r) for r in rows], cursor)


async def organisation(reads: Reads, organisation_id: uuid.UUID) -> tuple[bytes, int]:
    row = await ReferenceReads(reads).organisation(organisation_id)
    if row is None:
        raise NotFound(f"No organisation {organisation_id}.")
    return orjson.dumps(organisation_json(row)), row[VERSION["organisation"]]


def _organisation_key(row: tuple[Any, ...]) -> list[Any]:
    return [
        time_value(time_text(row[ORGANISATION_CREATED_AT]) or ""),
        uuid.UUID(uuid_text(row[ORGANISATION_ID])),
    ]


async def organisations(reads: Reads, params: PageParams) -> bytes:
    key = after(params.cursor, datetime, uuid.UUID)
    rows = await ReferenceReads(reads).organisations(
        params.limit, (key[0], key[1]) if key else None
    )
    rows, cursor = next_cursor(rows, params.limit, _organisation_key)
    return _page([organisation_json(r) for r in rows], cursor)

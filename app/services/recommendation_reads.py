"""Recommendation reads on the event loop: get by id, the filtered list and the timeline. Every
role that may read recommendations (``Action.recommendations_read``: staff and viewers) sees all
of them, so every caller is served here; the answers are those of
:class:`app.services.recommendations.RecommendationService` (same JSON — ``overdue`` against the
clock's today —, ETags, cursors and 404 problems; tests compare both paths)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import orjson

from app.core.clock import get_clock
from app.core.errors import BadRequest, NotFound
from app.core.pagination import PageParams
from app.core.reads import Reads, time_text, time_value, uuid_text
from app.repositories.recommendation_reads import (
    CREATED_AT,
    ID,
    SEQ,
    VERSION,
    RecommendationReads,
    event_json,
    recommendation_json,
)
from app.repositories.recommendations import RecommendationFilter
from app.services.read_cursors import after, next_cursor


async def get(reads: Reads, rec_id: uuid.UUID) -> tuple[bytes, int]:
    """The recommendation's JSON and its version (for the ETag)."""
    row = await RecommendationReads(reads).row(rec_id)
    if row is None:
        raise NotFound(f"No recommendation {rec_id}.")
    today = get_clock().today()
    return orjson.dumps(recommendation_json(row, today, reads.dialect)), row[VERSION]


def _key(row: tuple[Any, ...]) -> list[Any]:
    return [time_value(time_text(row[CREATED_AT]) or ""), uuid.UUID(uuid_text(row[ID]))]


async def page(reads: Reads, flt: RecommendationFilter, params: PageParams) -> bytes:
    """One page of ``{"items": [...], "next_cursor": ...}``, newest first."""
    key = after(params.cursor, datetime, uuid.UUID)
    today = get_clock().today()
    rows = await RecommendationReads(reads).page(
        flt, today, params.limit, (key[0], key[1]) if key else None
    )
    rows, cursor = next_cursor(rows, params.limit, _key)
    items = [recommendation_json(r, today, reads.dialect) for r in rows]
    return orjson.dumps({"items": items, "next_cursor": cursor})


async def events(reads: Reads, rec_id: uuid.UUID, params: PageParams) -> bytes:
    """One page of the recommendation's timeline, in order."""
    repo = RecommendationReads(reads)
    try:
        key = after(params.cursor, int)
    except BadRequest:
        # the unit-of-work path loads the recommendation before it reads the cursor
        if await repo.events(rec_id, 0, None) is None:
            raise NotFound(f"No recommendation {rec_id}.") from None
        raise
    rows = await repo.events(rec_id, params.limit, key[0] if key else None)
    if rows is None:
        raise NotFound(f"No recommendation {rec_id}.")
    rows, cursor = next_cursor(rows, params.limit, lambda r: [r[SEQ]])
    return orjson.dumps({"items": [event_json(r) for r in rows], "next_cursor": cursor})

"""Content negotiation of the incident list: JSON pages, or a streamed CSV / GeoJSON export."""

from __future__ import annotations

from typing import Any

from fastapi.responses import StreamingResponse

from app.api.negotiation import accept_ranges
from app.core.security import Principal
from app.repositories.incidents import IncidentFilter
from app.services.exports import CSV_MEDIA_TYPE, GEOJSON_MEDIA_TYPE, stream_csv, stream_geojson

EXPORT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "A page of incidents (JSON), or — with `Accept: text/csv` or "
        "`Accept: application/geo+json` — every matching incident, streamed (limit/cursor "
        "do not apply).",
        "content": {
            CSV_MEDIA_TYPE: {"schema": {"type": "string", "description": "CSV, header row first"}},
            GEOJSON_MEDIA_TYPE: {
                "schema": {"type": "object", "description": "GeoJSON FeatureCollection"}
            },
        },
    }
}


def export_media_type(accept: str | None) -> str | None:
    """The export the ``Accept`` header asks for, or ``None`` for the JSON list.

    CSV and GeoJSON are chosen only when named explicitly and preferred (by q-value, then by
    order) over ``application/json``; wildcards mean JSON.
    """
    if not accept:
        return None
    best: tuple[float, int, str | None] = (0.0, 0, None)
    for position, media, q in accept_ranges(accept):
        if media in ("application/*", "*/*"):
            candidate: tuple[float, int, str | None] = (q - 0.001, -position, None)
        elif media == "application/json":
            candidate = (q, -position, None)
        elif media in (CSV_MEDIA_TYPE, GEOJSON_MEDIA_TYPE):
            candidate = (q, -position, media)
        else:
            continue
        if candidate[0] > 0 and candidate[:2] > best[:2]:
            best = candidate
    return best[2]


def export_response(
    media_type: str, flt: IncidentFilter, principal: Principal
) -> StreamingResponse:
    if media_type == CSV_MEDIA_TYPE:
        return StreamingResponse(
            stream_csv(flt, principal),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="incidents.csv"'},
        )
    return StreamingResponse(
        stream_geojson(flt, principal),
        media_type=GEOJSON_MEDIA_TYPE,
        headers={"Content-Disposition": 'attachment; filename="incidents.geojson"'},
    )

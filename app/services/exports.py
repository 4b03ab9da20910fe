"""Streamed exports of incidents: CSV (the import's columns — a lossless round trip) and GeoJSON.

Every matching row is exported (``limit``/``cursor`` do not apply), read in keyset batches of
1,000 ordered by ``reference`` (unique; allocation order, which an import into an empty database
reproduces), in constant memory. The request's session is closed when the route returns, so the
generator opens its own read-only session; on PostgreSQL it runs REPEATABLE READ so that all
batches see one snapshot. Scoping (a partner's own organisation, a manager's assigned incidents)
and field visibility (reporter data) are the rules of app.services.visibility; every exported
incident whose reporter data the caller sees leaves an ``access`` audit entry (written per batch
in a short transaction of its own, app.services.privacy.access_log).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, cast

import orjson
from sqlmodel import Session, col

from app.core.db import session_scope
from app.core.pagination import AnySelect
from app.core.security import Principal
from app.models.incident import Incident
from app.repositories.incidents import IncidentFilter, IncidentRepository
from app.services import visibility
from app.services.csv_io import escape_cell
from app.services.imports import INCIDENT_COLUMNS
from app.services.incidents import open_slots_of
from app.services.privacy.access_log import log_reporter_access

BATCH_ROWS = 1000
CSV_MEDIA_TYPE = "text/csv"
GEOJSON_MEDIA_TYPE = "application/geo+json"

_SELECTED = (
    "id",
    "reference",
    "title",
    "description",
    "district",
    "lat",
    "lon",
    "category",
    "escalation_level",
    "languages",
    "status",
    "occurred_at",
    "reported_at",
    "source",
    "external_id",
    "organisation_id",
    "has_reporter",
    "reporter_name",
    "reporter_contact",
    "reporter_anonymous",
    "version",
    "created_at",
    "updated_at",
)


def _rfc3339(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _batches(
    flt: IncidentFilter, principal: Principal, *, located_only: bool = False
) -> Iterator[tuple[Sequence[Any], dict[Any, list[str]], set[Any], Session]]:
    """Keyset batches ``(rows, competences by id, ids whose reporter the caller sees)``."""
    with session_scope(write=False) as session:
        if session.get_bind().dialect.name == "postgresql":
            session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        repo = IncidentRepository(session)
        scope = visibility.incident_scope(flt, principal)
        base: AnySelect = repo.filtered(scope).with_only_columns(
            *(getattr(Incident, name) for name in _SELECTED)
        )
        if located_only:
            base = base.where(col(Incident.lat).is_not(None), col(Incident.lon).is_not(None))
        last: str | None = None
        while True:
            stmt = base
            if last is not None:
                stmt = stmt.where(col(Incident.reference) > last)
            rows = session.execute(stmt.order_by(col(Incident.reference)).limit(BATCH_ROWS)).all()
            if not rows:
                return
            ids = [row.id for row in rows]
            competences = repo.competences_of(ids)
            # each row carries the incident's id and organisation_id (see _SELECTED)
            facts = cast(Sequence[visibility.IncidentFacts], rows)
            visible = visibility.reporter_visible(session, facts, principal)
            log_reporter_access(
                session,
                principal,
                [
                    (row.id, row.reporter_name, row.reporter_contact)
                    for row in rows
                    if row.id in visible and row.has_reporter
                ],
                action="export",
                separate=True,
            )
            yield rows, competences, visible, session
            if len(rows) < BATCH_ROWS:
                return
            last = rows[-1].reference


def csv_row(row: Any, competences: list[str], with_reporter: bool) -> list[str]:
    reporter = with_reporter and row.has_reporter
    values = {
        "external_id": escape_cell(row.external_id or ""),
        "source": row.source,
        "reference": row.reference,
        "title": escape_cell(row.title),
        "description": escape_cell(row.description or ""),
        "district": row.district,
        "lat": "" if row.lat is None else repr(float(row.lat)),
        "lon": "" if row.lon is None else repr(float(row.lon)),
        "category": row.category,
        "escalation_level": str(row.escalation_level),
        "required_competences": "|".join(competences),
        "languages": "|".join(row.languages or []),
        "status": row.status,
        "occurred_at": _rfc3339(row.occurred_at),
        "reported_at": _rfc3339(row.reported_at),
        "organisation_id": str(row.organisation_id) if row.organisation_id else "",
        "reporter_name": escape_cell(row.reporter_name or "") if reporter else "",
        "reporter_contact": escape_cell(row.reporter_contact or "") if reporter else "",
        "reporter_anonymous": ("true" if row.reporter_anonymous else "false") if reporter else "",
    }
    return [values[name] for name in INCIDENT_COLUMNS]


def stream_csv(flt: IncidentFilter, principal: Principal) -> Iterator[bytes]:
    """The CSV export: header row, then every visible incident (RFC 4180, UTF-8, comma)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(INCIDENT_COLUMNS)
    yield buffer.getvalue().encode("utf-8")
    for rows, competences, visible, _ in _batches(flt, principal):
        buffer.seek(0)
        buffer.truncate()
        writer.writerows(
            csv_row(row, competences.get(row.id, []), row.id in visible) for row in rows
        )
        yield buffer.getvalue().encode("utf-8")


def stream_geojson(flt: IncidentFilter, principal: Principal) -> Iterator[bytes]:
    """A GeoJSON FeatureCollection of the visible incidents that have a location."""
    yield b'{"type":"FeatureCollection","features":['
    first = True
    for rows, competences, visible, session in _batches(flt, principal, located_only=True):
        slots = open_slots_of(IncidentRepository(session), rows)
        parts = []
        for row in rows:
            public = visibility.incident_view(
                row,
                competences.get(row.id, []),
                sees_reporter=row.id in visible,
                open_slots=slots.get(row.id, ()),
            )
            properties = public.model_dump(mode="json")
            properties.pop("location", None)
            feature = {
                "type": "Feature",
                "id": str(row.id),
                "geometry": {"type": "Point", "coordinates": [row.lon, row.lat]},
                "properties": properties,
            }
            parts.append(orjson.dumps(feature))
        chunk = b",".join(parts)
        yield chunk if first else b"," + chunk
        first = False
    yield b"]}\n"

"""Bulk imports: CSV or NDJSON bodies, streamed, upserted in batches (admins and coordinators).

The route is a plain (sync) route, so the import runs in the thread pool like every other write;
it pulls the body chunk by chunk from the event loop (``anyio.from_thread``) as the parser needs
it. Nothing buffers the body: memory stays constant however large the file is, and the upload is
back-pressured by the database writes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

import anyio.from_thread
from fastapi import APIRouter, Query, Request

from app.api.deps import (
    AllowedImports,
    SessionDep,
)
from app.api.problems import problems
from app.api.routing import UnitOfWorkRoute
from app.core.errors import UnsupportedMediaType
from app.core.security import Principal
from app.models.import_report import ImportReport
from app.services.imports import BodyFormat, ImportKind, run_import
from app.services.imports import ImportResult as _Result

router = APIRouter(prefix="/imports", tags=["imports"], route_class=UnitOfWorkRoute)

_MEDIA_TYPES = {
    "text/csv": BodyFormat.csv,
    "application/x-ndjson": BodyFormat.ndjson,
    "application/jsonl": BodyFormat.ndjson,
}


def _openapi_body(columns: str) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "description": f"CSV with a header row ({columns}) or NDJSON with the same fields.",
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                "application/x-ndjson": {"schema": {"type": "string"}},
            },
        }
    }


def body_format(request: Request) -> BodyFormat:
    media, _, params = request.headers.get("content-type", "").partition(";")
    found = _MEDIA_TYPES.get(media.strip().lower())
    if found is None:
        raise UnsupportedMediaType(
            "Send the file as text/csv or application/x-ndjson (UTF-8)."
        )
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in (
            "utf-8", "utf8"
        ):
            raise UnsupportedMediaType("Imports must be UTF-8 (charset=utf-8).")
    return found


def body_chunks(request: Request) -> Iterator[bytes]:
    """The request body, chunk by chunk, pulled from the event loop by this worker thread."""
    stream = request.stream()
    while True:
        try:
            chunk = anyio.from_thread.run(stream.__anext__)
        except StopAsyncIteration:
            return
        if chunk:
            yield chunk


def _import(
    kind: ImportKind, request: Request, session: SessionDep, principal: Principal,
    dry_run: bool, atomic: bool,
) -> ImportReport:
    result: _Result = run_import(
        session, kind, body_format(request), body_chunks(request), principal,
        dry_run=dry_run, atomic=atomic,
    )
    return ImportReport.model_validate(result.__dict__)


DryRun = Annotated[bool, Query(description="Validate and count; write nothing")]
Atomic = Annotated[
    bool, Query(description="true: any row error → nothing is written; false: valid rows are")
]

_INCIDENT_COLUMNS = (
    "external_id, source, reference (ignored), title, description, district, lat, lon, "
    "category, escalation_level, required_competences (a|b), languages (a|b), status, "
    "occurred_at, reported_at, organisation_id, reporter_name, reporter_contact, "
    "reporter_anonymous"
)
_MANAGER_COLUMNS = (
    "email, display_name, phone, organisation_id, status, home_district, districts (a|b), "
    "languages (a|b), max_open_assignments, competences (code:certified_on:expires_on|…), "
    "notify_by_email (true|false)"
)


@router.post(
    "/incidents",
    summary="Import incidents (CSV or NDJSON; upsert by source + external_id)",
    responses=problems(403, 409, 413, 415),
    openapi_extra=_openapi_body(_INCIDENT_COLUMNS),
)
def imports_incidents(
    request: Request,
    session: SessionDep,
    principal: AllowedImports,
    dry_run: DryRun = False,
    atomic: Atomic = True,
) -> ImportReport:
    return _import(ImportKind.incidents, request, session, principal, dry_run, atomic)


@router.post(
    "/managers",
    summary="Import managers (CSV or NDJSON; upsert by email)",
    responses=problems(403, 409, 413, 415),
    openapi_extra=_openapi_body(_MANAGER_COLUMNS),
)
def imports_managers(
    request: Request,
    session: SessionDep,
    principal: AllowedImports,
    dry_run: DryRun = False,
    atomic: Atomic = True,
) -> ImportReport:
    return _import(ImportKind.managers, request, session, principal, dry_run, atomic)

"""Bulk imports: CSV or NDJSON bodies, streamed, upserted in batches (admins and coordinators).

The body is received in full before the import takes a database session or a unit-of-work slot
(:func:`spooled_body`): into a spooled temporary file — up to 1 MiB in memory, the rest on disk —
so memory stays constant however large the file is, and a slow upload holds no connection, no
worker thread and no lock while it trickles in. ``KOKOMA_IMPORT_BODY_TIMEOUT_SECONDS`` bounds how
long a body may take (→ 408). The route is then a plain (sync) route: the import runs in the
thread pool like every other write and reads the spooled body chunk by chunk.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Iterator
from typing import IO, Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Query, Request

from app.api.deps import (
    AllowedImports,
    SessionDep,
)
from app.api.problems import problems
from app.api.routing import UnitOfWorkRoute
from app.core.config import get_settings
from app.core.errors import RequestTimeout, UnsupportedMediaType
from app.core.problems import ProblemType
from app.core.security import Principal
from app.models.import_report import ImportReport
from app.services.imports import BodyFormat, ImportKind, run_import
from app.services.imports import ImportResult as _Result

router = APIRouter(prefix="/imports", tags=["imports"], route_class=UnitOfWorkRoute)

SPOOL_IN_MEMORY = 1024 * 1024
CHUNK = 256 * 1024

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
                "text/csv": {"schema": {"type": "string", "minLength": 1}},
                "application/x-ndjson": {"schema": {"type": "string", "minLength": 1}},
            },
        }
    }


def body_format(request: Request) -> BodyFormat:
    media, _, params = request.headers.get("content-type", "").partition(";")
    found = _MEDIA_TYPES.get(media.strip().lower())
    if found is None:
        raise UnsupportedMediaType("Send the file as text/csv or application/x-ndjson (UTF-8).")
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in (
            "utf-8",
            "utf8",
        ):
            raise UnsupportedMediaType("Imports must be UTF-8 (charset=utf-8).")
    return found


async def spooled_body(request: Request) -> AsyncIterator[tuple[BodyFormat, IO[bytes]]]:
    """The body's format (415 first) and the whole body, received before the route's session.

    Declared before :data:`SessionDep` in the routes: FastAPI resolves dependencies in order, so
    the unit-of-work slot and the connection are taken only once the body is in.
    """
    found = body_format(request)
    timeout = get_settings().import_body_timeout_seconds
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY) as spool:
        try:
            with anyio.fail_after(timeout):
                async for chunk in request.stream():
                    spool.write(chunk)
        except TimeoutError:
            raise RequestTimeout(
                f"The import body did not arrive within {timeout:g} seconds; send it again "
                "(KOKOMA_IMPORT_BODY_TIMEOUT_SECONDS).",
                type_=ProblemType.IMPORT_BODY_TIMEOUT,
            ) from None
        spool.seek(0)
        yield found, spool


SpooledBody = Annotated[tuple[BodyFormat, IO[bytes]], Depends(spooled_body)]


def body_chunks(body: IO[bytes]) -> Iterator[bytes]:
    """The spooled body, chunk by chunk (read by the worker thread: no event-loop hops)."""
    while chunk := body.read(CHUNK):
        yield chunk


def _import(
    kind: ImportKind,
    body: tuple[BodyFormat, IO[bytes]],
    session: SessionDep,
    principal: Principal,
    dry_run: bool,
    atomic: bool,
) -> ImportReport:
    body_format_, spool = body
    result: _Result = run_import(
        session,
        kind,
        body_format_,
        body_chunks(spool),
        principal,
        dry_run=dry_run,
        atomic=atomic,
    )
    return ImportReport.model_validate(result.__dict__)


DryRun = Annotated[bool, Query(description="Validate and count; write nothing")]
Atomic = Annotated[
    bool, Query(description="true: any row error → nothing is written; false: valid rows are")
]

_INCIDENT_COLUMNS = (
    "external_id, source, reference (the key when external_id is empty), title, description, "
    "district, lat, lon, "
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
    responses=problems(403, 408, 409, 413, 415),
    openapi_extra=_openapi_body(_INCIDENT_COLUMNS),
)
def imports_incidents(
    principal: AllowedImports,
    body: SpooledBody,  # before the session: received in full first
    session: SessionDep,
    dry_run: DryRun = False,
    atomic: Atomic = True,
) -> ImportReport:
    return _import(ImportKind.incidents, body, session, principal, dry_run, atomic)


@router.post(
    "/managers",
    summary="Import managers (CSV or NDJSON; upsert by email)",
    responses=problems(403, 408, 409, 413, 415),
    openapi_extra=_openapi_body(_MANAGER_COLUMNS),
)
def imports_managers(
    principal: AllowedImports,
    body: SpooledBody,  # before the session: received in full first
    session: SessionDep,
    dry_run: DryRun = False,
    atomic: Atomic = True,
) -> ImportReport:
    return _import(ImportKind.managers, body, session, principal, dry_run, atomic)

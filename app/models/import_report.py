"""The response of ``POST /api/v1/imports/{incidents,managers}``."""

from __future__ import annotations

from pydantic import Field as PField

from app.models.common import ResponseModel


class ImportRowError(ResponseModel):
    row: int = PField(description="1-based data record (the header row is not counted)")
    field: str | None = PField(description="The column, or null when the record is unreadable")
    message: str


class ImportReport(ResponseModel):
    created: int
    updated: int
    unchanged: int
    errors: list[ImportRowError] = PField(description="At most the first 1,000 errors")
    error_count: int = PField(description="All errors, also those not listed")
    rows: int = PField(description="Data records read (blank records included)")
    dry_run: bool
    atomic: bool
    committed: bool = PField(
        description="Whether anything was written: false for dry runs (created/updated then say "
        "what the rows would do) and for atomic imports with errors (created/updated then 0)"
    )

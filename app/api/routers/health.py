"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from app.core.config import get_settings
from app.core.db import connection_budget_warning, get_engine
from app.core.db_errors import classify
from app.core.migrations import current_and_head

router = APIRouter()


class Health(BaseModel):
    status: str
    detail: str | None = None


class Readiness(Health):
    warnings: list[str] = Field(
        default_factory=list,
        description="Configuration that works now but fails under load, e.g. more pooled "
        "connections (workers × (pool + overflow)) than the database's max_connections",
    )


@router.get("/healthz", tags=["health"], summary="The process is up")
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    tags=["health"],
    summary="The database is reachable and migrated to head",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Not ready"}},
)
def readyz() -> JSONResponse:
    engine = get_engine()
    try:
        current, head = current_and_head(engine)
    except Exception as exc:
        problem = classify(exc)
        detail = problem.detail if problem is not None else "The database is not reachable."
        return JSONResponse({"status": "unavailable", "detail": detail, "warnings": []}, 503)
    if current != head:
        detail = (
            f"The database is not migrated (at {current or 'no revision'}, head is {head}): run "
            f"`kokoma migrate`."
        )
        return JSONResponse({"status": "unavailable", "detail": detail, "warnings": []}, 503)
    settings = get_settings()
    try:
        warning = connection_budget_warning(engine, settings, settings.workers)
    except Exception:  # a readiness probe never fails on its advice
        warning = None
    return JSONResponse(
        {
            "status": "ok",
            "detail": f"migrations at {head}",
            "warnings": [warning] if warning else [],
        }
    )

"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from app.core.db import get_engine
from app.core.migrations import current_and_head

router = APIRouter()


class Health(BaseModel):
    status: str
    detail: str | None = None


@router.get("/healthz", tags=["health"], summary="The process is up")
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    tags=["health"],
    summary="The database is reachable and migrated to head",
    responses={503: {"model": Health, "description": "Not ready"}},
)
def readyz() -> JSONResponse:
    try:
        current, head = current_and_head(get_engine())
    except Exception:
        return JSONResponse({"status": "unavailable", "detail": "database unreachable"}, 503)
    if current != head:
        return JSONResponse(
            {"status": "unavailable", "detail": f"migrations at {current}, head is {head}"}, 503
        )
    return JSONResponse({"status": "ok", "detail": f"migrations at {head}"})

"""ASGI apps for the benchmark harness only (never imported by the service).

- ``bench.app:app`` — the kokoma app (same middleware, same settings) plus ``GET /bench/ceiling``,
  a bare ``async def`` returning constant JSON: the framework ceiling *on the same server setup*.
- ``bench.app:bare`` — a plain FastAPI app with only that endpoint (no kokoma middleware), to show
  what the middleware itself costs.
"""

from __future__ import annotations

import os
import sys

from fastapi import FastAPI

from app.main import create_app

#: The size and shape of one incident as the API returns it (≈ 800 bytes of JSON).
CONSTANT = {
    "id": "0190f3a2-6c1e-7b4e-9a51-3f2d8c7e1a90",
    "reference": "KOK-2026-01234",
    "title": "Incident 1234: graffiti near the youth club",
    "description": "Generated for the benchmark.",
    "district": "district_07",
    "location": {"lat": 50.9787, "lon": 11.0328},
    "category": "hate_speech",
    "escalation_level": 3,
    "required_competences": ["mediation"],
    "languages": ["de"],
    "status": "reported",
    "occurred_at": None,
    "reported_at": "2026-03-01T10:15:00.123456Z",
    "source": "web",
    "external_id": None,
    "organisation_id": "5b0e6f8a-3c1d-4e2f-9a7b-1c2d3e4f5a6b",
    "reporter": {"name": "Erika Muster", "contact": "erika@example.org", "anonymous": False},
    "version": 1,
    "created_at": "2026-03-01T10:15:00.123456Z",
    "updated_at": "2026-03-01T10:15:00.123456Z",
}


async def ceiling() -> dict[str, object]:
    return CONSTANT


app = create_app()
app.add_api_route("/bench/ceiling", ceiling, methods=["GET"], include_in_schema=False)
# Routes are matched in order: put the ceiling first, as the cheapest possible route (otherwise
# it pays for scanning every other route, which a hot route near the top does not).
app.router.routes.insert(0, app.router.routes.pop())

bare = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
bare.add_api_route("/bench/ceiling", ceiling, methods=["GET"])

if os.environ.get("KOKOMA_BENCH_SWITCH_INTERVAL"):  # experiment: GIL hand-over interval
    sys.setswitchinterval(float(os.environ["KOKOMA_BENCH_SWITCH_INTERVAL"]))

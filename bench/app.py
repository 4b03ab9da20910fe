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

CONSTANT = {"status": "ok", "service": "kokoma", "version": 1}


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

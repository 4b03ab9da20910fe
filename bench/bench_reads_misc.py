"""Reference data, assignment and recommendation reads in-process: CPU time per request.

    .venv/bin/python -m bench.bench_reads_misc                       # SQLite file in /tmp
    .venv/bin/python -m bench.bench_reads_misc --db postgresql://postgres@127.0.0.1:5432/postgres

Generates the harness's data set (``bench.harness.generate``; ``--incidents`` 20,000 by default:
these reads do not depend on the incident count) plus what the harness leaves empty — 2,000
assignments (with reasons) and 200 recommendations (districts and evidence) — then times each
route as one ASGI call on the event loop, through the real app with its lifespan: the event-loop
read path and the unit-of-work path (``app.state.reads = None``). The figure is the CPU time of
the whole process (``time.process_time``: the worker threads of the unit-of-work path and SQLite
count; a PostgreSQL server's CPU does not), best of ``--rounds``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.bench_middleware import App, Scope, scope_for, time_requests


async def time_process(
    app: App, make_scope: Callable[[int], Scope], requests: int, rounds: int
) -> tuple[float, int]:
    """Best process CPU µs per request over ``rounds`` and the last status seen."""
    return await time_requests(app, make_scope, requests, rounds, clock=time.process_time)


def add_rows(url: str, data: Any) -> tuple[list[str], list[str]]:
    """Assignments and recommendations (the harness creates none)."""
    from app.core.db import get_engine
    from app.models.base import metadata

    rnd = random.Random(11)
    t = metadata.tables
    now = datetime.now(UTC)
    assignments, recommendations = [], []
    with get_engine().begin() as conn:
        organisations = [r[0] for r in conn.execute(t["organisation"].select())]
        rows = []
        for n in range(2000):
            at = now - timedelta(minutes=n)
            assignment_id = uuid.uuid4()
            assignments.append(str(assignment_id))
            status = rnd.choice(["declined", "expired", "withdrawn", "completed"])
            rows.append(
                {
                    "id": assignment_id,
                    "incident_id": uuid.UUID(data.incident_ids[n]),
                    "manager_id": uuid.UUID(rnd.choice(data.manager_ids)),
                    "role": rnd.choice(["lead", "co"]),
                    "status": status,
                    "offered_at": at,
                    "responded_at": at + timedelta(minutes=5),
                    "expires_at": at + timedelta(hours=48),
                    "ended_at": at + timedelta(hours=1),
                    "score": round(rnd.random(), 4),
                    "reasons": [
                        {"factor": "district", "value": 1.0, "weight": 0.4, "detail": "home"},
                        {"factor": "load", "value": 0.5, "weight": 0.25, "detail": "1 of 2 open"},
                    ],
                    "decline_reason": "no time" if status == "declined" else None,
                    "outcome": "settled" if status == "completed" else None,
                    "created_at": at,
                    "updated_at": at,
                }
            )
        conn.execute(t["assignment"].insert(), rows)
        recs, links, evidence = [], [], []
        for n in range(200):
            at = now - timedelta(hours=n)
            rec_id = uuid.uuid4()
            recommendations.append(str(rec_id))
            recs.append(
                {
                    "id": rec_id,
                    "reference": f"EMP-2026-{n + 1:04d}",
                    "title": f"Recommendation {n}",
                    "body": "Generated for the benchmark.\n\n- one\n- two",
                    "category": "prevention",
                    "issued_by": organisations[0],
                    "addressee": rnd.choice(organisations),
                    "status": "accepted",
                    "progress": rnd.randint(0, 90),
                    "due_on": (now + timedelta(days=rnd.randint(-60, 60))).date(),
                    "created_at": at,
                    "updated_at": at,
                    "status_changed_at": at,
                }
            )
            for code in rnd.sample(data.districts, 2):
                links.append({"recommendation_id": rec_id, "district_code": code})
            for incident_id in rnd.sample(data.incident_ids, 3):
                evidence.append(
                    {"recommendation_id": rec_id, "incident_id": uuid.UUID(incident_id)}
                )
        conn.execute(t["recommendation"].insert(), recs)
        conn.execute(t["recommendation_district"].insert(), links)
        conn.execute(t["recommendation_incident"].insert(), evidence)
    with get_engine().begin() as conn:
        conn.exec_driver_sql("ANALYZE")  # planner statistics for the new rows, as the harness does
    return assignments, recommendations


async def bench(url: str, data: Any, requests: int, rounds: int) -> None:
    os.environ["KOKOMA_RATE_LIMIT_PER_MINUTE"] = "0"
    os.environ.setdefault("KOKOMA_LOG_LEVEL", "WARNING")
    from app.core.config import get_settings

    get_settings.cache_clear()
    from app.main import create_app, lifespan

    assignments, recommendations = add_rows(url, data)
    headers = [(b"host", b"bench"), (b"authorization", f"Bearer {data.key}".encode())]
    app = create_app()
    routes: list[tuple[str, Callable[[int], Scope]]] = [
        ("GET /competences", lambda i: scope_for("/api/v1/competences", headers=headers)),
        (
            "GET /districts?limit=50",
            lambda i: scope_for("/api/v1/districts", b"limit=50", headers=headers),
        ),
        (
            "GET /districts/{code}",
            lambda i: scope_for(
                f"/api/v1/districts/{data.districts[i % len(data.districts)]}", headers=headers
            ),
        ),
        ("GET /organisations", lambda i: scope_for("/api/v1/organisations", headers=headers)),
        (
            "GET /assignments?limit=50",
            lambda i: scope_for("/api/v1/assignments", b"limit=50", headers=headers),
        ),
        (
            "GET /assignments/{id}",
            lambda i: scope_for(
                f"/api/v1/assignments/{assignments[i % len(assignments)]}", headers=headers
            ),
        ),
        (
            "GET /recommendations?limit=50",
            lambda i: scope_for("/api/v1/recommendations", b"limit=50", headers=headers),
        ),
        (
            "GET /recommendations/{id}",
            lambda i: scope_for(
                f"/api/v1/recommendations/{recommendations[i % len(recommendations)]}",
                headers=headers,
            ),
        ),
    ]
    rows: list[tuple[str, float, float, int]] = []
    async with lifespan(app):
        for name, make in routes:
            loop, status = await time_process(app, make, requests, rounds)
            reads, app.state.reads = app.state.reads, None
            try:
                slow, _ = await time_process(app, make, max(50, requests // 4), rounds)
            finally:
                app.state.reads = reads
            rows.append((name, loop, slow, status))
    print(f"\nCPU µs per request (process time, best of {rounds}), {url.split(':')[0]}:")
    print(f"| {'route':<30} | {'event loop':>10} | {'unit of work':>12} | {'status':>6} |")
    print(f"|{'-' * 32}|{'-' * 12}|{'-' * 14}|{'-' * 8}|")
    for name, loop, slow, status in rows:
        print(f"| {name:<30} | {loop:>10.0f} | {slow:>12.0f} | {status:>6} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="sqlite", help="sqlite or a PostgreSQL server URL")
    parser.add_argument("--incidents", type=int, default=20_000)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from bench.harness import drop_database, fresh_database, generate

    print(f"load average {os.getloadavg()[0]:.2f}")
    db = "sqlite" if args.db == "sqlite" else "postgres"
    url, pg_name = fresh_database(db, args.db if db == "postgres" else "")
    try:
        data = generate(url, incidents=args.incidents, managers=5000, districts=50)
        asyncio.run(bench(url, data, args.requests, args.rounds))
    finally:
        from pathlib import Path

        from app.core.db import reset_engine

        reset_engine()
        if pg_name:
            drop_database(args.db, pg_name)
        else:
            for suffix in ("", "-wal", "-shm"):
                Path(url.removeprefix("sqlite:///") + suffix).unlink(missing_ok=True)


if __name__ == "__main__":
    main()

"""Manager reads in-process: CPU time per request, event-loop path against unit-of-work path.

    .venv/bin/python -m bench.bench_manager_reads sqlite:////tmp/generated.db
    .venv/bin/python -m bench.bench_manager_reads postgresql://postgres@127.0.0.1:5432/NAME

The database is one the harness generated (``bench.harness.generate``: 5,000 managers). As
:mod:`bench.bench_middleware` does, each request is one ASGI call of ``create_app()`` with its
lifespan, repeated after a warm-up, best of ``--rounds``; unlike it, the figure is the CPU time
of the whole process (``time.process_time``): the unit-of-work path does its work in worker
threads and the access entries of contact reads are written by the group-commit thread, both
of which the event-loop thread's own time would leave out. The database server's time
(PostgreSQL) is not in it. Requests as an admin key (every field, contact reads logged) and a
partner key (the redacted view).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from collections.abc import Callable

from bench.bench_middleware import App, Scope, bench_key, print_rows, scope_for, time_requests


async def time_process(
    app: App, make_scope: Callable[[int], Scope], requests: int, rounds: int
) -> tuple[float, int]:
    """Best process CPU µs per request over ``rounds`` and the last status seen."""
    return await time_requests(app, make_scope, requests, rounds, clock=time.process_time)


async def bench(url: str, requests: int, rounds: int) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ["KOKOMA_RATE_LIMIT_PER_MINUTE"] = "0"
    os.environ.setdefault("KOKOMA_LOG_LEVEL", "WARNING")
    from sqlalchemy import text

    from app.core.config import get_settings

    get_settings.cache_clear()
    from app.core.db import get_engine
    from app.main import create_app, lifespan

    engine = get_engine()
    with engine.begin() as conn:
        admin = bench_key(conn, "admin")
        organisation = conn.execute(text("SELECT id FROM organisation LIMIT 1")).scalar()
        partner = bench_key(conn, "partner", organisation) if organisation is not None else None
        ids = [
            str(uuid.UUID(str(r[0])))
            for r in conn.execute(text("SELECT id FROM manager LIMIT 500"))
        ]
        districts = [r[0] for r in conn.execute(text("SELECT code FROM district"))]
        competences = [r[0] for r in conn.execute(text("SELECT code FROM competence"))]
    app = create_app()

    def headers(key: str) -> list[tuple[bytes, bytes]]:
        return [(b"host", b"bench"), (b"authorization", f"Bearer {key}".encode())]

    def by_id(key: str) -> Callable[[int], Scope]:
        return lambda i: scope_for(f"/api/v1/managers/{ids[i % len(ids)]}", headers=headers(key))

    def listing(key: str, query: Callable[[int], str]) -> Callable[[int], Scope]:
        return lambda i: scope_for(
            "/api/v1/managers", query=query(i).encode(), headers=headers(key)
        )

    def plain(i: int) -> str:
        return "limit=50"

    def filtered(i: int) -> str:
        return (
            f"limit=50&district={districts[i % len(districts)]}&available=true"
            if i % 2 == 0
            else f"limit=50&competence={competences[i % len(competences)]}&status=active"
        )

    cases: list[tuple[str, Callable[[int], Scope]]] = [
        ("GET /managers/{id} (admin)", by_id(admin)),
        ("GET /managers?limit=50 (admin)", listing(admin, plain)),
        ("GET /managers?… (50, filtered, admin)", listing(admin, filtered)),
    ]
    if partner is not None:
        cases += [
            ("GET /managers/{id} (partner)", by_id(partner)),
            ("GET /managers?limit=50 (partner)", listing(partner, plain)),
        ]
    rows: list[tuple[str, float, int]] = []
    async with lifespan(app):
        for name, make in cases:
            micros, status = await time_process(app, make, requests, rounds)
            rows.append((f"{name} — event loop", micros, status))
        reads, app.state.reads = app.state.reads, None
        for name, make in cases:
            micros, status = await time_process(app, make, max(50, requests // 4), rounds)
            rows.append((f"{name} — unit of work", micros, status))
        app.state.reads = reads
    print(f"\nManager reads in-process ({engine.dialect.name}), process CPU µs per request:")
    print_rows(rows, reference=0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="database URL with generated data")
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}")
    asyncio.run(bench(args.url, args.requests, args.rounds))


if __name__ == "__main__":
    main()

"""Statistics and district profiles in-process: CPU and wall time per request.

    .venv/bin/python -m bench.bench_stats --url sqlite:////tmp/x.db [--requests 200 --rounds 3]

The database is one the harness generated (``bench.harness.generate``: 100,000 incidents, 5,000
managers, 50 districts). Like ``bench_middleware --routes``: no sockets and no client, each
request is one ASGI call through ``create_app()`` with its lifespan, repeated ``--requests`` times
after a warm-up, best of ``--rounds``. ``CPU µs`` is the CPU time of this process per request (the
event loop and the worker threads; on SQLite that includes the database's work, on PostgreSQL the
server's share is in ``wall`` only), ``wall ms`` the median time of one request alone. Under wrk
with 16 connections and one worker a request waits for the others ahead of it: its latency is
about 16 × the CPU time per request (bench/harness.py shows that).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.bench_middleware import Scope, _receive, bench_key, scope_for


async def time_requests(
    app: Any, make_scope: Callable[[int], Scope], requests: int, rounds: int
) -> tuple[float, float, int]:
    """Best process-CPU µs per request over ``rounds``, median wall ms, the last status."""
    status = 0

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    for i in range(min(20, requests)):  # warm-up: caches, prepared statements
        await app(make_scope(i), _receive, send)
    best, walls = float("inf"), []
    for _ in range(rounds):
        started = time.process_time()
        for i in range(requests):
            wall = time.perf_counter()
            await app(make_scope(i), _receive, send)
            walls.append(time.perf_counter() - wall)
        best = min(best, (time.process_time() - started) / requests)
    return best * 1e6, statistics.median(walls) * 1e3, status


async def bench(url: str, requests: int, rounds: int, only: list[str]) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("KOKOMA_RATE_LIMIT_PER_MINUTE", "1000000000")
    os.environ.setdefault("KOKOMA_LOG_LEVEL", "WARNING")
    from sqlalchemy import text

    from app.core.config import get_settings

    get_settings.cache_clear()
    from app.core.db import get_engine
    from app.main import create_app, lifespan

    engine = get_engine()
    with engine.begin() as conn:
        key = bench_key(conn, "admin")
        districts = [r[0] for r in conn.execute(text("SELECT code FROM district ORDER BY code"))]
    headers = [(b"host", b"bench"), (b"authorization", f"Bearer {key}".encode())]
    now = datetime.now(UTC)
    window = (
        f"reported_after={(now - timedelta(days=200, hours=5)).strftime('%Y-%m-%dT%H:%M:%SZ')}"
        f"&reported_before={(now - timedelta(days=20, hours=7)).strftime('%Y-%m-%dT%H:%M:%SZ')}"
    )

    def stats(query: Callable[[int], str]) -> Callable[[int], Scope]:
        return lambda i: scope_for("/api/v1/stats/incidents", query(i).encode(), headers)

    operations: list[tuple[str, Callable[[int], Scope]]] = [
        ("statistics by category (the harness)", stats(lambda i: "")),
        ("statistics by district", stats(lambda i: "group_by=district")),
        ("statistics by month", stats(lambda i: "group_by=month")),
        (
            "statistics by level, one district",
            stats(lambda i: f"group_by=escalation_level&district={districts[i % len(districts)]}"),
        ),
        ("statistics by month, date range", stats(lambda i: f"group_by=month&{window}")),
        (
            "statistics by category, district + range",
            stats(lambda i: f"district={districts[i % len(districts)]}&{window}"),
        ),
        (
            "district profile (the harness)",
            lambda i: scope_for(
                f"/api/v1/districts/{districts[i % len(districts)]}/profile", headers=headers
            ),
        ),
    ]
    app = create_app()
    print(f"load average {os.getloadavg()[0]:.2f}; {engine.dialect.name}")
    print(f"| {'operation':<44} | {'CPU µs/request':>14} | {'wall ms':>8} | {'status':>6} |")
    print(f"|{'-' * 46}|{'-' * 16}|{'-' * 10}|{'-' * 8}|")
    async with lifespan(app):
        for name, make in operations:
            if only and not any(s in name for s in only):
                continue
            micros, wall, status = await time_requests(app, make, requests, rounds)
            print(f"| {name:<44} | {micros:>14.0f} | {wall:>8.2f} | {status:>6} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="database URL with generated data")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default="", help="comma-separated substrings of operations")
    args = parser.parse_args()
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    asyncio.run(bench(args.url, args.requests, args.rounds, only))


if __name__ == "__main__":
    main()

"""Middleware chain, layer by layer, and hot routes in-process: CPU time per request.

    .venv/bin/python -m bench.bench_middleware                  # the chain, µs per layer
    .venv/bin/python -m bench.bench_middleware --routes URL      # + hot routes on that database

No sockets and no client: each request is one ASGI call on the event loop (scope, receive, a
send that drops the messages), repeated ``--requests`` times after a warm-up, best of
``--rounds``. The figures are the CPU time of the event-loop thread (``time.thread_time``), so
they hold on a loaded machine far better than req/s under wrk do; they leave out what other
threads and processes do for the request (the database server, the access-log writer thread).

The chain is built from the inside out on a bare ``async def`` endpoint that returns constant
JSON: the bare FastAPI app, then each kokoma middleware added in its production order (the last
line is the production chain: ``create_app()``'s middleware list). ``Δ`` is what the layer adds.
With ``--routes DATABASE_URL`` (a database the harness generated, e.g. kept with
``KOKOMA_BENCH_KEEP=1``) it also times ``GET /incidents/{id}`` and the filtered list through
the real app with its lifespan (the event-loop read path) and the unit-of-work path.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
App = Callable[[Scope, Any, Any], Awaitable[None]]


def scope_for(
    path: str,
    query: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
    method: str = "GET",
) -> Scope:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query,
        "headers": headers or [(b"host", b"bench")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def time_requests(
    app: App,
    make_scope: Callable[[int], Scope],
    requests: int,
    rounds: int,
    clock: Callable[[], float] = time.thread_time,
) -> tuple[float, int]:
    """Best µs per request over ``rounds`` and the last status seen, by ``clock`` (the loop
    thread's CPU time; ``time.process_time`` counts the writer threads and the pool's too)."""
    status = 0

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    for i in range(min(200, requests)):  # warm-up: caches, prepared statements, route table
        await app(make_scope(i), _receive, send)
    best = float("inf")
    for _ in range(rounds):
        started = clock()
        for i in range(requests):
            await app(make_scope(i), _receive, send)
        best = min(best, (clock() - started) / requests)
    return best * 1e6, status


def chain_layers() -> list[tuple[str, App]]:
    from fastapi import FastAPI

    from app.api.middleware.body_limit import BodyLimitMiddleware
    from app.api.middleware.idempotency import IdempotencyMiddleware
    from app.api.middleware.observability import ObservabilityMiddleware
    from app.api.middleware.rate_limit import RateLimitMiddleware
    from bench.app import ceiling

    def bare() -> FastAPI:
        app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
        app.add_api_route("/api/v1/bench", ceiling, methods=["GET"])
        return app

    layers: list[tuple[str, App]] = [("bare FastAPI app, one async endpoint", bare())]
    order = [  # production order, innermost first (app.main.create_app)
        ("+ idempotency (POST only)", IdempotencyMiddleware),
        ("+ body limit", BodyLimitMiddleware),
        ("+ rate limit (on, generous)", RateLimitMiddleware),
        ("+ request id, metrics, access-log line", ObservabilityMiddleware),
    ]
    for n in range(1, len(order) + 1):
        app = bare()
        for _, middleware in order[:n]:
            app.add_middleware(middleware)
        layers.append((order[n - 1][0], app))
    return layers


def print_rows(rows: list[tuple[str, float, int]], reference: float | None = None) -> None:
    print(f"| {'layer / route':<52} | {'µs/request':>10} | {'Δ µs':>7} | {'status':>6} |")
    print(f"|{'-' * 54}|{'-' * 12}|{'-' * 9}|{'-' * 8}|")
    previous = reference
    for name, micros, status in rows:
        delta = f"{micros - previous:+.1f}" if previous is not None else ""
        print(f"| {name:<52} | {micros:>10.1f} | {delta:>7} | {status:>6} |")
        previous = micros if reference is None else reference


async def bench_chain(requests: int, rounds: int) -> None:
    import logging

    from app.core.config import get_settings
    from app.core.logging import configure_logging

    # The rate limiter counts, but never refuses: every request of the run must be a 200.
    os.environ["KOKOMA_RATE_LIMIT_PER_MINUTE"] = str(10**9)
    get_settings.cache_clear()

    configure_logging("INFO", "json")
    # The access log goes where production sends it (stdout); here to /dev/null, as a file.
    devnull = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    for handler in logging.getLogger().handlers:
        if hasattr(handler, "setStream"):
            handler.setStream(devnull)
    import sys

    sys.stdout = devnull
    headers = [(b"host", b"bench"), (b"authorization", b"Bearer kok_benchmarkkey")]
    layers = chain_layers()
    best = {name: (float("inf"), 0) for name, _ in layers}
    # Round by round, every layer in turn: a machine that drifts during the run shifts all
    # layers alike instead of the ones measured last (the Δ column stays meaningful).
    for _ in range(rounds):
        for name, app in layers:
            micros, status = await time_requests(
                app, lambda i: scope_for("/api/v1/bench", headers=headers), requests, 1
            )
            best[name] = min(best[name], (micros, status))
    rows = [(name, *best[name]) for name, _ in layers]
    sys.stdout = sys.__stdout__
    print("\nMiddleware chain (GET, bearer key, JSON access log to /dev/null):")
    print_rows(rows)
    print(f"kokoma chain total: {rows[-1][1] - rows[0][1]:.1f} µs per request over the bare app")


def bench_key(conn: Any, role: str, organisation_id: Any = None) -> str:
    """A new API key of ``role`` written on ``conn`` (a SQLAlchemy connection); the key."""
    import uuid

    from sqlalchemy import text

    from app.core.security import generate_key, hash_key

    key = generate_key()
    sqlite = conn.dialect.name == "sqlite"
    conn.execute(
        text(
            "INSERT INTO api_key (id, name, role, key_hash, prefix, organisation_id, created_at) "
            "VALUES (:id, 'bench', :role, :h, :p, :org, CURRENT_TIMESTAMP)"
        ),
        {
            "id": uuid.uuid4().hex if sqlite else uuid.uuid4(),
            "role": role,
            "h": hash_key(key),
            "p": key[:8],
            "org": organisation_id,
        },
    )
    return key


async def bench_routes(url: str, requests: int, rounds: int) -> None:
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
        key = bench_key(conn, "admin")
        ids = [r[0] for r in conn.execute(text("SELECT id FROM incident LIMIT 500"))]
        districts = [r[0] for r in conn.execute(text("SELECT code FROM district"))]
    import uuid

    ids = [str(uuid.UUID(str(i))) if not isinstance(i, uuid.UUID) else str(i) for i in ids]
    headers = [(b"host", b"bench"), (b"authorization", f"Bearer {key}".encode())]
    app = create_app()

    def by_id(i: int) -> Scope:
        return scope_for(f"/api/v1/incidents/{ids[i % len(ids)]}", headers=headers)

    def listing(i: int) -> Scope:
        query = (
            f"limit=50&district={districts[i % len(districts)]}&status=reported&status=triaged"
            if i % 2 == 0
            else "limit=50&category=hate_speech&min_escalation=3"
        )
        return scope_for("/api/v1/incidents", query=query.encode(), headers=headers)

    rows = []
    async with lifespan(app):
        for name, make in (
            ("GET /incidents/{id} — event loop", by_id),
            ("GET /incidents?… (50, filtered) — event loop", listing),
        ):
            micros, status = await time_requests(app, make, requests, rounds)
            rows.append((name, micros, status))
        reads, app.state.reads = app.state.reads, None
        for name, make in (
            ("GET /incidents/{id} — unit of work", by_id),
            ("GET /incidents?… (50, filtered) — unit of work", listing),
        ):
            micros, status = await time_requests(app, make, max(50, requests // 5), rounds)
            rows.append((name, micros, status))
        app.state.reads = reads
    print(f"\nHot routes in-process ({engine.dialect.name}), JSON access log off:")
    print_rows(rows, reference=0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--routes", default="", help="database URL with generated data")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}")
    asyncio.run(bench_chain(args.requests, args.rounds))
    if args.routes:
        asyncio.run(bench_routes(args.routes, max(200, args.requests // 5), args.rounds))


if __name__ == "__main__":
    main()

"""Statistics and district profiles, one request at a time: wall and CPU time per request.

    .venv/bin/python -m bench.bench_stats --url sqlite:////tmp/x.db --key KEY [--requests 50]

The database is one the harness generated (``bench.harness.generate``, e.g. 100,000 incidents,
5,000 managers, 50 districts) and ``KEY`` its admin API key. Each operation runs ``--requests``
times after a warm-up through the real app with its lifespan (``TestClient``, no sockets, no
concurrency); the table shows the median and the slowest wall time per request (on PostgreSQL
that includes the server's work) and the CPU time of this process per request. One request at a
time shows what a request costs; the harness (wrk, 16 connections) shows the queueing on top.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from datetime import UTC, datetime, timedelta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="database URL (a generated database)")
    parser.add_argument("--key", required=True, help="an admin API key of that database")
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--only", default="", help="comma-separated substrings of operation names")
    args = parser.parse_args()

    os.environ["DATABASE_URL"] = args.url
    os.environ.setdefault("KOKOMA_RATE_LIMIT_PER_MINUTE", "100000000")
    os.environ.setdefault("KOKOMA_LOG_LEVEL", "WARNING")
    from fastapi.testclient import TestClient

    from app.core.config import get_settings

    get_settings.cache_clear()
    from app.main import create_app

    headers = {"Authorization": f"Bearer {args.key}"}
    now = datetime.now(UTC)
    after = (now - timedelta(days=200, hours=5)).isoformat().replace("+00:00", "Z")
    before = (now - timedelta(days=20, hours=7)).isoformat().replace("+00:00", "Z")
    window = {"reported_after": after, "reported_before": before}
    with TestClient(create_app(), raise_server_exceptions=True) as client:
        listing = client.get("/api/v1/districts", headers=headers).json()
        districts = [d["code"] for d in listing["items"]]
        operations: list[tuple[str, list[tuple[str, dict[str, str]]]]] = [
            ("stats by category", [("/api/v1/stats/incidents", {})]),
            ("stats by district", [("/api/v1/stats/incidents", {"group_by": "district"})]),
            ("stats by month", [("/api/v1/stats/incidents", {"group_by": "month"})]),
            (
                "stats by level, one district",
                [
                    ("/api/v1/stats/incidents", {"group_by": "escalation_level", "district": d})
                    for d in districts
                ],
            ),
            (
                "stats by month, date range",
                [("/api/v1/stats/incidents", {"group_by": "month", **window})],
            ),
            (
                "stats by category, district + range",
                [("/api/v1/stats/incidents", {"district": d, **window}) for d in districts],
            ),
            ("district profile", [(f"/api/v1/districts/{d}/profile", {}) for d in districts]),
            ("stats coverage", [("/api/v1/stats/coverage", {})]),
            ("stats dispatch", [("/api/v1/stats/dispatch", {})]),
        ]
        only = [s.strip() for s in args.only.split(",") if s.strip()]
        print(f"{'operation':40} {'wall p50 ms':>12} {'wall max ms':>12} {'CPU ms':>8}")
        for name, requests in operations:
            if only and not any(s in name for s in only):
                continue
            for path, params in requests[:3]:  # warm-up
                assert client.get(path, params=params, headers=headers).status_code == 200
            walls: list[float] = []
            cpu_start = time.process_time()
            for i in range(args.requests):
                path, params = requests[i % len(requests)]
                started = time.perf_counter()
                response = client.get(path, params=params, headers=headers)
                walls.append(time.perf_counter() - started)
                assert response.status_code == 200, response.text
            cpu = (time.process_time() - cpu_start) / args.requests
            print(
                f"{name:40} {statistics.median(walls) * 1000:12.2f} "
                f"{max(walls) * 1000:12.2f} {cpu * 1000:8.2f}"
            )


if __name__ == "__main__":
    main()

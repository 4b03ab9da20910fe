"""Each statement a district profile may read, alone: its time per execution.

    .venv/bin/python -m bench.bench_profile_statements --url sqlite:////tmp/ab.db
    .venv/bin/python -m bench.bench_profile_statements --url postgresql://postgres@127.0.0.1:5432/ab

The database is one ``bench.ab generate`` (or the harness) made: 100,000 incidents, 5,000
managers, 50 districts. Each statement of :mod:`app.repositories.stats_reads` runs
``--executions`` times over the 50 districts in turn, after a warm-up, on one connection as the
loop's reader opens it (SQLite: read-only, autocommit; PostgreSQL: autocommit, prepared, no JIT,
UTC). SQLite: wall time per execution (the database works in this process). PostgreSQL: wall time
and the CPU time of the server process behind the connection (from ``/proc``: the server must run
on this machine), which the wall time of a round trip hides.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

from app.repositories import stats_reads as s

STATEMENTS: list[tuple[str, Any, bool]] = [  # name, statement, takes today
    ("roster version", s._ROSTER_VERSION, False),
    ("district", s._DISTRICT, False),
    ("competences", s._COMPETENCES, False),
    ("counts by category", s._COUNTS[("category", True)], False),
    ("counts by level", s._COUNTS[("escalation_level", True)], False),
    ("first and last report", s._RANGE[True], False),
    ("counts by UTC month", s._UTC_MONTHS[True], False),
    ("open incidents", s._OPEN_COUNT, False),
    ("roster", s._ROSTER, True),
    ("needs", s._NEEDS, False),
    ("recommendations", s._RECOMMENDATIONS, True),
]
DISTRICTS = [f"district_{i:02d}" for i in range(50)]


def _server_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _timed(run: Callable[[str], Any], executions: int) -> float:
    for district in DISTRICTS[:5]:
        run(district)
    started = time.perf_counter()
    for i in range(executions):
        run(DISTRICTS[i % len(DISTRICTS)])
    return (time.perf_counter() - started) / executions * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="database URL with generated data")
    parser.add_argument("--executions", type=int, default=500)
    args = parser.parse_args()
    today = date.today()
    print(f"{'statement':24s} {'wall µs':>9s} {'server CPU µs':>14s}")
    if args.url.startswith("sqlite"):
        conn = sqlite3.connect(args.url.split("///", 1)[1], isolation_level=None)
        conn.execute("PRAGMA query_only=ON")
        for name, statement, dated in STATEMENTS:

            def run(district: str, statement: Any = statement, dated: bool = dated) -> Any:
                params = {"d": district, "today": today.isoformat()} if dated else {"d": district}
                return conn.execute(statement.sqlite, params).fetchall()

            try:
                print(f"{name:24s} {_timed(run, args.executions):9.1f}")
            except sqlite3.OperationalError as exc:  # an older schema: not there yet
                print(f"{name:24s} {'—':>9s}  ({exc})")
        return
    import psycopg

    with psycopg.connect(args.url, autocommit=True, options="-c jit=off -c TimeZone=UTC") as pg:
        row = pg.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        backend = int(row[0])
        for name, statement, dated in STATEMENTS:

            def run_pg(district: str, statement: Any = statement, dated: bool = dated) -> Any:
                params = {"d": district, "today": today} if dated else {"d": district}
                return pg.execute(statement.postgresql, params, prepare=True).fetchall()

            cpu = _server_cpu(backend)
            try:
                wall = _timed(run_pg, args.executions)
            except psycopg.errors.UndefinedTable as exc:  # an older schema: not there yet
                print(f"{name:24s} {'—':>9s}  ({str(exc).splitlines()[0]})")
                continue
            used = (_server_cpu(backend) - cpu) / (args.executions + 5) * 1e6
            print(f"{name:24s} {wall:9.1f} {used:14.1f}")


if __name__ == "__main__":
    main()

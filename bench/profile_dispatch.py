"""Profile dispatch in-process (no HTTP): candidates of one incident and the written batch.

Usage (from the repository root):
    .venv/bin/python bench/profile_dispatch.py --database sqlite
    .venv/bin/python bench/profile_dispatch.py --database postgresql://postgres@127.0.0.1:5432/postgres

Seeds the data of ``bench_dispatch.py`` (5,000 managers, 1,000 triaged incidents) into a fresh
database, then runs ``DispatchService.candidates`` on random incidents and ``DispatchService.auto``
for real (rolled back after each run, so every run starts from the same state) under pyinstrument,
and prints the timings and the profiles (``--html DIR`` also writes them as HTML).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_dispatch import percentile, seed  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database", default="sqlite")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--batches", type=int, default=2)
    parser.add_argument("--html", default=None, help="directory for HTML profiles")
    parser.add_argument(
        "--no-profile",
        action="store_true",
        help="timings only (CPU and wall time, best of --batches runs)",
    )
    args = parser.parse_args()

    from pyinstrument import Profiler
    from sqlalchemy import create_engine, select, text
    from sqlalchemy.engine import make_url

    tmp = tempfile.TemporaryDirectory(prefix="kokoma-profile-")
    pg_name = None
    if args.database.startswith("postgres"):
        base = make_url(args.database.replace("postgresql://", "postgresql+psycopg://", 1))
        pg_name = f"kokoma_profile_{uuid.uuid4().hex[:8]}"
        admin = create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{pg_name}"'))
        url = (
            base.set(database=pg_name)
            .render_as_string(hide_password=False)
            .replace("postgresql+psycopg://", "postgresql://", 1)
        )
    else:
        url = f"sqlite:///{Path(tmp.name) / 'profile.db'}"
    os.environ.update({"DATABASE_URL": url, "KOKOMA_LOG_LEVEL": "WARNING"})
    try:
        from app.core.db import new_session, reset_engine, session_scope
        from app.core.migrations import upgrade
        from app.core.security import SYSTEM_PRINCIPAL
        from app.models.assignment_schemas import AutoDispatchRequest
        from app.models.incident import Incident
        from app.services.dispatch.service import DispatchService

        upgrade("head")
        seed(50, 5000, 1000, random.Random(7))
        # As the app does after start-up (app.core.runtime): without it, full collections walk
        # every module and table object again and again, and the CPU figures show that instead.
        from app.core.runtime import freeze_startup_objects

        freeze_startup_objects()
        with session_scope(write=False) as session:
            incident_ids = list(session.scalars(select(Incident.id)))
        rng = random.Random(7)

        with session_scope(write=False) as session:  # warm-up
            for incident_id in rng.sample(incident_ids, 20):
                DispatchService(session).candidates(
                    incident_id, SYSTEM_PRINCIPAL, limit=10, fallback=True
                )
        timings = []
        cpu_started = time.process_time()
        profiler = Profiler(interval=0.0005)
        with session_scope(write=False) as session:
            if not args.no_profile:
                profiler.start()
            for _ in range(args.requests):
                t0 = time.perf_counter()
                DispatchService(session).candidates(
                    rng.choice(incident_ids), SYSTEM_PRINCIPAL, limit=10, fallback=True
                )
                timings.append((time.perf_counter() - t0) * 1000)
            if not args.no_profile:
                profiler.stop()
        cpu = (time.process_time() - cpu_started) * 1000 / args.requests
        print(
            f"candidates in-process, {args.requests} calls: p50 {statistics.median(timings):.1f}"
            f" ms, p99 {percentile(timings, 0.99):.1f} ms, CPU {cpu:.1f} ms per call"
        )
        if not args.no_profile:
            print(profiler.output_text(unicode=False, color=False, show_all=False))
        if args.html and not args.no_profile:
            Path(args.html).mkdir(parents=True, exist_ok=True)
            Path(args.html, "candidates.html").write_text(profiler.output_html())

        for run in range(args.batches):
            profiler = Profiler(interval=0.0005)
            session = new_session(write=True)
            try:
                if not args.no_profile:
                    profiler.start()
                t0, c0 = time.perf_counter(), time.process_time()
                result = DispatchService(session).auto(
                    AutoDispatchRequest(dry_run=False), SYSTEM_PRINCIPAL
                )
                session.flush()
                elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
                if not args.no_profile:
                    profiler.stop()
            finally:
                session.rollback()
                session.close()
            print(
                f"auto (written, rolled back) run {run + 1}: {elapsed:.2f} s (CPU {cpu:.2f} s), "
                f"{len(result.assignments)} offers, optimal={result.optimal}"
            )
        if not args.no_profile:
            print(profiler.output_text(unicode=False, color=False, show_all=False))
        if args.html and not args.no_profile:
            Path(args.html, "auto.html").write_text(profiler.output_html())
    finally:
        from app.core.db import reset_engine

        reset_engine()
        if pg_name:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)'))


if __name__ == "__main__":
    main()

"""Benchmark dispatch through HTTP: candidates latency and batch auto-dispatch, end to end.

Usage (from the repository root):
    .venv/bin/python bench/bench_dispatch.py --database sqlite
    .venv/bin/python bench/bench_dispatch.py --database postgresql://postgres@127.0.0.1:5432/postgres

Builds a fresh database (a temporary SQLite file, or a new PostgreSQL database that is dropped
afterwards), migrates it, and seeds 50 districts in a ring (each with its two neighbours), six
competences, 5,000 managers (85 % active, a few paused/in training/retired, 3 % absent today,
1-3 competences, home district plus 0-2 served, 1-3 slots) and 1,000 triaged incidents (one or two
required competences, 40 % at tandem levels 4-6). Then it starts ``uvicorn app.main:app`` as a
separate process on 127.0.0.1 and measures, with one keep-alive HTTP client:

* ``GET /competences`` (a trivial authenticated read) as the baseline of the machine and stack;
* ``GET /incidents/{id}/candidates`` on random incidents: p50 / p99 / max latency;
* ``POST /dispatch/auto`` with ``dry_run`` and for real over all 1,000 triaged incidents.

Beside the wall times it prints the CPU time the server process spent (``/proc``): on a shared
machine it holds far better than latency. On SQLite it includes the database's work; on
PostgreSQL the server backend's work is not in it.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

COMPETENCES = [
    "mediation",
    "anti_discrimination",
    "right_wing_extremism",
    "youth_work",
    "conflict_analysis",
    "victim_support",
]


def seed(n_districts: int, n_managers: int, n_incidents: int, rng: random.Random) -> str:
    from sqlalchemy import insert

    from app.core.clock import get_clock
    from app.core.db import session_scope
    from app.core.security import SYSTEM_PRINCIPAL
    from app.models.incident import Incident, IncidentCompetence
    from app.models.manager import Absence, Manager, ManagerCompetence, ManagerDistrict
    from app.models.reference import Competence, District, DistrictNeighbour
    from app.models.system import ApiKeyCreate, Role
    from app.services.api_keys import ApiKeyService

    now = get_clock().now()
    today = get_clock().today()
    districts = [f"district-{i:02d}" for i in range(n_districts)]
    with session_scope() as session:
        session.execute(
            insert(District),
            [{"code": d, "name": d.title(), "city": "Benchstadt"} for d in districts],
        )
        session.execute(
            insert(Competence),
            [
                {"code": c, "name": c.replace("_", " ").title(), "description": ""}
                for c in COMPETENCES
            ],
        )
        session.execute(
            insert(DistrictNeighbour),
            [
                {
                    "district_code": districts[i],
                    "neighbour_code": districts[(i + step) % n_districts],
                }
                for i in range(n_districts)
                for step in (1, -1)
            ],
        )
        managers, served, holdings, absences = [], [], [], []
        for n in range(n_managers):
            manager_id = uuid.uuid4()
            home = rng.randrange(n_districts)
            status = rng.choices(["active", "paused", "in_training", "retired"], [85, 7, 5, 3])[0]
            managers.append(
                {
                    "id": manager_id,
                    "display_name": f"Manager {n}",
                    "email": f"m{n}@bench.example",
                    "phone": None,
                    "organisation_id": None,
                    "status": status,
                    "home_district": districts[home],
                    "languages": ["de"] if rng.random() < 0.8 else ["de", "en"],
                    "max_open_assignments": rng.choice((1, 2, 2, 3)),
                    "open_assignments": 0,
                    "last_assigned_at": (now - timedelta(days=rng.randrange(90)))
                    if rng.random() < 0.5
                    else None,
                    "version": 1,
                    "created_at": now,
                    "updated_at": now,
                }
            )
            for other in {rng.randrange(n_districts) for _ in range(rng.randint(0, 2))} - {home}:
                served.append({"manager_id": manager_id, "district_code": districts[other]})
            for code in rng.sample(COMPETENCES, rng.randint(1, 3)):
                holdings.append(
                    {
                        "manager_id": manager_id,
                        "competence_code": code,
                        "certified_on": date(2024, 1, 1),
                        "expires_on": None if rng.random() < 0.9 else date(2026, 1, 1),
                    }
                )
            if rng.random() < 0.03:
                absences.append(
                    {
                        "id": uuid.uuid4(),
                        "manager_id": manager_id,
                        "starts_on": today - timedelta(days=2),
                        "ends_on": today + timedelta(days=5),
                        "reason": None,
                        "created_at": now,
                    }
                )
        session.execute(insert(Manager), managers)
        session.execute(insert(ManagerDistrict), served)
        session.execute(insert(ManagerCompetence), holdings)
        if absences:
            session.execute(insert(Absence), absences)
        incidents, required = [], []
        for n in range(n_incidents):
            incident_id = uuid.uuid4()
            incidents.append(
                {
                    "id": incident_id,
                    "reference": f"KOK-2026-{n + 1:05d}",
                    "title": f"Bench incident {n}",
                    "description": "",
                    "district": (district := districts[rng.randrange(n_districts)]),
                    "lat": None,
                    "lon": None,
                    "category": "neighbourhood_dispute",
                    "escalation_level": rng.randint(4, 6)
                    if rng.random() < 0.4
                    else rng.randint(1, 3),
                    "languages": ["de"],
                    "status": "triaged",
                    "occurred_at": None,
                    "reported_at": now - timedelta(minutes=n),
                    "status_changed_at": now,
                    "source": "web",
                    "external_id": None,
                    "organisation_id": None,
                    "has_reporter": False,
                    "reporter_name": None,
                    "reporter_contact": None,
                    "reporter_anonymous": False,
                    "version": 1,
                    "created_at": now,
                    "updated_at": now,
                }
            )
            for code in rng.sample(COMPETENCES[:3], rng.choice((1, 1, 2))):
                required.append(
                    {"incident_id": incident_id, "competence_code": code, "district": district}
                )
        session.execute(insert(Incident), incidents)
        session.execute(insert(IncidentCompetence), required)
        key = (
            ApiKeyService(session)
            .create(ApiKeyCreate(name="bench", role=Role.coordinator), SYSTEM_PRINCIPAL)
            .key
        )
    return key


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux ``/proc``; 0.0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--database",
        default="sqlite",
        help="'sqlite' or a PostgreSQL server URL (a database is created there)",
    )
    parser.add_argument("--managers", type=int, default=5000)
    parser.add_argument("--districts", type=int, default=50)
    parser.add_argument("--incidents", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    import httpx
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    tmp = tempfile.TemporaryDirectory(prefix="kokoma-bench-")
    pg_name = None
    if args.database.startswith("postgres"):
        base = make_url(args.database.replace("postgresql://", "postgresql+psycopg://", 1))
        pg_name = f"kokoma_bench_{uuid.uuid4().hex[:8]}"
        admin = create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{pg_name}"'))
        url = (
            base.set(database=pg_name)
            .render_as_string(hide_password=False)
            .replace("postgresql+psycopg://", "postgresql://", 1)
        )
    else:
        url = f"sqlite:///{Path(tmp.name) / 'bench.db'}"
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "KOKOMA_RATE_LIMIT_PER_MINUTE": "0",
        "KOKOMA_LOG_LEVEL": "WARNING",
    }
    os.environ.update(env)
    server = None
    try:
        from app.core.migrations import upgrade

        upgrade("head")
        started = time.perf_counter()
        key = seed(args.districts, args.managers, args.incidents, random.Random(args.seed))
        print(
            f"database: {'PostgreSQL' if pg_name else 'SQLite'}; seeded {args.managers} "
            f"managers, {args.incidents} triaged incidents in "
            f"{time.perf_counter() - started:.1f}s"
        )
        from app.core.db import session_scope
        from app.models.incident import Incident

        with session_scope(write=False) as session:
            from sqlalchemy import select

            incident_ids = [str(i) for i in session.scalars(select(Incident.id))]

        port = free_port()
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "app.main:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            cwd=ROOT,
            env=env,
        )
        base_url = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=base_url, headers=headers, timeout=120) as client:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise
                    time.sleep(0.2)
            rng = random.Random(args.seed)
            baseline: list[float] = []
            for _ in range(args.requests):  # the same path without dispatch work, for scale
                t0 = time.perf_counter()
                client.get("/api/v1/competences")
                baseline.append((time.perf_counter() - t0) * 1000)
            print(
                f"baseline GET /competences: p50 {statistics.median(baseline):.1f} ms, "
                f"p99 {percentile(baseline, 0.99):.1f} ms"
            )
            for _ in range(30):  # warm-up
                client.get(f"/api/v1/incidents/{rng.choice(incident_ids)}/candidates")
            timings: list[float] = []
            sizes: list[int] = []
            cpu_started = cpu_seconds(server.pid)
            for _ in range(args.requests):
                incident = rng.choice(incident_ids)
                t0 = time.perf_counter()
                response = client.get(f"/api/v1/incidents/{incident}/candidates")
                timings.append((time.perf_counter() - t0) * 1000)
                assert response.status_code == 200, response.text
                body = response.json()
                sizes.append(len(body["candidates"]))
                assert len(body["candidates"]) <= 10
            server_cpu = (cpu_seconds(server.pid) - cpu_started) * 1000 / args.requests
            print(
                f"candidates (limit 10), {args.requests} requests: "
                f"p50 {statistics.median(timings):.1f} ms, p99 {percentile(timings, 0.99):.1f} ms, "
                f"max {max(timings):.1f} ms (mean {statistics.fmean(sizes):.1f} candidates); "
                f"server process CPU {server_cpu:.1f} ms per request"
            )

            for dry_run in (True, False):
                t0, cpu_started = time.perf_counter(), cpu_seconds(server.pid)
                response = client.post("/api/v1/dispatch/auto", json={"dry_run": dry_run})
                elapsed = time.perf_counter() - t0
                server_cpu = cpu_seconds(server.pid) - cpu_started
                assert response.status_code == 200, response.text
                body = response.json()
                reasons: dict[str, int] = {}
                for item in body["unassigned"]:
                    reasons[item["reason"]] = reasons.get(item["reason"], 0) + 1
                print(
                    f"dispatch/auto dry_run={dry_run}: {elapsed:.2f} s end to end "
                    f"(server process CPU {server_cpu:.2f} s); "
                    f"{len(body['assignments'])} assignments, unassigned {reasons}, "
                    f"total score {body['total_score']:.1f}, optimal={body['optimal']}"
                )
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
        from app.core.db import reset_engine

        reset_engine()
        if pg_name is not None:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)'))
        tmp.cleanup()


if __name__ == "__main__":
    main()

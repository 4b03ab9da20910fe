"""Benchmark harness: one command, one table per database.

    .venv/bin/python -m bench.harness --seconds 5            # SQLite, then PostgreSQL
    .venv/bin/python -m bench.harness --db sqlite --seconds 10 [--pg-url postgresql://…/postgres]

1. Creates a fresh database (a SQLite file in /tmp, or a new PostgreSQL database), migrates it
   with Alembic and bulk-inserts generated data with SQL (100k incidents, 5,000 managers,
   50 districts by default).
2. Starts a plain FastAPI app holding one bare ``async def`` endpoint that returns a constant,
   incident-sized JSON object (``bench.app:bare``) — **the reference every ratio is taken to** —
   then the service under uvicorn on 127.0.0.1 (one worker): ``bench.app:app``, the real app with
   its production middleware plus the same endpoint (the kokoma ceiling, shown beside).
3. Drives each operation with wrk (``apt-get install wrk``; 1 thread, 16 connections) or, when
   wrk is missing, a bounded asyncio httpx client, and prints one table: operation, req/s, p50,
   p99, non-2xx responses, the ratio to the bare app and to the kokoma ceiling measured in the
   same run, and the load average at the start and at the end (the bare app runs again at the
   end, to show the drift).

``--profile OPERATION`` records the server with py-spy while that operation runs and prints the
hottest functions. Every request loop is bounded in time; servers are stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable

CATEGORIES = [
    "right_wing_extremism",
    "racism_discrimination",
    "antisemitism",
    "hate_speech",
    "threat_to_civil_society",
    "neighbourhood_dispute",
    "public_space",
    "youth_conflict",
    "other",
]
STATUSES = ["reported"] * 3 + ["triaged"] * 2 + ["resolved", "closed", "closed", "withdrawn"]
COMPETENCES = [
    "mediation",
    "anti_discrimination",
    "right_wing_extremism",
    "youth_work",
    "conflict_analysis",
]


# --------------------------------------------------------------------------------------- data
@dataclass
class Dataset:
    url: str
    key: str
    incident_ids: list[str]
    triaged_ids: list[str]
    districts: list[str]
    plain_ids: list[str] = field(default_factory=list)  # incidents without reporter data
    manager_ids: list[str] = field(default_factory=list)
    assignment_ids: list[str] = field(default_factory=list)
    recommendation_ids: list[str] = field(default_factory=list)
    cleanup: list[str] = field(default_factory=list)


def fresh_database(db: str, pg_url: str) -> tuple[str, str | None]:
    """A new, empty database: its URL and (PostgreSQL) its name for dropping it afterwards."""
    if db == "sqlite":
        path = Path(tempfile.gettempdir()) / f"kokoma-bench-{os.getpid()}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        return f"sqlite:///{path}", None
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    base = make_url(pg_url.replace("postgresql://", "postgresql+psycopg://", 1))
    name = f"kokoma_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = base.set(database=name).render_as_string(hide_password=False)
    return url.replace("postgresql+psycopg://", "postgresql://", 1), name


def drop_database(pg_url: str, name: str) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    base = make_url(pg_url.replace("postgresql://", "postgresql+psycopg://", 1))
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _chunks(rows: list[dict[str, object]], size: int = 5000) -> Iterator[list[dict[str, object]]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def generate(url: str, *, incidents: int, managers: int, districts: int, seed: int = 7) -> Dataset:
    """Migrate and fill the database with SQL bulk inserts (no ORM objects, no services)."""
    os.environ["DATABASE_URL"] = url
    from app.core.config import get_settings

    get_settings.cache_clear()
    from app.core.db import get_engine, reset_engine
    from app.core.migrations import upgrade
    from app.core.security import generate_key, hash_key
    from app.models.base import metadata

    reset_engine()
    upgrade("head")
    rnd = random.Random(seed)
    t = metadata.tables
    now = datetime.now(UTC)
    codes = [f"district_{i:02d}" for i in range(districts)]
    started = time.monotonic()
    with get_engine().begin() as conn:
        conn.execute(
            t["district"].insert(),
            [{"code": c, "name": c.replace("_", " ").title(), "city": "Benchstadt"} for c in codes],
        )
        conn.execute(
            t["district_neighbour"].insert(),
            [
                {"district_code": a, "neighbour_code": b}
                for i, a in enumerate(codes)
                for b in {codes[(i - 1) % districts], codes[(i + 1) % districts]} - {a}
            ],
        )
        conn.execute(
            t["competence"].insert(),
            [
                {"code": c, "name": c.replace("_", " ").title(), "description": ""}
                for c in COMPETENCES
            ],
        )
        organisations = [uuid.uuid4() for _ in range(10)]
        conn.execute(
            t["organisation"].insert(),
            [
                {"id": o, "name": f"Organisation {i}", "kind": "ngo"}
                for i, o in enumerate(organisations)
            ],
        )
        manager_rows, served, held = [], [], []
        manager_ids: list[str] = []
        for i in range(managers):
            manager_id = uuid.uuid4()
            manager_ids.append(str(manager_id))
            home = rnd.choice(codes)
            manager_rows.append(
                {
                    "id": manager_id,
                    "display_name": f"Manager {i}",
                    "email": f"manager{i}@bench.example",
                    "phone": "+49 361 000000",
                    "status": "active" if rnd.random() < 0.8 else rnd.choice(["paused", "retired"]),
                    "home_district": home,
                    "languages": rnd.choice([["de"], ["de", "en"], ["de", "ar"]]),
                    "max_open_assignments": rnd.choice([1, 2, 3]),
                    "open_assignments": 0,
                }
            )
            for code in {rnd.choice(codes) for _ in range(rnd.randint(0, 2))} - {home}:
                served.append({"manager_id": manager_id, "district_code": code})
            for code in rnd.sample(COMPETENCES, rnd.randint(1, 3)):
                held.append(
                    {
                        "manager_id": manager_id,
                        "competence_code": code,
                        "certified_on": date(2024, 1, 15),
                        "expires_on": rnd.choice([None, date(2028, 1, 1)]),
                    }
                )
        for rows in _chunks(manager_rows):
            conn.execute(t["manager"].insert(), rows)
        for rows in _chunks(served):
            conn.execute(t["manager_district"].insert(), rows)
        for rows in _chunks(held):
            conn.execute(t["manager_competence"].insert(), rows)

        incident_ids: list[str] = []
        triaged: list[str] = []
        plain: list[str] = []
        per_year: collections.Counter[int] = collections.Counter()
        rows, needs = [], []
        for _ in range(incidents):
            incident_id = uuid.uuid4()
            reported = now - timedelta(minutes=rnd.randint(10, 2 * 365 * 24 * 60))
            per_year[reported.year] += 1
            status = rnd.choice(STATUSES)
            reporter = rnd.random() < 0.5
            rows.append(
                {
                    "id": incident_id,
                    "reference": f"KOK-{reported.year}-{per_year[reported.year]:05d}",
                    "title": f"Incident {len(incident_ids)}: graffiti near the youth club",
                    "description": "Generated for the benchmark.",
                    "district": (district := rnd.choice(codes)),
                    "category": rnd.choice(CATEGORIES),
                    "escalation_level": rnd.randint(1, 6),
                    "languages": ["de"],
                    "status": status,
                    "reported_at": reported,
                    "status_changed_at": reported,
                    "source": "web",
                    "organisation_id": rnd.choice([None, *organisations]),
                    "has_reporter": reporter,
                    "reporter_name": "Erika Muster" if reporter else None,
                    "reporter_contact": "erika@example.org" if reporter else None,
                    "created_at": reported,
                    "updated_at": reported,
                }
            )
            needs.append(
                {
                    "incident_id": incident_id,
                    "competence_code": rnd.choice(COMPETENCES),
                    "district": district,
                }
            )
            incident_ids.append(str(incident_id))
            if not reporter:
                plain.append(str(incident_id))
            if status == "triaged":
                triaged.append(str(incident_id))
            if len(rows) >= 5000:
                conn.execute(t["incident"].insert(), rows)
                conn.execute(t["incident_competence"].insert(), needs)
                rows, needs = [], []
        if rows:
            conn.execute(t["incident"].insert(), rows)
            conn.execute(t["incident_competence"].insert(), needs)
        conn.execute(
            t["reference_counter"].insert(),
            [{"scope": "KOK", "year": year, "value": count} for year, count in per_year.items()],
        )
        key = generate_key()
        conn.execute(
            t["api_key"].insert(),
            [
                {
                    "name": "bench admin",
                    "role": "admin",
                    "key_hash": hash_key(key),
                    "prefix": key[:8],
                }
            ],
        )
    with get_engine().begin() as conn:
        conn.exec_driver_sql("ANALYZE")  # planner statistics, as a long-running database has
    if not url.startswith("sqlite"):
        # As autovacuum leaves a database that has been running: the one bulk transaction above
        # updated each incident tally row (app/models/tally.py) once per INSERT statement
        # (~190,000 dead row versions), and no page of the new tables is marked all-visible
        # yet, so every count read the heap instead of an index alone (the open incidents of a
        # district profile: 6 ms instead of 0.3 ms).
        with get_engine().connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
    reset_engine()
    print(
        f"generated {incidents} incidents, {managers} managers, {districts} districts "
        f"in {time.monotonic() - started:.1f} s",
        file=sys.stderr,
    )
    return Dataset(
        url=url,
        key=key,
        incident_ids=incident_ids,
        triaged_ids=triaged,
        districts=codes,
        plain_ids=plain,
        manager_ids=manager_ids,
    )


# ------------------------------------------------------------------------------------- server
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def server(app: str, url: str) -> Iterator[tuple[str, int]]:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "KOKOMA_RATE_LIMIT_PER_MINUTE": "0",
        "KOKOMA_LOG_LEVEL": os.environ.get("KOKOMA_LOG_LEVEL", "INFO"),
    }
    proc = subprocess.Popen(
        [
            PYTHON,
            "-m",
            "uvicorn",
            app,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        import httpx

        deadline = time.monotonic() + 120  # start-up on a loaded machine can take a while
        while True:
            try:
                if (
                    httpx.get(
                        base + "/healthz" if app.endswith(":app") else base + "/bench/ceiling",
                        timeout=1,
                    ).status_code
                    == 200
                ):
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                if proc.poll() is None:  # hung: stop it, else reading its output never ends
                    proc.kill()
                    proc.wait()
                raise RuntimeError("server did not start: " + proc.stderr.read().decode()[-2000:])
            time.sleep(0.2)
        yield base, proc.pid
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --------------------------------------------------------------------------------------- load
@dataclass
class Operation:
    name: str
    method: str
    paths: list[str]
    body: str | None = None
    content_type: str = "application/json"


@dataclass
class Result:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int


def _lua(op: Operation, key: str) -> str:
    paths = ",".join(json.dumps(p) for p in op.paths)
    body = json.dumps(op.body) if op.body is not None else "nil"
    return f"""
local paths = {{{paths}}}
local i = 0
wrk.method = "{op.method}"
wrk.headers["Authorization"] = "Bearer {key}"
wrk.headers["Content-Type"] = "{op.content_type}"
wrk.body = {body}
request = function()
  i = i + 1
  return wrk.format(nil, paths[(i % #paths) + 1])
end
"""


_UNIT = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    match = re.match(r"([\d.]+)(us|ms|s)", text)
    assert match, text
    return float(match.group(1)) * _UNIT[match.group(2)]


def run_wrk(
    base: str, op: Operation, key: str, seconds: int, connections: int, threads: int = 1
) -> Result:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_lua(op, key))
    try:
        out = subprocess.run(
            [
                "wrk",
                f"-t{threads}",
                f"-c{connections}",
                f"-d{seconds}s",
                # wrk gives up on a response after 2 s and counts a socket error: the slow writes
                # (a batch dispatch, an import under 16 writers) were "errors" they were not
                "--timeout",
                "30s",
                "--latency",
                "-s",
                script.name,
                base,
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=True,
        ).stdout
    finally:
        os.unlink(script.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = int(bad.group(1)) if bad else 0
    socket_errors = re.search(r"Socket errors: .*", out)
    if socket_errors:
        errors += sum(int(n) for n in re.findall(r"\d+", socket_errors.group(0)))
    return Result(op.name, rps, p50, p99, errors, total)


def run_httpx(
    base: str, op: Operation, key: str, seconds: int, connections: int, threads: int = 1
) -> Result:
    import httpx

    async def main() -> Result:
        latencies: list[float] = []
        errors = 0
        headers = {"Authorization": f"Bearer {key}", "Content-Type": op.content_type}
        deadline = time.monotonic() + seconds
        limits = httpx.Limits(max_connections=connections)
        async with httpx.AsyncClient(
            base_url=base, headers=headers, limits=limits, timeout=30
        ) as client:

            async def worker(offset: int) -> None:
                nonlocal errors
                i = offset
                while time.monotonic() < deadline and len(latencies) < 2_000_000:
                    i += 1
                    started = time.perf_counter()
                    response = await client.request(
                        op.method, op.paths[i % len(op.paths)], content=op.body
                    )
                    latencies.append((time.perf_counter() - started) * 1000)
                    errors += response.status_code >= 300

            started = time.monotonic()
            await asyncio.gather(*(worker(n * 7919) for n in range(connections)))
            elapsed = time.monotonic() - started
        latencies.sort()
        return Result(
            op.name,
            len(latencies) / elapsed,
            statistics.median(latencies),
            latencies[int(len(latencies) * 0.99) - 1],
            errors,
            len(latencies),
        )

    return asyncio.run(main())


def profile(pid: int, seconds: int, top: int = 25) -> str:
    """py-spy samples the server while the load runs; the hottest frames, inclusive."""
    spy = shutil.which("py-spy") or str(Path(PYTHON).with_name("py-spy"))
    out = Path(tempfile.gettempdir()) / f"kokoma-profile-{pid}.txt"
    subprocess.run(
        [
            spy,
            "record",
            "-p",
            str(pid),
            "-d",
            str(seconds),
            "-f",
            "raw",
            "-o",
            str(out),
            "--nonblocking",
            "-r",
            "400",
        ],
        capture_output=True,
        check=True,
        timeout=seconds + 60,
    )
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in out.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        total += count
        frames = stack.split(";")
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count
    lines = [f"{total} samples (idle threads included); top by own time, then inclusive %"]
    for frame, count in own.most_common(top):
        lines.append(
            f"own {100 * count / total:5.1f}  incl {100 * inclusive[frame] / total:5.1f}  {frame}"
        )
    app_frames = [(f, c) for f, c in inclusive.most_common() if " (app/" in f]
    lines.append("kokoma frames, inclusive %:")
    for frame, count in app_frames[:top]:
        lines.append(f"incl {100 * count / total:5.1f}  {frame}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- main
def operations(data: Dataset) -> list[Operation]:
    rnd = random.Random(11)
    ids = rnd.sample(data.incident_ids, min(2000, len(data.incident_ids)))
    triaged = rnd.sample(data.triaged_ids, min(200, len(data.triaged_ids)))
    lists = []
    for i in range(200):
        district = rnd.choice(data.districts)
        lists.append(
            f"/api/v1/incidents?limit=50&district={district}&status=reported&status=triaged"
            if i % 2 == 0
            else f"/api/v1/incidents?limit=50&category={rnd.choice(CATEGORIES)}&min_escalation=3"
        )
    create = json.dumps(
        {
            "title": "Threatening graffiti at the community centre",
            "description": "Benchmark incident.",
            "district": data.districts[0],
            "category": "threat_to_civil_society",
            "escalation_level": 3,
            "required_competences": ["mediation"],
            "languages": ["de"],
            "reporter": {"name": "A. Example", "contact": "a@example.org"},
        }
    )
    auto = json.dumps({"incident_ids": triaged[:5], "dry_run": True})
    header = "external_id,source,title,district,category,escalation_level\n"
    csv = header + "".join(
        f"bench-{n},partner,Imported incident {n},{data.districts[n % len(data.districts)]},"
        f"other,2\n"
        for n in range(100)
    )
    managers = [
        f"/api/v1/managers/{m}"
        for m in rnd.sample(data.manager_ids, min(500, len(data.manager_ids)))
    ]
    return [
        Operation("ceiling: bare FastAPI app", "GET", ["/bench/ceiling"]),
        Operation("ceiling: kokoma app (same middleware)", "GET", ["/bench/ceiling"]),
        Operation("healthz (no auth, no database)", "GET", ["/healthz"]),
        Operation("get incident by id", "GET", [f"/api/v1/incidents/{i}" for i in ids]),
        Operation(
            "get incident by id, no reporter data",
            "GET",
            [
                f"/api/v1/incidents/{i}"
                for i in rnd.sample(data.plain_ids, min(2000, len(data.plain_ids)))
            ],
        ),
        Operation("list 50 incidents, filtered (100k)", "GET", lists),
        Operation("list competences (reference)", "GET", ["/api/v1/competences"]),
        Operation("list districts (reference)", "GET", ["/api/v1/districts?limit=50"]),
        Operation("list 50 managers", "GET", ["/api/v1/managers?limit=50"]),
        Operation("get manager by id", "GET", managers),
        Operation(
            "get district (reference)", "GET", [f"/api/v1/districts/{d}" for d in data.districts]
        ),
        Operation("list 50 assignments", "GET", ["/api/v1/assignments?limit=50"]),
        Operation(
            "get assignment by id",
            "GET",
            [f"/api/v1/assignments/{a}" for a in data.assignment_ids[:500]],
        ),
        Operation("list 50 recommendations", "GET", ["/api/v1/recommendations?limit=50"]),
        Operation(
            "get recommendation by id",
            "GET",
            [f"/api/v1/recommendations/{r}" for r in data.recommendation_ids],
        ),
        Operation("statistics (incidents, 100k)", "GET", ["/api/v1/stats/incidents"]),
        Operation(
            "district profile (100k)",
            "GET",
            [f"/api/v1/districts/{d}/profile" for d in data.districts],
        ),
        Operation("create incident", "POST", ["/api/v1/incidents"], create),
        Operation(
            "candidates (5,000 managers)",
            "GET",
            [f"/api/v1/incidents/{i}/candidates" for i in triaged],
        ),
        Operation("auto-dispatch, 5 incidents, dry run", "POST", ["/api/v1/dispatch/auto"], auto),
        Operation(
            "import 100 incidents (CSV)", "POST", ["/api/v1/imports/incidents"], csv, "text/csv"
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--db",
        default="sqlite,postgres",
        help="sqlite, postgres or both (comma-separated; default both)",
    )
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    parser.add_argument("--incidents", type=int, default=100_000)
    parser.add_argument("--managers", type=int, default=5_000)
    parser.add_argument("--districts", type=int, default=50)
    parser.add_argument("--only", default="", help="comma-separated substrings of operations")
    parser.add_argument("--profile", default="", help="substring of the operation to profile")
    parser.add_argument("--client", choices=["auto", "wrk", "httpx"], default="auto")
    args = parser.parse_args()
    databases = [d.strip() for d in args.db.split(",") if d.strip()]
    for db in databases:
        if db not in ("sqlite", "postgres"):
            parser.error(f"unknown database {db!r} (sqlite, postgres)")
    for db in databases:
        run_one(db, args)


def run_one(db: str, args: argparse.Namespace) -> None:
    use_wrk = args.client == "wrk" or (args.client == "auto" and shutil.which("wrk"))
    drive = run_wrk if use_wrk else run_httpx
    url, pg_name = fresh_database(db, args.pg_url)
    try:
        data = generate(
            url, incidents=args.incidents, managers=args.managers, districts=args.districts
        )
        from bench.bench_reads_misc import add_rows  # 2,000 assignments, 200 recommendations

        data.assignment_ids, data.recommendation_ids = add_rows(url, data)
        ops = operations(data)
        if args.only:
            wanted = [w.strip() for w in args.only.split(",")]
            ops = [
                op
                for op in ops
                if op.name.startswith("ceiling") or any(w in op.name for w in wanted)
            ]
        results: list[Result] = []
        profiles: list[str] = []
        load_before = os.getloadavg()[0]

        def load(base: str, op: Operation) -> Result:
            return drive(base, op, data.key, args.seconds, args.connections, args.threads)

        with server("bench.app:bare", url) as (bare_base, _):
            results.append(load(bare_base, ops[0]))
        with server("bench.app:app", url) as (base, pid):
            import httpx

            for op in ops[1:]:
                probe = httpx.request(
                    op.method,
                    base + op.paths[0],
                    content=op.body,
                    timeout=60,
                    headers={
                        "Authorization": f"Bearer {data.key}",
                        "Content-Type": op.content_type,
                    },
                )
                if probe.status_code == 404 and "No route" in probe.text:
                    print(f"skipping {op.name}: route not present", file=sys.stderr)
                    continue
                if probe.status_code >= 300:
                    print(
                        f"warning: {op.name} answers {probe.status_code}: {probe.text[:300]}",
                        file=sys.stderr,
                    )
                if args.profile and args.profile in op.name:
                    with concurrent_profile(pid, args.seconds) as report:
                        results.append(load(base, op))
                    profiles.append(f"== profile: {op.name}\n{report()}")
                else:
                    results.append(load(base, op))
        # The bare app once more at the end: the machine's drift during the run shows here.
        with server("bench.app:bare", url) as (bare_base, _):
            again = load(bare_base, ops[0])
        again.name = "ceiling: bare FastAPI app, again at the end"
        results.append(again)
        print_table(
            db, results, args, "wrk" if use_wrk else "httpx", (load_before, os.getloadavg()[0])
        )
        for text in profiles:
            print(text)
    finally:
        from app.core.db import reset_engine

        reset_engine()
        if pg_name:
            drop_database(args.pg_url, pg_name)
        elif url.startswith("sqlite:///"):
            for suffix in ("", "-wal", "-shm"):
                Path(url.removeprefix("sqlite:///") + suffix).unlink(missing_ok=True)


@contextlib.contextmanager
def concurrent_profile(pid: int, seconds: int) -> Iterator[object]:
    import threading

    box: dict[str, str] = {}
    thread = threading.Thread(target=lambda: box.setdefault("r", profile(pid, seconds)))
    thread.start()
    yield lambda: box.get("r", "(no profile)")
    thread.join()


def print_table(
    db: str,
    results: list[Result],
    args: argparse.Namespace,
    client: str,
    loads: tuple[float, float],
) -> None:
    """Ratios to the bare FastAPI app (the first line, same run), the kokoma-app ceiling beside."""
    bare = next((r.rps for r in results if r.name == "ceiling: bare FastAPI app"), None)
    ceiling = next((r.rps for r in results if r.name.startswith("ceiling: kokoma")), None)
    print(
        f"\nkokoma bench — {db}, {args.incidents:,} incidents, {args.managers:,} managers, "
        f"{args.districts} districts; uvicorn 1 worker; {client} {args.threads} thread(s), "
        f"{args.connections} connections, {args.seconds} s per operation; {os.cpu_count()} "
        f"cores; load average {loads[0]:.2f} at the start, {loads[1]:.2f} at the end "
        f"(other work on the machine skews figures)"
    )
    print(
        f"| {'operation':<44} | {'req/s':>8} | {'p50 ms':>7} | {'p99 ms':>7} | "
        f"{'non-2xx':>7} | {'× bare':>6} | {'× kokoma ceiling':>16} |"
    )
    print(f"|{'-' * 46}|{'-' * 10}|{'-' * 9}|{'-' * 9}|{'-' * 9}|{'-' * 8}|{'-' * 18}|")
    for r in results:
        ratio = f"{r.rps / bare:.2f}" if bare else "-"
        beside = f"{r.rps / ceiling:.2f}" if ceiling else "-"
        print(
            f"| {r.name:<44} | {r.rps:>8.0f} | {r.p50_ms:>7.2f} | {r.p99_ms:>7.2f} | "
            f"{r.errors:>7} | {ratio:>6} | {beside:>16} |"
        )


if __name__ == "__main__":
    main()
